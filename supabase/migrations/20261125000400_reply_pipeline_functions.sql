-- The reply pipeline's steps, one round trip each, called by the service through
-- supabase-py's .rpc() with the service role. Each is a single atomic statement or
-- transaction, so any number of workers and instances can run them at once: the row
-- lock and the WHERE clauses, not the service, decide who wins. Security invoker: the
-- service role already bypasses RLS, and nobody else may execute them.

-- Take a user message for generation. Returns null when it is not claimable: already
-- done or failed, held by a live lease, or out of attempts (then it is marked failed, so
-- a message that crashes every worker still ends visibly).
create function public.claim_message(
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
    'lease_expires_at', claimed.lease_expires_at,
    'system_prompt', conversation.system_prompt,
    'model', conversation.model
  );
end
$$;

-- The conversation as the model should see it for this message: the newest messages up to
-- and including it that fit the token budget, oldest first. Only max_messages rows are ever
-- read, through the (conversation_id, created_at desc, id desc) index, so a conversation of
-- 100,000 messages costs what one of ten does. Tokens are estimated as chars / 4 + 4.
create function public.fetch_message_context(
  message_id uuid,
  token_budget integer,
  max_messages integer default 200
) returns jsonb
language sql
stable
set search_path = ''
as $$
  with target as (
    select m.id, m.conversation_id, m.created_at
      from public.messages m
     where m.id = fetch_message_context.message_id
  ),
  recent as (
    select m.id, m.role, m.content, m.created_at, (m.id = t.id) as is_target
      from target t
      join public.messages m on m.conversation_id = t.conversation_id
     where (m.created_at, m.id) <= (t.created_at, t.id)
       and (m.role = 'assistant' or m.status <> 'failed' or m.id = t.id)
     order by m.created_at desc, m.id desc
     limit max_messages
  ),
  costed as (
    select r.*,
           sum(char_length(r.content) / 4 + 4)
             over (order by r.created_at desc, r.id desc rows unbounded preceding) as running_tokens
      from recent r
  )
  select coalesce(
    jsonb_agg(jsonb_build_object('role', c.role, 'content', c.content)
              order by c.created_at, c.id),
    '[]'::jsonb)
    from costed c
   where c.running_tokens <= token_budget or c.is_target
$$;

-- Write the reply and close the user message in one transaction. reply_to is unique, so a
-- second worker finishing the same message adds nothing and gets the first reply's id.
create function public.complete_message(
  message_id uuid,
  content text,
  model text default null,
  prompt_tokens integer default null,
  completion_tokens integer default null
) returns uuid
language plpgsql
set search_path = ''
as $$
declare
  reply_id uuid;
begin
  insert into public.messages
    (conversation_id, user_id, role, content, status, reply_to, model, prompt_tokens, completion_tokens)
  select m.conversation_id, m.user_id, 'assistant', complete_message.content, 'done', m.id,
         complete_message.model, complete_message.prompt_tokens, complete_message.completion_tokens
    from public.messages m
   where m.id = complete_message.message_id and m.role = 'user'
  on conflict (reply_to) do nothing
  returning id into reply_id;

  if reply_id is null then
    select r.id into reply_id from public.messages r where r.reply_to = complete_message.message_id;
  end if;

  update public.messages m
     set status = 'done', error = null, lease_expires_at = null
   where m.id = complete_message.message_id and m.status <> 'done';
  return reply_id;
end
$$;

-- Give up on a message with an error its author can read. Never overrides a reply.
create function public.fail_message(message_id uuid, error text) returns boolean
language plpgsql
set search_path = ''
as $$
begin
  update public.messages m
     set status = 'failed', error = fail_message.error, lease_expires_at = null
   where m.id = fail_message.message_id
     and m.role = 'user'
     and m.status in ('pending', 'processing');
  return found;
end
$$;

-- User messages nobody is answering: still pending after the grace period (the webhook was
-- lost, refused or never configured) or processing past their lease (the worker died).
create function public.list_stalled_messages(
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
   order by m.created_at
   limit max_count
$$;

revoke execute on function
  public.claim_message(uuid, integer, integer),
  public.fetch_message_context(uuid, integer, integer),
  public.complete_message(uuid, text, text, integer, integer),
  public.fail_message(uuid, text),
  public.list_stalled_messages(integer, integer)
  from public, anon, authenticated;
grant execute on function
  public.claim_message(uuid, integer, integer),
  public.fetch_message_context(uuid, integer, integer),
  public.complete_message(uuid, text, text, integer, integer),
  public.fail_message(uuid, text),
  public.list_stalled_messages(integer, integer)
  to service_role;
