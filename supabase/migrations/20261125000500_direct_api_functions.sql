-- What the REST door (POST /api/chat and friends) needs beyond plain table access. The caller's
-- functions are security invoker: they run as the caller, so RLS decides what they see.

-- The state of one of the caller's messages and its reply, in one round trip.
-- Null when the message does not exist or is not the caller's.
create function public.message_outcome(message_id uuid) returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'message_id', m.id,
    'conversation_id', m.conversation_id,
    'status', m.status,
    'error', m.error,
    'reply_id', r.id,
    'reply', r.content
  )
    from public.messages m
    left join public.messages r on r.reply_to = m.id
   where m.id = message_outcome.message_id
$$;

-- A page of a conversation, newest page first, messages oldest first within it. `before` is a
-- message id (the cursor the previous page returned). Null when the conversation is not the
-- caller's, so "missing" and "someone else's" look the same.
create function public.conversation_history(
  conversation_id uuid,
  before uuid default null,
  page_size integer default 50
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  cursor_row public.messages;
  page jsonb;
  has_more boolean;
begin
  if not exists (select 1 from public.conversations c where c.id = conversation_history.conversation_id) then
    return null;
  end if;
  if before is not null then
    select * into cursor_row from public.messages m
     where m.id = conversation_history.before and m.conversation_id = conversation_history.conversation_id;
    if not found then
      raise exception 'unknown cursor' using errcode = 'P0002', hint = 'Pass the next_before of a previous page.';
    end if;
  end if;
  with newest as (
    select m.id, m.role, m.content, m.status, m.error, m.reply_to, m.created_at
      from public.messages m
     where m.conversation_id = conversation_history.conversation_id
       and (before is null or (m.created_at, m.id) < (cursor_row.created_at, cursor_row.id))
     order by m.created_at desc, m.id desc
     limit page_size + 1
  )
  select coalesce(jsonb_agg(to_jsonb(n) - 'rn' order by n.created_at, n.id) filter (where rn <= page_size), '[]'::jsonb),
         count(*) > page_size
    into page, has_more
    from (select newest.*, row_number() over (order by created_at desc, id desc) as rn from newest) n;
  return jsonb_build_object(
    'messages', page,
    'next_before', case when has_more then page -> 0 ->> 'id' end
  );
end
$$;

-- The caller's conversations, newest first, with the same cursor scheme.
create function public.list_conversations(
  before uuid default null,
  page_size integer default 50
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  cursor_row public.conversations;
  page jsonb;
  has_more boolean;
begin
  if before is not null then
    select * into cursor_row from public.conversations c where c.id = list_conversations.before;
    if not found then
      raise exception 'unknown cursor' using errcode = 'P0002', hint = 'Pass the next_before of a previous page.';
    end if;
  end if;
  with newest as (
    select c.id, c.title, c.system_prompt, c.model, c.created_at, c.updated_at
      from public.conversations c
     where before is null or (c.created_at, c.id) < (cursor_row.created_at, cursor_row.id)
     order by c.created_at desc, c.id desc
     limit page_size + 1
  )
  select coalesce(jsonb_agg(to_jsonb(n) - 'rn' order by n.created_at desc, n.id desc) filter (where rn <= page_size),
                  '[]'::jsonb),
         count(*) > page_size
    into page, has_more
    from (select newest.*, row_number() over (order by created_at desc, id desc) as rn from newest) n;
  return jsonb_build_object(
    'conversations', page,
    'next_before', case when has_more then page -> -1 ->> 'id' end
  );
end
$$;

-- Per-user rate limit for the REST door, kept in the database so every instance and worker
-- shares one count. A fixed window: simple, and exact enough for abuse control.
create table private.chat_rate_limits (
  user_id uuid primary key references auth.users (id) on delete cascade,
  window_started_at timestamptz not null,
  request_count integer not null
);
revoke all on private.chat_rate_limits from public, anon, authenticated;

create function public.consume_chat_quota(max_requests integer, window_seconds integer) returns jsonb
language plpgsql
volatile
security definer  -- writes the private counter table on the caller's behalf, for auth.uid() only
set search_path = ''
as $$
declare
  caller uuid := auth.uid();
  counter private.chat_rate_limits;
begin
  if caller is null then
    raise exception 'not signed in' using errcode = '42501';
  end if;
  insert into private.chat_rate_limits as l (user_id, window_started_at, request_count)
  values (caller, now(), 1)
  on conflict (user_id) do update
    set window_started_at = case
          when l.window_started_at <= now() - make_interval(secs => window_seconds) then now()
          else l.window_started_at end,
        request_count = case
          when l.window_started_at <= now() - make_interval(secs => window_seconds) then 1
          else l.request_count + 1 end
  returning * into counter;
  return jsonb_build_object(
    'allowed', counter.request_count <= max_requests,
    'retry_after_seconds', greatest(1, ceil(extract(epoch from
        counter.window_started_at + make_interval(secs => window_seconds) - now()))::integer)
  );
end
$$;

-- Which of these messages are settled: how a process waiting for a reply learns that another
-- process (or instance) answered it. Service role only.
create function public.settled_messages(message_ids uuid[]) returns table (id uuid, status text)
language sql
stable
set search_path = ''
as $$
  select m.id, m.status
    from public.messages m
   where m.id = any (message_ids) and m.status in ('done', 'failed')
$$;

revoke execute on function
  public.message_outcome(uuid),
  public.conversation_history(uuid, uuid, integer),
  public.list_conversations(uuid, integer),
  public.consume_chat_quota(integer, integer),
  public.settled_messages(uuid[])
  from public, anon, authenticated;
grant execute on function
  public.message_outcome(uuid),
  public.conversation_history(uuid, uuid, integer),
  public.list_conversations(uuid, integer),
  public.consume_chat_quota(integer, integer)
  to authenticated;
grant execute on function public.settled_messages(uuid[]) to service_role;
