-- Streamed replies in a conversation answered in order, with their tokens counted.
--
-- 20261201300000_streaming_replies.sql was written against issue 9's functions, before
-- 20261201100000_usage_quotas.sql and 20261201100100_answered_in_order.sql. It replaces none of
-- their functions, but three of its own did not yet follow their rules:
--   * Lock order. Every pipeline writer takes the conversation's row lock (FOR NO KEY UPDATE)
--     before the message's. finish_reply locked the message first and then, for a done reply,
--     called complete_message_for_reply, which takes the conversation's lock: a claim of the
--     conversation's next message (conversation, then message) could deadlock against it.
--     stop_reply settled a pending message under the message's lock alone, while claim_message
--     relies on the conversation's lock to see the status it updates: a claim racing a stop could
--     turn a stopped message back into processing.
--   * Hand-on. A stopped or failed streamed reply settles its message; the conversation's next
--     message must then be handed on, so finish_reply answers next_message_id for every ending
--     (complete_message_for_reply already does for done).
--   * Tokens. private.count_reply_tokens counts a reply's tokens when the row is inserted; a
--     streamed reply is inserted at its first token, without usage, and gets the usage the
--     model reported at the end, by update. Those tokens now count too (the increase, so a row
--     updated twice is never counted twice). A stream closed early (stopped, or broken off by the
--     provider) comes with no usage from the provider: its text is counted at an estimate of one
--     token per 4 characters, the context builder's estimate, so a user cannot stream without
--     limit by stopping every reply.

-- One place that adds tokens to a user's day (the insert trigger keeps its own statement form).
create function private.add_reply_tokens(who uuid, tokens bigint) returns void
language sql
security definer
set search_path = ''
as $$
  insert into public.chat_usage as u (user_id, day, tokens)
  values (who, (now() at time zone 'UTC')::date, tokens)
  on conflict (user_id, day) do update
    set tokens = u.tokens + excluded.tokens, updated_at = now()
$$;
revoke execute on function private.add_reply_tokens(uuid, bigint) from public, anon, authenticated;

create function private.count_updated_reply_tokens() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  added bigint := (coalesce(new.prompt_tokens, 0)::bigint + coalesce(new.completion_tokens, 0))
                - (coalesce(old.prompt_tokens, 0)::bigint + coalesce(old.completion_tokens, 0));
begin
  if added > 0 then
    perform private.add_reply_tokens(new.user_id, added);
  end if;
  return null;
end
$$;
revoke execute on function private.count_updated_reply_tokens() from public, anon, authenticated;

create trigger messages_count_updated_reply_tokens
  after update of prompt_tokens, completion_tokens on public.messages
  for each row
  when (new.role = 'assistant'
        and (new.prompt_tokens, new.completion_tokens) is distinct from (old.prompt_tokens, old.completion_tokens))
  execute function private.count_updated_reply_tokens();

