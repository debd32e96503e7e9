-- Cost and abuse limits, enforced by the database for every way a message gets in: a frontend's
-- insert through /rest/v1, a batch of rows in one request, or POST /api/chat (which inserts as
-- the caller). The limits are the operator's, in private tables no user can read or write; the
-- counting happens in triggers no user can skip; a refusal is an HTTP 429 through PostgREST
-- that says which limit was hit and when it resets.
--
-- The operator changes the limits with SQL (SQL editor or psql), e.g.
--   update private.quota_defaults set messages_per_day = 1000, tokens_per_day = 2000000;
--   insert into private.user_quotas (user_id, tokens_per_day) values ('<uuid>', 5000000)
--     on conflict (user_id) do update set tokens_per_day = excluded.tokens_per_day;
-- A null in user_quotas means "the default".

create table private.quota_defaults (
  singleton boolean primary key default true check (singleton),
  messages_per_window integer not null default 20 check (messages_per_window > 0),
  window_seconds integer not null default 60 check (window_seconds > 0),
  messages_per_day integer not null default 500 check (messages_per_day > 0),
  tokens_per_day bigint not null default 1000000 check (tokens_per_day > 0),
  max_conversations integer not null default 500 check (max_conversations > 0),
  system_prompt_max_chars integer not null default 8000 check (system_prompt_max_chars >= 0),
  updated_at timestamptz not null default now()
);
insert into private.quota_defaults default values;
revoke all on private.quota_defaults from public, anon, authenticated;

create table private.user_quotas (
  user_id uuid primary key references auth.users (id) on delete cascade,
  messages_per_window integer check (messages_per_window > 0),
  window_seconds integer check (window_seconds > 0),
  messages_per_day integer check (messages_per_day > 0),
  tokens_per_day bigint check (tokens_per_day > 0),
  max_conversations integer check (max_conversations > 0),
  system_prompt_max_chars integer check (system_prompt_max_chars >= 0),
  updated_at timestamptz not null default now()
);
revoke all on private.user_quotas from public, anon, authenticated;

-- The limits in force for one user: their overrides, else the defaults.
create function private.effective_quota(who uuid) returns private.quota_defaults
language sql
stable
set search_path = ''
as $$
  select true,
         coalesce(u.messages_per_window, d.messages_per_window),
         coalesce(u.window_seconds, d.window_seconds),
         coalesce(u.messages_per_day, d.messages_per_day),
         coalesce(u.tokens_per_day, d.tokens_per_day),
         coalesce(u.max_conversations, d.max_conversations),
         coalesce(u.system_prompt_max_chars, d.system_prompt_max_chars),
         greatest(d.updated_at, u.updated_at)
    from private.quota_defaults d
    left join private.user_quotas u on u.user_id = effective_quota.who
$$;
revoke execute on function private.effective_quota(uuid) from public, anon, authenticated;

-- What each user used per UTC day: readable by its user (RLS), written only by the triggers below.
create table public.chat_usage (
  user_id uuid not null references auth.users (id) on delete cascade,
  day date not null,
  messages integer not null default 0,
  tokens bigint not null default 0,
  updated_at timestamptz not null default now(),
  primary key (user_id, day)
);
comment on table public.chat_usage is
  'Messages sent and model tokens (prompt + completion, as the model reported them) per user per UTC day.';
alter table public.chat_usage enable row level security;
revoke all on public.chat_usage from anon, authenticated;
grant select on public.chat_usage to authenticated;
grant all on public.chat_usage to service_role;
create policy chat_usage_select_own on public.chat_usage
  for select to authenticated
  using (user_id = (select auth.uid()));

-- The burst window: a fixed window per user, started by the first message after the last one ended.
create table private.message_windows (
  user_id uuid primary key references auth.users (id) on delete cascade,
  started_at timestamptz not null,
  messages integer not null
);
revoke all on private.message_windows from public, anon, authenticated;

