-- Fencing: every write a worker makes to a claimed message carries the claim it holds, and is
-- refused once that claim is no longer the message's current one. Before this, a worker whose
-- lease had run out could still fail a message another attempt was answering, and completing
-- turned a `failed` message into `done`: the author saw "failed", then a reply.
--
-- A claim is identified by claim_token, a fresh uuid per claim (not the attempt number, which
-- release_message hands back and the next claim reuses). It is cleared when the message settles.
-- What a stale worker's reply is worth: nothing. It is dropped, and the current attempt (or the
-- sweep, after its lease) answers; so a message has one writer at a time, and `failed` and
-- `done` are final.

alter table public.messages add column claim_token uuid;
comment on column public.messages.claim_token is
  'While status is processing: the current claim. Writes by any other (stale) claim are refused.';

-- As before, plus a new claim_token on every claim (returned as claim_token).
create or replace function public.claim_message(
  message_id uuid,
  lease_seconds integer default 120,
  max_attempts integer default 5
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  claimed public.messages;
  conversation public.conversations;
begin
  update public.messages m
     set status = 'processing',
         attempts = m.attempts + 1,
         lease_expires_at = now() + make_interval(secs => lease_seconds),
         claim_token = gen_random_uuid(),
         error = null
   where m.id = claim_message.message_id
     and m.role = 'user'
     and m.attempts < max_attempts
     and (m.status = 'pending' or (m.status = 'processing' and m.lease_expires_at < now()))
  returning * into claimed;

  if not found then
    update public.messages m
       set status = 'failed',
           lease_expires_at = null,
           claim_token = null,
           error = format('No reply could be generated after %s attempts. Please send the message again.', m.attempts)
     where m.id = claim_message.message_id
       and m.role = 'user'
       and m.attempts >= max_attempts
       and (m.status = 'pending' or (m.status = 'processing' and m.lease_expires_at < now()));
    return null;
  end if;

  select * into conversation from public.conversations c where c.id = claimed.conversation_id;
  return jsonb_build_object(
    'message_id', claimed.id,
    'conversation_id', claimed.conversation_id,
    'user_id', claimed.user_id,
    'attempt', claimed.attempts,
    'claim_token', claimed.claim_token,
    'lease_expires_at', claimed.lease_expires_at,
    'system_prompt', conversation.system_prompt,
    'model', conversation.model
  );
end
$$;

-- The unfenced writers go: nothing may settle or release a message without naming its claim.
drop function public.complete_message_for_reply(uuid, text, text, integer, integer);
drop function public.complete_message(uuid, text, text, integer, integer);
drop function public.fail_message(uuid, text);
drop function public.release_message(uuid, timestamptz);

-- Write the reply and close the user message in one transaction, if claim_token is the message's
-- current claim. Returns the reply as stored ({reply_id, content, conversation_id, status: done})
-- when the message has one, whoever wrote it; {status, reply_id: null} when the claim is stale and
-- the message is unanswered (held by another attempt, released, or failed): the caller's reply
-- was dropped; null when the message no longer exists (its conversation was deleted).
create function public.complete_message_for_reply(
  message_id uuid,
  claim_token uuid,
  content text,
  model text default null,
  prompt_tokens integer default null,
  completion_tokens integer default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  target public.messages;
  reply public.messages;
begin
  select * into target from public.messages m
   where m.id = complete_message_for_reply.message_id and m.role = 'user'
   for update;
  if not found then
    return null;
  end if;

  if target.status = 'processing' and target.claim_token = complete_message_for_reply.claim_token then
    insert into public.messages
      (conversation_id, user_id, role, content, status, reply_to, model, prompt_tokens, completion_tokens)
    values (target.conversation_id, target.user_id, 'assistant', complete_message_for_reply.content, 'done',
            target.id, complete_message_for_reply.model, complete_message_for_reply.prompt_tokens,
            complete_message_for_reply.completion_tokens)
    on conflict (reply_to) do nothing;
    update public.messages m
       set status = 'done', error = null, lease_expires_at = null, claim_token = null
     where m.id = target.id
    returning * into target;
  end if;

  select * into reply from public.messages r where r.reply_to = target.id;
  if reply.id is null then
    return jsonb_build_object('status', target.status, 'reply_id', null, 'conversation_id', target.conversation_id);
  end if;
  return jsonb_build_object(
    'status', 'done', 'reply_id', reply.id, 'content', reply.content, 'conversation_id', reply.conversation_id
  );
end
$$;

-- Give up on a message with an error its author can read, if claim_token is its current claim.
-- Never overrides a reply, a failure, or another attempt's claim. True when it failed it.
create function public.fail_message(message_id uuid, claim_token uuid, error text) returns boolean
language plpgsql
set search_path = ''
as $$
begin
  update public.messages m
     set status = 'failed', error = fail_message.error, lease_expires_at = null, claim_token = null
   where m.id = fail_message.message_id
     and m.role = 'user'
     and m.status = 'processing'
     and m.claim_token = fail_message.claim_token;
  return found;
end
$$;

-- Hand a claimed message back at once (shutdown), if claim_token is its current claim: the lease
-- ends now, the claim is void, and the interrupted attempt is not counted against the message.
create function public.release_message(message_id uuid, claim_token uuid) returns boolean
language plpgsql
set search_path = ''
as $$
begin
  update public.messages m
     set lease_expires_at = now() - interval '1 millisecond',
         claim_token = null,
         attempts = greatest(m.attempts - 1, 0)
   where m.id = release_message.message_id
     and m.status = 'processing'
     and m.claim_token = release_message.claim_token;
  return found;
end
$$;

revoke execute on function
  public.complete_message_for_reply(uuid, uuid, text, text, integer, integer),
  public.fail_message(uuid, uuid, text),
  public.release_message(uuid, uuid)
  from public, anon, authenticated;
grant execute on function
  public.complete_message_for_reply(uuid, uuid, text, text, integer, integer),
  public.fail_message(uuid, uuid, text),
  public.release_message(uuid, uuid)
  to service_role;