-- A streamed reply that ends stopped or failed without usage from the provider (the stream was
-- closed early, or broke off; by any path: finish_reply, the user message's end, stop_reply) counts
-- its text at the estimate of one token per 4 characters.
create function private.count_partial_reply_tokens() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if char_length(coalesce(new.content, '')) > 0 then
    perform private.add_reply_tokens(new.user_id, (char_length(new.content) + 3) / 4);
  end if;
  return null;
end
$$;
revoke execute on function private.count_partial_reply_tokens() from public, anon, authenticated;

create trigger messages_count_partial_reply_tokens
  after update of status on public.messages
  for each row
  when (new.role = 'assistant' and old.status = 'streaming' and new.status in ('stopped', 'failed')
        and new.prompt_tokens is null and new.completion_tokens is null)
  execute function private.count_partial_reply_tokens();

-- As before (fenced by claim_token), behind the conversation's lock.
create or replace function public.begin_reply(message_id uuid, claim_token uuid, content text) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  conversation_id uuid;
  target public.messages;
  reply public.messages;
begin
  select m.conversation_id into conversation_id
    from public.messages m where m.id = begin_reply.message_id and m.role = 'user';
  if not found then
    return null;
  end if;
  perform 1 from public.conversations c where c.id = conversation_id for no key update;
  select * into target from public.messages m
   where m.id = begin_reply.message_id and m.role = 'user'
     and m.status = 'processing' and m.claim_token = begin_reply.claim_token
   for update;
  if not found then
    return null;
  end if;
  insert into public.messages as r (conversation_id, user_id, role, content, status, reply_to, attempt)
  values (target.conversation_id, target.user_id, 'assistant', begin_reply.content, 'streaming', target.id,
          target.attempts)
  on conflict (reply_to) do update
     set content = excluded.content, status = 'streaming', attempt = excluded.attempt, error = null,
         updated_at = now()
  returning * into reply;
  return jsonb_build_object('reply_id', reply.id, 'attempt', reply.attempt);
end
$$;

-- As before (fenced; done goes through complete_message_for_reply), behind the conversation's
-- lock, answering next_message_id for every ending.
create or replace function public.finish_reply(
  message_id uuid,
  claim_token uuid,
  content text,
  status text,
  error text default null,
  model text default null,
  prompt_tokens integer default null,
  completion_tokens integer default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  conversation_id uuid;
  target public.messages;
  reply public.messages;
begin
  if finish_reply.status not in ('done', 'stopped', 'failed') then
    raise exception 'finish_reply: status must be done, stopped or failed, not %', finish_reply.status
      using errcode = '22023';
  end if;
  select m.conversation_id into conversation_id
    from public.messages m where m.id = finish_reply.message_id and m.role = 'user';
  if not found then
    return null;
  end if;
  perform 1 from public.conversations c where c.id = conversation_id for no key update;
  select * into target from public.messages m
   where m.id = finish_reply.message_id and m.role = 'user'
   for update;
  if not found then
    return null;
  end if;
  if target.status <> 'processing' or target.claim_token is distinct from finish_reply.claim_token then
    select * into reply from public.messages r where r.reply_to = target.id;
    return jsonb_build_object('status', target.status, 'reply_id', reply.id, 'content', reply.content,
                              'conversation_id', target.conversation_id, 'superseded', true);
  end if;

  update public.messages r
     set content = finish_reply.content,
         status = finish_reply.status,
         error = finish_reply.error,
         model = finish_reply.model,
         prompt_tokens = finish_reply.prompt_tokens,
         completion_tokens = finish_reply.completion_tokens,
         updated_at = now()
   where r.reply_to = target.id
  returning * into reply;

  if finish_reply.status = 'done' then
    return public.complete_message_for_reply(
      finish_reply.message_id, finish_reply.claim_token, finish_reply.content, finish_reply.model,
      finish_reply.prompt_tokens, finish_reply.completion_tokens
    );
  end if;

  update public.messages m
     set status = finish_reply.status, error = finish_reply.error, lease_expires_at = null, claim_token = null
   where m.id = target.id;
  return jsonb_build_object('status', finish_reply.status, 'reply_id', reply.id, 'content', reply.content,
                            'conversation_id', target.conversation_id,
                            'next_message_id', public.next_message_to_answer(target.conversation_id));
end
$$;

-- As before, behind the conversation's lock, so that a stop and a claim of the same message
-- happen one after the other (claim_message reads the status under that lock).
create or replace function public.stop_reply(message_id uuid) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  conversation_id uuid;
  target public.messages;
begin
  select m.conversation_id into conversation_id
    from public.messages m
   where m.id = stop_reply.message_id and m.role = 'user' and m.user_id = auth.uid();
  if not found then
    raise exception 'message not found' using errcode = 'P0002';
  end if;
  perform 1 from public.conversations c where c.id = conversation_id for no key update;
  select * into target from public.messages m
   where m.id = stop_reply.message_id and m.role = 'user' and m.user_id = auth.uid()
   for update;
  if not found then
    raise exception 'message not found' using errcode = 'P0002';
  end if;
  if target.status in ('done', 'failed', 'stopped') then
    return jsonb_build_object('status', target.status, 'stop_requested', target.stop_requested_at is not null);
  end if;
  if target.status = 'pending' or target.lease_expires_at < now() then
    update public.messages r set status = 'stopped', updated_at = now()
     where r.reply_to = target.id and r.status = 'streaming';
    update public.messages m
       set status = 'stopped', stop_requested_at = now(), lease_expires_at = null, claim_token = null
     where m.id = target.id;
    return jsonb_build_object('status', 'stopped', 'stop_requested', true);
  end if;
  update public.messages m set stop_requested_at = coalesce(m.stop_requested_at, now()) where m.id = target.id;
  return jsonb_build_object('status', target.status, 'stop_requested', true);
end
$$;