-- Refuse a request with PostgREST's "full response control" error: SQLSTATE PGRST, the body's
-- JSON in MESSAGE and the status and headers in DETAIL (PostgREST's RaisePgrst; the devstack
-- gateway parses it the same way).
create function private.refuse(
  status integer,
  code text,
  message text,
  details jsonb default null,
  hint text default null,
  headers jsonb default '{}'::jsonb
) returns void
language plpgsql
set search_path = ''
as $$
begin
  raise sqlstate 'PGRST' using
    message = pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'code', code, 'message', message, 'details', details::text, 'hint', hint))::text,
    detail = pg_catalog.jsonb_build_object('status', status, 'headers', headers)::text;
end
$$;
revoke execute on function private.refuse(integer, text, text, jsonb, text, jsonb) from public, anon, authenticated;

create function private.utc_text(at timestamptz) returns text
language sql
immutable
set search_path = ''
as $$
  select pg_catalog.to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;
revoke execute on function private.utc_text(timestamptz) from public, anon, authenticated;

create function private.refuse_over_quota(limit_name text, allowed bigint, resets_at timestamptz, what text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  wait_seconds integer := greatest(1, ceil(extract(epoch from resets_at - now()))::integer);
begin
  perform private.refuse(
    429,
    'quota_exceeded',
    format('%s. The limit resets at %s (in %s s).', what, private.utc_text(resets_at), wait_seconds),
    jsonb_build_object('limit', limit_name, 'allowed', allowed, 'resets_at', private.utc_text(resets_at),
                       'retry_after_seconds', wait_seconds),
    'Wait until the limit resets, or ask the operator for a higher limit.',
    jsonb_build_object('Retry-After', wait_seconds::text)
  );
end
$$;
revoke execute on function private.refuse_over_quota(text, bigint, timestamptz, text) from public, anon, authenticated;

-- Count `message_count` new messages of one user against their limits, or refuse them all.
-- The counters' rows are locked by the upserts, so concurrent requests of one user queue here
-- and each sees the others' messages; a refusal rolls the counts back with the insert.
create function private.consume_message_quota(who uuid, message_count integer) returns void
language plpgsql
set search_path = ''
as $$
declare
  quota private.quota_defaults := private.effective_quota(who);
  today date := (now() at time zone 'UTC')::date;
  tomorrow timestamptz := ((now() at time zone 'UTC')::date + 1)::timestamp at time zone 'UTC';
  burst private.message_windows;
  usage public.chat_usage;
begin
  insert into private.message_windows as w (user_id, started_at, messages)
  values (who, now(), message_count)
  on conflict (user_id) do update
    set started_at = case when w.started_at <= now() - make_interval(secs => quota.window_seconds)
                          then now() else w.started_at end,
        messages = case when w.started_at <= now() - make_interval(secs => quota.window_seconds)
                        then excluded.messages else w.messages + excluded.messages end
  returning * into burst;
  if burst.messages > quota.messages_per_window then
    perform private.refuse_over_quota(
      'messages_per_window', quota.messages_per_window,
      burst.started_at + make_interval(secs => quota.window_seconds),
      format('Too many messages: at most %s per %s s', quota.messages_per_window, quota.window_seconds));
  end if;

  insert into public.chat_usage as u (user_id, day, messages)
  values (who, today, message_count)
  on conflict (user_id, day) do update
    set messages = u.messages + excluded.messages, updated_at = now()
  returning * into usage;
  if usage.messages > quota.messages_per_day then
    perform private.refuse_over_quota(
      'messages_per_day', quota.messages_per_day, tomorrow,
      format('Daily message limit reached: at most %s messages per day', quota.messages_per_day));
  end if;
  if usage.tokens >= quota.tokens_per_day then
    perform private.refuse_over_quota(
      'tokens_per_day', quota.tokens_per_day, tomorrow,
      format('Daily AI usage limit reached: %s of %s tokens used today', usage.tokens, quota.tokens_per_day));
  end if;
end
$$;
revoke execute on function private.consume_message_quota(uuid, integer) from public, anon, authenticated;

-- Statement-level, over the statement's new rows: a batch of 500 rows in one request is 500
-- messages. Only for `authenticated` (the WHEN clause sees the inserting role; inside the
-- function, which runs as its owner to write the counters, current_user would be the owner).
create function private.count_user_messages() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  batch record;
begin
  for batch in
    select n.user_id, count(*)::integer as messages from new_messages n where n.role = 'user' group by n.user_id
  loop
    perform private.consume_message_quota(batch.user_id, batch.messages);
  end loop;
  return null;
end
$$;
revoke execute on function private.count_user_messages() from public, anon, authenticated;

create trigger messages_count_user_messages
  after insert on public.messages
  referencing new table as new_messages
  for each statement
  when (current_user = 'authenticated')
  execute function private.count_user_messages();

-- A reply's tokens, as the model reported them, count for the author of the message it answers.
create function private.count_reply_tokens() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.chat_usage as u (user_id, day, tokens)
  select n.user_id, (now() at time zone 'UTC')::date,
         sum(coalesce(n.prompt_tokens, 0)::bigint + coalesce(n.completion_tokens, 0))
    from new_messages n
   where n.role = 'assistant'
   group by n.user_id
  on conflict (user_id, day) do update
    set tokens = u.tokens + excluded.tokens, updated_at = now();
  return null;
end
$$;
revoke execute on function private.count_reply_tokens() from public, anon, authenticated;

create trigger messages_count_reply_tokens
  after insert on public.messages
  referencing new table as new_messages
  for each statement
  execute function private.count_reply_tokens();

-- The caller's limits and what is left of them. No arguments: nothing here can be chosen by
-- the user it limits.
create function public.chat_quota() returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  who uuid := auth.uid();
  quota private.quota_defaults;
  usage public.chat_usage;
  burst private.message_windows;
  in_window integer := 0;
  tomorrow timestamptz := ((now() at time zone 'UTC')::date + 1)::timestamp at time zone 'UTC';
begin
  if who is null then
    raise exception 'not signed in' using errcode = '42501';
  end if;
  quota := private.effective_quota(who);
  select * into usage from public.chat_usage u where u.user_id = who and u.day = (now() at time zone 'UTC')::date;
  select * into burst from private.message_windows w where w.user_id = who;
  if burst.started_at > now() - make_interval(secs => quota.window_seconds) then
    in_window := burst.messages;
  end if;
  return jsonb_build_object(
    'messages_per_day', quota.messages_per_day,
    'messages_today', coalesce(usage.messages, 0),
    'messages_left_today', greatest(quota.messages_per_day - coalesce(usage.messages, 0), 0),
    'tokens_per_day', quota.tokens_per_day,
    'tokens_today', coalesce(usage.tokens, 0),
    'tokens_left_today', greatest(quota.tokens_per_day - coalesce(usage.tokens, 0), 0),
    'day_resets_at', private.utc_text(tomorrow),
    'messages_per_window', quota.messages_per_window,
    'window_seconds', quota.window_seconds,
    'messages_in_window', in_window,
    'window_resets_at', case when in_window > 0
      then private.utc_text(burst.started_at + make_interval(secs => quota.window_seconds)) end,
    'max_conversations', quota.max_conversations,
    'conversations', (select count(*) from public.conversations c where c.user_id = who),
    'system_prompt_max_chars', quota.system_prompt_max_chars
  );
end
$$;
revoke execute on function public.chat_quota() from public, anon, authenticated;
grant execute on function public.chat_quota() to authenticated;

-- The REST door's old counter took its limits as arguments, so its subject could reset it
-- (max_requests => 1, window_seconds => 0). The insert trigger above replaces it.
drop function public.consume_chat_quota(integer, integer);
drop table private.chat_rate_limits;

-- --- conversations: how many, how long a system prompt, which model --------------------------

-- The models the service offers, kept in step with its OPENAI_MODELS by the service itself
-- (configure_chat_models at start-up). Empty: only the service's default (model null) is allowed.
create table private.chat_models (
  model text primary key check (char_length(model) between 1 and 100),
  updated_at timestamptz not null default now()
);
revoke all on private.chat_models from public, anon, authenticated;

create function public.configure_chat_models(models text[]) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if models is null or cardinality(models) = 0 then
    raise exception 'configure_chat_models needs at least one model' using errcode = '22023';
  end if;
  delete from private.chat_models m where m.model <> all (models);
  insert into private.chat_models (model) select distinct unnest(models) on conflict (model) do nothing;
end
$$;
revoke execute on function public.configure_chat_models(text[]) from public, anon, authenticated;
grant execute on function public.configure_chat_models(text[]) to service_role;

-- Every writer, every role: a conversation's system prompt fits its owner's limit and its model
-- is one the service offers. Checked when the value is set or changed, so lowering a limit or
-- retiring a model does not block renaming an old conversation.
create function private.check_conversation_bounds() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  prompt_limit integer;
  offered text;
begin
  if new.system_prompt is not null
     and (tg_op = 'INSERT' or new.system_prompt is distinct from old.system_prompt) then
    prompt_limit := (private.effective_quota(new.user_id)).system_prompt_max_chars;
    if char_length(new.system_prompt) > prompt_limit then
      perform private.refuse(
        400, 'system_prompt_too_long',
        format('The system prompt has %s characters; at most %s are allowed.', char_length(new.system_prompt), prompt_limit),
        jsonb_build_object('allowed', prompt_limit));
    end if;
  end if;
  if new.model is not null and (tg_op = 'INSERT' or new.model is distinct from old.model)
     and not exists (select 1 from private.chat_models m where m.model = new.model) then
    select string_agg(m.model, ', ' order by m.model) into offered from private.chat_models m;
    perform private.refuse(
      400, 'model_not_allowed',
      format('The model %s is not offered here. Choose one of: %s, or leave it empty for the default.',
             pg_catalog.quote_literal(left(new.model, 100)), coalesce(offered, '(none configured)')),
      jsonb_build_object('offered', coalesce((select jsonb_agg(m.model order by m.model) from private.chat_models m), '[]'::jsonb)));
  end if;
  return new;
end
$$;
revoke execute on function private.check_conversation_bounds() from public, anon, authenticated;

create trigger conversations_check_bounds
  before insert or update of system_prompt, model on public.conversations
  for each row execute function private.check_conversation_bounds();

-- A user's conversations are capped. The advisory lock makes concurrent creations of one user
-- count one after the other, so a burst of parallel requests cannot slip past the cap.
create function private.cap_user_conversations() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  creator record;
  cap integer;
  owned integer;
begin
  for creator in select distinct n.user_id from new_conversations n loop
    perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('conversations:' || creator.user_id::text, 0));
    cap := (private.effective_quota(creator.user_id)).max_conversations;
    select count(*) into owned from public.conversations c where c.user_id = creator.user_id;
    if owned > cap then
      perform private.refuse(
        403, 'conversation_limit',
        format('You can have at most %s conversations. Delete some to start new ones.', cap),
        jsonb_build_object('allowed', cap));
    end if;
  end loop;
  return null;
end
$$;
revoke execute on function private.cap_user_conversations() from public, anon, authenticated;

create trigger conversations_cap_per_user
  after insert on public.conversations
  referencing new table as new_conversations
  for each statement
  when (current_user = 'authenticated')
  execute function private.cap_user_conversations();

-- --- page cursors: a client error, not a server error ------------------------------------------
-- P0002 maps to HTTP 500 in PostgREST. An unknown cursor is the caller's mistake: 404 with a
-- code they can act on. (Raised inline: these run as the caller, who cannot use schema private.)

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
      raise sqlstate 'PGRST' using
        message = '{"code": "cursor_not_found", "message": "The before cursor names no message of this conversation.", "hint": "Pass the next_before of a previous page, or start again without it."}',
        detail = '{"status": 404, "headers": {}}';
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

create or replace function public.list_conversations(
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
      raise sqlstate 'PGRST' using
        message = '{"code": "cursor_not_found", "message": "The before cursor names none of your conversations.", "hint": "Pass the next_before of a previous page, or start again without it."}',
        detail = '{"status": 404, "headers": {}}';
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
