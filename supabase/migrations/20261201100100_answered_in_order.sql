-- Conversations answered in order. Rows inserted in one request share created_at, so ordering by
-- (created_at, id) fell back to the random uuid: a batch came back shuffled, and a reply saw
-- messages sent after its own. Now every message has a place in its conversation (seq), and the
-- pipeline answers one message of a conversation at a time, in that order, so each reply sees
-- every earlier message and its reply.
--
-- seq: a user message takes the next even number of one sequence (private.message_seq), in the
-- order its statement inserts the rows; its reply takes the message's seq + 1. Ordering a
-- conversation by seq alone therefore reads message, reply, message, reply, whatever order the
-- replies were written in. A sequence, not a per-conversation counter row: numbering takes no
-- lock, so concurrent inserts into one conversation never wait for each other's commit. Users
-- cannot set seq (it is not in their insert grant; a reply's is always set by the trigger).
--
-- A message sent while an earlier one of its conversation is unanswered waits: its claim is
-- refused ({"waiting": true}) and the worker that settles the earlier message hands it on
-- (next_message_id). The lock on the conversation row orders those two, so a waiting message is
-- never left for the sweep. Other conversations are not affected.

create sequence private.message_seq as bigint start with 2 increment by 2;
revoke all on sequence private.message_seq from public, anon, authenticated;
alter table public.messages add column seq bigint;
comment on column public.messages.seq is
  'Place in the conversation: user messages take rising even numbers in insert order; a reply its message''s seq + 1.';

-- Existing rows keep the order they had: (created_at, id).
with numbered as (
  select m.id, 2 * row_number() over (order by m.created_at, m.id) as seq
    from public.messages m
   where m.role = 'user'
)
update public.messages m set seq = n.seq from numbered n where m.id = n.id;
update public.messages r set seq = u.seq + 1 from public.messages u where r.reply_to = u.id;
select pg_catalog.setval('private.message_seq',
  coalesce((select max(m.seq) from public.messages m where m.role = 'user'), 0) + 2, false);
alter table public.messages alter column seq set not null;
-- The trigger below numbers every insert; the default covers loads that skip triggers
-- (session_replication_role = replica), which then number rows in insert order. A default is
-- evaluated with the inserting role's rights: they may draw from the sequence, nothing more.
alter table public.messages alter column seq set default pg_catalog.nextval('private.message_seq');
grant usage on sequence private.message_seq to authenticated, service_role;

create unique index messages_conversation_seq_idx on public.messages (conversation_id, seq);
drop index public.messages_conversation_recent_idx;

create function private.number_message() returns trigger
language plpgsql
security definer  -- the sequence is private: the inserting user may not use it
set search_path = ''
as $$
begin
  if new.role = 'user' then
    -- Drawn by the column's default, in insert order (users cannot name the column).
    new.seq := coalesce(new.seq, pg_catalog.nextval('private.message_seq'));
  else
    select m.seq + 1 into new.seq from public.messages m
     where m.id = new.reply_to and m.conversation_id = new.conversation_id;
  end if;
  -- No such conversation (or message replied to): the row is refused after this trigger anyway,
  -- by row-level security or the foreign key, with their own errors; 0 is never a real seq.
  new.seq := coalesce(new.seq, 0);
  return new;
end
$$;
revoke execute on function private.number_message() from public, anon, authenticated;

create trigger messages_number_message
  before insert on public.messages
  for each row execute function private.number_message();

-- --- reading in order ---------------------------------------------------------------------------

create or replace function public.fetch_message_context(
  message_id uuid,
  token_budget integer,
  max_messages integer default 200
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  target public.messages;
begin
  select * into target from public.messages m where m.id = fetch_message_context.message_id;
  if not found then
    return '[]'::jsonb;
  end if;
  return (
    with recent as (
      select m.id, m.role, m.content, m.seq
        from public.messages m
       where m.conversation_id = target.conversation_id
         and m.seq <= target.seq
         and (m.role = 'assistant' or m.status <> 'failed' or m.id = target.id)
       order by m.seq desc
       limit max_messages
    ),
    costed as (
      select r.*, sum(char_length(r.content) / 4 + 4) over (order by r.seq desc rows unbounded preceding) as running_tokens
        from recent r
    )
    select coalesce(jsonb_agg(jsonb_build_object('role', c.role, 'content', c.content) order by c.seq), '[]'::jsonb)
      from costed c
     where c.running_tokens <= token_budget or c.id = target.id
  );
end
$$;

create or replace function public.conversation_history(
  conversation_id uuid,
  before uuid default null,
  page_size integer default 50
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  cursor_seq bigint;
  page jsonb;
  has_more boolean;
begin
  if not exists (select 1 from public.conversations c where c.id = conversation_history.conversation_id) then
    return null;
  end if;
  if before is not null then
    select m.seq into cursor_seq from public.messages m
     where m.id = conversation_history.before and m.conversation_id = conversation_history.conversation_id;
    if not found then
      raise sqlstate 'PGRST' using
        message = '{"code": "cursor_not_found", "message": "The before cursor names no message of this conversation.", "hint": "Pass the next_before of a previous page, or start again without it."}',
        detail = '{"status": 404, "headers": {}}';
    end if;
  end if;
  with newest as (
    select m.id, m.role, m.content, m.status, m.error, m.reply_to, m.created_at, m.seq
      from public.messages m
     where m.conversation_id = conversation_history.conversation_id
       and (cursor_seq is null or m.seq < cursor_seq)
     order by m.seq desc
     limit page_size + 1
  )
  select coalesce(jsonb_agg(to_jsonb(n) - 'rn' order by n.seq) filter (where rn <= page_size), '[]'::jsonb),
         count(*) > page_size
    into page, has_more
    from (select newest.*, row_number() over (order by seq desc) as rn from newest) n;
  return jsonb_build_object(
    'messages', page,
    'next_before', case when has_more then page -> 0 ->> 'id' end
  );
end
$$;

-- --- answering in order -------------------------------------------------------------------------

-- The message to answer next in a conversation: its earliest unanswered user message, if nobody
-- holds it yet. Called with the conversation's row locked.
create function public.next_message_to_answer(conversation_id uuid) returns uuid
language sql
stable
set search_path = ''
as $$
  select earliest.id
    from (select m.id, m.status
            from public.messages m
           where m.conversation_id = next_message_to_answer.conversation_id
             and m.role = 'user'
             and m.status in ('pending', 'processing')
           order by m.seq
           limit 1) earliest
   where earliest.status = 'pending'
$$;
revoke execute on function public.next_message_to_answer(uuid) from public, anon, authenticated;
grant execute on function public.next_message_to_answer(uuid) to service_role;

-- The sweep's list: as before, but only the head of each conversation's queue. A later message
-- waits for the earlier one and is handed on when it settles; listing every waiting message would
-- have each sweep claim them all for nothing (a conversation with a backlog of 300 is 300 refused
-- claims every interval), while the head alone is what needs re-driving.
create or replace function public.list_stalled_messages(
  pending_grace_seconds integer default 30,
  max_count integer default 100
) returns table (id uuid, status text, created_at timestamptz)
language sql
stable
set search_path = ''
as $$
  select m.id, m.status, m.created_at
    from public.messages m
   where m.role = 'user'
     and m.status in ('pending', 'processing')
     and ((m.status = 'pending' and m.created_at < now() - make_interval(secs => pending_grace_seconds))
          or (m.status = 'processing' and m.lease_expires_at < now()))
     and not exists (
       select 1
         from public.messages e
        where e.conversation_id = m.conversation_id
          and e.role = 'user'
          and e.status in ('pending', 'processing')
          and e.seq < m.seq
     )
   order by m.created_at
   limit max_count
$$;

-- Every pipeline writer takes the conversation's row lock (FOR NO KEY UPDATE: inserts, whose
-- foreign-key checks take KEY SHARE, are not held up) before the message's, so claims,
-- completions, failures and releases of one conversation happen one after the other and never
-- deadlock.

drop function public.claim_message_for_reply(uuid, integer, integer, integer, integer);
drop function public.claim_message(uuid, integer, integer);

-- As before (fenced by claim_token), plus: a message waits while an earlier message of its
-- conversation is unanswered ({"waiting": true, "message_id", "waiting_for"}), and the caller may
-- choose the claim's token, so that a claim whose answer it never received (a timeout) can still
-- be released by that token.
create function public.claim_message(
  message_id uuid,
  lease_seconds integer default 120,
  max_attempts integer default 5,
  claim_token uuid default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  target public.messages;
  conversation public.conversations;
  earlier uuid;
  claimed public.messages;
begin
  select * into target from public.messages m where m.id = claim_message.message_id and m.role = 'user';
  if not found then
    return null;
  end if;
  select * into conversation from public.conversations c where c.id = target.conversation_id for no key update;
  select * into target from public.messages m where m.id = claim_message.message_id;
  if not (target.status = 'pending' or (target.status = 'processing' and target.lease_expires_at < now())) then
    return null;
  end if;
  select m.id into earlier
    from public.messages m
   where m.conversation_id = target.conversation_id
     and m.role = 'user'
     and m.seq < target.seq
     and m.status in ('pending', 'processing')
   order by m.seq
   limit 1;
  if earlier is not null then
    return jsonb_build_object('waiting', true, 'message_id', target.id, 'waiting_for', earlier);
  end if;

  update public.messages m
     set status = 'processing',
         attempts = m.attempts + 1,
         lease_expires_at = now() + make_interval(secs => lease_seconds),
         claim_token = coalesce(claim_message.claim_token, gen_random_uuid()),
         error = null
   where m.id = target.id
     and m.attempts < max_attempts
  returning * into claimed;

  if not found then
    update public.messages m
       set status = 'failed',
           lease_expires_at = null,
           claim_token = null,
           error = format('No reply could be generated after %s attempts. Please send the message again.', m.attempts)
     where m.id = target.id;
    return null;
  end if;

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

-- Claim and context in one round trip, as before. The system prompt counts inside token_budget:
-- one longer than what the budget leaves beside the message being answered is cut to fit
-- (system_prompt_trimmed), so neither the model nor this reply's worker ever gets it whole.
create function public.claim_message_for_reply(
  message_id uuid,
  token_budget integer,
  lease_seconds integer default 120,
  max_attempts integer default 5,
  max_messages integer default 200,
  claim_token uuid default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  claim jsonb := public.claim_message(message_id, lease_seconds, max_attempts, claim_token);
  prompt text;
  message_cost integer;
  room integer;
  trimmed boolean := false;
begin
  if claim is null or claim ? 'waiting' then
    return claim;
  end if;
  prompt := claim ->> 'system_prompt';
  select char_length(m.content) / 4 + 4 into message_cost from public.messages m where m.id = claim_message_for_reply.message_id;
  room := greatest(token_budget - message_cost, 0);
  if prompt is not null and char_length(prompt) / 4 + 4 > room then
    prompt := left(prompt, greatest(room - 4, 0) * 4);
    trimmed := true;
  end if;
  return claim || jsonb_build_object(
    'system_prompt', nullif(prompt, ''),
    'system_prompt_trimmed', trimmed,
    'context', public.fetch_message_context(
      message_id, greatest(token_budget - coalesce(char_length(prompt) / 4 + 4, 0), 1), max_messages)
  );
end
$$;

-- As before (fenced), plus the conversation's lock first and, in the answer, next_message_id:
-- the message of this conversation to answer now that this one is settled, if any.
create or replace function public.complete_message_for_reply(
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
  conversation_id uuid;
  target public.messages;
  reply public.messages;
  next_id uuid;
begin
  select m.conversation_id into conversation_id
    from public.messages m where m.id = complete_message_for_reply.message_id and m.role = 'user';
  if not found then
    return null;
  end if;
  perform 1 from public.conversations c where c.id = conversation_id for no key update;
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

  next_id := public.next_message_to_answer(target.conversation_id);
  select * into reply from public.messages r where r.reply_to = target.id;
  if reply.id is null then
    return jsonb_build_object('status', target.status, 'reply_id', null, 'conversation_id', target.conversation_id,
                              'next_message_id', next_id);
  end if;
  return jsonb_build_object(
    'status', 'done', 'reply_id', reply.id, 'content', reply.content, 'conversation_id', reply.conversation_id,
    'next_message_id', next_id
  );
end
$$;

-- As before (fenced), answering {"failed", "next_message_id"} so the next message is handed on.
drop function public.fail_message(uuid, uuid, text);
create function public.fail_message(message_id uuid, claim_token uuid, error text) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  conversation_id uuid;
  failed boolean;
begin
  select m.conversation_id into conversation_id
    from public.messages m where m.id = fail_message.message_id and m.role = 'user';
  if not found then
    return jsonb_build_object('failed', false, 'next_message_id', null);
  end if;
  perform 1 from public.conversations c where c.id = conversation_id for no key update;
  update public.messages m
     set status = 'failed', error = fail_message.error, lease_expires_at = null, claim_token = null
   where m.id = fail_message.message_id
     and m.role = 'user'
     and m.status = 'processing'
     and m.claim_token = fail_message.claim_token;
  failed := found;
  return jsonb_build_object('failed', failed, 'next_message_id', public.next_message_to_answer(conversation_id));
end
$$;

-- As before (fenced), behind the conversation's lock like every other writer: a release sent
-- because a claim call timed out then waits for that claim to commit and hands it back, instead
-- of finding nothing yet and leaving the claim to its lease.
create or replace function public.release_message(message_id uuid, claim_token uuid) returns boolean
language plpgsql
set search_path = ''
as $$
declare
  conversation_id uuid;
begin
  select m.conversation_id into conversation_id from public.messages m where m.id = release_message.message_id;
  if not found then
    return false;
  end if;
  perform 1 from public.conversations c where c.id = conversation_id for no key update;
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
  public.claim_message(uuid, integer, integer, uuid),
  public.claim_message_for_reply(uuid, integer, integer, integer, integer, uuid),
  public.fail_message(uuid, uuid, text)
  from public, anon, authenticated;
grant execute on function
  public.claim_message(uuid, integer, integer, uuid),
  public.claim_message_for_reply(uuid, integer, integer, integer, integer, uuid),
  public.fail_message(uuid, uuid, text)
  to service_role;
