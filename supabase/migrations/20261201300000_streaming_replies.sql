-- Streamed replies: the assistant row exists from the first token on (status streaming), its
-- content is checkpointed while the model generates and written whole at the end, a new attempt
-- resets it on the same row (reply_to stays unique: one final reply per user message), and the
-- message's owner can stop it. Users still write none of these columns: the insert grant on
-- messages names its columns, and these are not among them; users have no update at all.
--
-- The writers follow 20261201100100_answered_in_order.sql's rules. Each takes the conversation's
-- row lock (FOR NO KEY UPDATE) before the message's: finish_reply of a done reply calls
-- complete_message_for_reply, which takes the conversation's lock, and would otherwise deadlock
-- against a claim of the conversation's next message (conversation, then message); stop_reply
-- would otherwise let a claim racing a stop turn a stopped message back into processing
-- (claim_message reads the status under the conversation's lock). And every ending of a streamed
-- reply answers next_message_id, so the worker hands the conversation's next message on.

alter table public.messages drop constraint messages_status_check;
alter table public.messages add constraint messages_status_check
  check (status in ('pending', 'processing', 'streaming', 'done', 'failed', 'stopped'));
alter table public.messages add constraint messages_streaming_is_a_reply
  check (status <> 'streaming' or role = 'assistant');

alter table public.messages add column attempt integer;
comment on column public.messages.attempt is
  'Assistant rows: the attempt of the user message that produced this content. A new attempt '
  'resets content and bumps attempt, so a client holding older text knows to drop it.';
alter table public.messages add column stop_requested_at timestamptz;
comment on column public.messages.stop_requested_at is
  'User messages: when the owner asked to stop the reply. The service polls for these (one query '
  'per process per interval) and closes the model''s stream.';

-- The reply row at the first token, under the current claim: created, or reset if an earlier
-- attempt left one behind (its worker died mid-stream). {reply_id, attempt}; null when the claim
-- is stale (the caller stops generating: another attempt owns the message).
create function public.begin_reply(message_id uuid, claim_token uuid, content text) returns jsonb
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

-- The text so far, under the current claim. False when the claim is stale: stop generating.
create function public.checkpoint_reply(message_id uuid, claim_token uuid, content text) returns boolean
language plpgsql
set search_path = ''
as $$
begin
  update public.messages r
     set content = checkpoint_reply.content, updated_at = now()
    from public.messages m
   where m.id = checkpoint_reply.message_id and m.role = 'user'
     and m.status = 'processing' and m.claim_token = checkpoint_reply.claim_token
     and r.reply_to = m.id and r.status = 'streaming';
  return found;
end
$$;

-- The streamed reply's end, under the current claim, in one transaction with the user message:
-- done (the whole text, through complete_message_for_reply, so the reply's accounting is the
-- same as a non-streamed one's), stopped (the partial text kept) or failed (the partial text kept,
-- the reason on both rows). Returns what complete_message_for_reply returns, plus status.
create function public.finish_reply(
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

-- Which of these messages (the ones a process is streaming) their owners asked to stop: one
-- query per process per interval, however many replies it streams.
create function public.stop_requested_messages(message_ids uuid[]) returns setof uuid
language sql
stable
set search_path = ''
as $$
  select m.id from public.messages m
   where m.id = any (stop_requested_messages.message_ids) and m.stop_requested_at is not null
$$;

-- Stop a reply, for the message's owner (frontends call it through PostgREST's rpc, under their
-- own JWT). Security definer because users may not update messages; it checks ownership itself
-- and touches only the stop request and, when no worker is generating, the statuses:
--   pending (nobody has claimed it yet), or processing with its lease run out (its worker died):
--     settled as stopped here, the partial reply (if any) kept;
--   processing with a live claim: stop_requested_at is set, the worker stops within an interval;
--   done / failed / stopped: nothing changes.
-- Returns {status, stop_requested}; a message that is not the caller's is "not found" (P0002),
-- the same as a missing one.
create function public.stop_reply(message_id uuid) returns jsonb
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

-- Settled now includes stopped (a waiting POST /api/chat wakes for it).
create or replace function public.settled_messages(message_ids uuid[]) returns table (id uuid, status text)
language sql
stable
set search_path = ''
as $$
  select m.id, m.status
    from public.messages m
   where m.id = any (message_ids) and m.status in ('done', 'failed', 'stopped')
$$;

revoke execute on function
  public.begin_reply(uuid, uuid, text),
  public.checkpoint_reply(uuid, uuid, text),
  public.finish_reply(uuid, uuid, text, text, text, text, integer, integer),
  public.stop_requested_messages(uuid[]),
  public.stop_reply(uuid)
  from public, anon, authenticated;
grant execute on function
  public.begin_reply(uuid, uuid, text),
  public.checkpoint_reply(uuid, uuid, text),
  public.finish_reply(uuid, uuid, text, text, text, text, integer, integer),
  public.stop_requested_messages(uuid[])
  to service_role;
grant execute on function public.stop_reply(uuid) to authenticated, service_role;

-- A user message that ends failed or stopped by any path (the claim giving up after
-- MAX_ATTEMPTS, fail_message, stop_reply) ends its streamed reply the same way: a reply left
-- `streaming` by a worker that died would otherwise say "still coming" forever. Its partial text
-- is kept; the error is the message's.
create function private.settle_streaming_reply() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  update public.messages r
     set status = new.status, error = coalesce(r.error, new.error)
   where r.reply_to = new.id and r.status = 'streaming';
  return null;
end
$$;
revoke execute on function private.settle_streaming_reply() from public, anon, authenticated;

create trigger messages_settle_streaming_reply
  after update of status on public.messages
  for each row
  when (new.role = 'user' and new.status in ('failed', 'stopped') and old.status is distinct from new.status)
  execute function private.settle_streaming_reply();

-- Tokens. private.count_reply_tokens (20261201100000_usage_quotas.sql) counts a reply's tokens
-- when its row is inserted; a streamed reply is inserted at its first token, without usage, and
-- gets the usage the model reported at the end, by update. Those tokens count too (the increase,
-- so a row updated twice is never counted twice). A stream closed early (stopped, or broken off
-- by the provider) comes with no usage from the provider: its text is counted at an estimate of
-- one token per 4 characters, the context builder's estimate, so a user cannot stream without
-- limit by stopping every reply.
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

-- How far a reply has got, for the caller (under RLS: only their own messages): the message's
-- status and its reply row as checkpointed. What an SSE request follows when the reply is
-- generated on another instance, and what a reloading client may read in one call.
create function public.reply_progress(message_id uuid) returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'status', m.status, 'reply_id', r.id, 'content', r.content, 'attempt', r.attempt,
    'reply_status', r.status, 'error', coalesce(m.error, r.error), 'conversation_id', m.conversation_id
  )
    from public.messages m
    left join public.messages r on r.reply_to = m.id
   where m.id = reply_progress.message_id and m.role = 'user'
$$;
revoke execute on function public.reply_progress(uuid) from public, anon, authenticated;
grant execute on function public.reply_progress(uuid) to authenticated, service_role;
