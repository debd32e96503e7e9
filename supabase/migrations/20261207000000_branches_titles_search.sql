-- Regenerate, edit and branch; titles; search.
--
-- A conversation is a tree of turns (a user message and its one reply). parent_id links each
-- user message to the previous user message of its branch (null for a branch's first message)
-- and each reply to the message it answers, so every row has its place in one tree. An edit is a
-- new user message beside the one it edits (same parent, edit_of naming the first version); a
-- regeneration is a new user message beside the one whose reply is asked for again (same parent,
-- same content, regenerates naming that message). Both are ordinary inserts: the webhook, the
-- message quota (a regeneration counts as a message), seq numbering and answering in order apply
-- to them unchanged, and reply_to stays unique (one reply per user row).
--
-- The model's context for a message is the path from the root to it, not the whole conversation.
-- conversation_history still reads every message of a conversation in order (the log);
-- conversation_branch reads one branch with its versions.

alter table public.messages
  add column parent_id uuid references public.messages (id) on delete cascade,
  add column edit_of uuid references public.messages (id) on delete set null,
  add column regenerates uuid references public.messages (id) on delete set null;
comment on column public.messages.parent_id is
  'User rows: the previous user message of this branch (null for a branch''s first message). '
  'Assistant rows: the message answered (reply_to). Set by the database when not given.';
comment on column public.messages.edit_of is
  'User rows: the first version of the message this one is an edited version of.';
comment on column public.messages.regenerates is
  'User rows: the message whose reply this one asks for again (its content and place are copied).';

-- Existing conversations are one branch each: every user message follows the previous one.
with ordered as (
  select m.id, lag(m.id) over (partition by m.conversation_id order by m.seq) as previous
    from public.messages m
   where m.role = 'user'
)
update public.messages m set parent_id = o.previous from ordered o where m.id = o.id and o.previous is not null;
update public.messages r set parent_id = r.reply_to where r.role = 'assistant';

create index messages_parent_idx on public.messages (parent_id);
create index messages_edit_of_idx on public.messages (edit_of) where edit_of is not null;
create index messages_regenerates_idx on public.messages (regenerates) where regenerates is not null;

-- Users may place their message (parent_id) and ask for an edit or a regeneration; the trigger
-- below checks and normalises all three whoever inserts.
grant insert (parent_id, edit_of, regenerates) on public.messages to authenticated;

-- --- placing a message in the tree ------------------------------------------------------------

-- BEFORE INSERT, after messages_number_message (triggers fire by name), and before row-level
-- security and the table's constraints look at the row: a regeneration may arrive without content.
-- A message may only point at a user message of its own conversation, of the same user: nothing
-- here copies or reveals another user's row (the conversation itself is checked by RLS next).
--
-- A message that names no parent continues the branch last written to: the conversation's
-- newest user message. An advisory lock per conversation makes concurrent inserts take their
-- parent one after the other, so two messages sent at once do not fork the conversation; and a
-- message whose seq was drawn before a concurrent one's but gets the lock after it draws a new
-- seq, so that seq order stays the order of the branch (a parent before its children).
create function private.place_message_in_tree() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  target public.messages;
  shown public.messages;
  newest public.messages;
  pointer text;
  pointed uuid;
begin
  if new.role <> 'user' then
    if new.edit_of is not null or new.regenerates is not null then
      raise exception 'only a user message can edit a message or regenerate a reply' using errcode = '22023';
    end if;
    new.parent_id := new.reply_to;
    return new;
  end if;
  if new.edit_of is not null and new.regenerates is not null then
    raise exception 'a message edits a message or regenerates a reply, not both' using errcode = '22023';
  end if;

  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('messages:' || new.conversation_id::text, 0));

  pointer := case when new.regenerates is not null then 'regenerates'
                  when new.edit_of is not null then 'edit_of'
                  when new.parent_id is not null then 'parent_id' end;
  pointed := coalesce(new.regenerates, new.edit_of, new.parent_id);
  if pointed is not null then
    select * into target from public.messages m
     where m.id = pointed and m.role = 'user'
       and m.conversation_id = new.conversation_id and m.user_id = new.user_id;
    if not found then
      raise exception '% must name a user message of the same conversation', pointer
        using errcode = '22023', hint = 'Pass the id of one of your messages in this conversation.';
    end if;
  end if;

  if new.regenerates is not null then
    new.regenerates := coalesce(target.regenerates, target.id);
    new.content := target.content;
    new.parent_id := target.parent_id;
    new.edit_of := target.edit_of;
  elsif new.edit_of is not null then
    if target.regenerates is not null then
      select * into shown from public.messages m where m.id = target.regenerates;
    else
      shown := target;
    end if;
    new.edit_of := coalesce(shown.edit_of, shown.id);
    new.parent_id := shown.parent_id;
  end if;

  select * into newest from public.messages m
   where m.conversation_id = new.conversation_id and m.role = 'user'
   order by m.seq desc
   limit 1;
  if pointer is null then
    new.parent_id := newest.id;
  end if;
  if newest.seq > new.seq then
    new.seq := pg_catalog.nextval('private.message_seq');
  end if;
  return new;
end
$$;
revoke execute on function private.place_message_in_tree() from public, anon, authenticated;

create trigger messages_place_in_tree
  before insert on public.messages
  for each row execute function private.place_message_in_tree();

-- --- regenerate and edit, for the message's owner ---------------------------------------------

-- Security invoker: the insert is the caller's own, under RLS, the column grants and the quota,
-- exactly as if the frontend had inserted the row with regenerates / edit_of set. An id that is
-- not one of the caller's messages is a 404, the same whether it exists or not.
create function public.regenerate_message(message_id uuid) returns uuid
language plpgsql
set search_path = ''
as $$
declare
  target public.messages;
  created uuid;
begin
  -- A reply's id stands for the message it answers.
  select * into target from public.messages m
   where m.id = (select coalesce(r.reply_to, r.id) from public.messages r where r.id = regenerate_message.message_id);
  if not found then
    raise sqlstate 'PGRST' using
      message = '{"code": "message_not_found", "message": "No message of yours has this id."}',
      detail = '{"status": 404, "headers": {}}';
  end if;
  insert into public.messages (conversation_id, regenerates) values (target.conversation_id, target.id)
  returning id into created;
  return created;
end
$$;

create function public.edit_message(message_id uuid, content text) returns uuid
language plpgsql
set search_path = ''
as $$
declare
  target public.messages;
  created uuid;
begin
  select * into target from public.messages m where m.id = edit_message.message_id and m.role = 'user';
  if not found then
    raise sqlstate 'PGRST' using
      message = '{"code": "message_not_found", "message": "No message of yours has this id."}',
      detail = '{"status": 404, "headers": {}}';
  end if;
  insert into public.messages (conversation_id, edit_of, content) values (target.conversation_id, target.id, edit_message.content)
  returning id into created;
  return created;
end
$$;

revoke execute on function public.regenerate_message(uuid), public.edit_message(uuid, text) from public, anon, authenticated;
grant execute on function public.regenerate_message(uuid), public.edit_message(uuid, text) to authenticated;

-- --- the model's context: the path to the message ---------------------------------------------

-- As before (20261201100100_answered_in_order.sql), newest first within token_budget and
-- max_messages, but over the message's branch: its ancestors by parent_id, each with its reply
-- as stored, instead of every earlier message of the conversation. For a conversation that never
-- branched the two are the same rows. The walk stops once it has max_messages rows to offer
-- (failed messages are skipped, as before, and do not count). claim_message_for_reply builds its
-- context with this function, so it follows the branch too.
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
    with recursive path as (
      select target.id as id, target.parent_id as parent_id, 1::bigint as offered
      union all
      select p.id, p.parent_id,
             t.offered + (p.status <> 'failed')::int + (select count(*) from public.messages r where r.reply_to = p.id)
        from path t
        join public.messages p on p.id = t.parent_id
       where t.offered < max_messages
    ),
    turns as (
      select m.id, m.role, m.content, m.seq
        from path t
        join public.messages m on m.id = t.id
       where m.status <> 'failed' or m.id = target.id
      union all
      select r.id, r.role, r.content, r.seq
        from path t
        join public.messages r on r.reply_to = t.id
       where t.id <> target.id and r.id <> target.id
    ),
    recent as (
      select * from turns order by seq desc limit max_messages
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

-- --- reading one branch -----------------------------------------------------------------------

-- A page of one branch of a conversation, as conversation_history pages the whole conversation:
-- newest page first, messages oldest first within it, `before` the next_before of the previous
-- page. The branch runs from the root through `leaf` (any message of the conversation; a reply
-- stands for the message it answers) on to the newest message below it, so a version chosen in
-- the middle shows with everything written after it; without a leaf it ends at the conversation's
-- newest user message. The answer's `leaf` is the branch's last user message: a message that
-- continues this branch is inserted with parent_id = leaf.
--
-- Each user message carries parent_id, edit_of, regenerates and
--   versions:       {"index", "count", "ids"}: its edited versions (grouped under the first
--                   version, regenerations left out) by seq; ids[index] is this message;
--   reply_versions: {"index", "count", "ids", "status", "error"}: the replies it has had, as the
--                   user rows they answer (itself, then its regenerations) by seq; ids[index] is
--                   the one whose reply follows it in this branch, status and error are that
--                   row's (pending or processing: a reply is on its way).
-- Where the branch runs through a regeneration, the user message shown is the one regenerated
-- and the reply the regeneration's. Index is 0-based. Null when the conversation is not the
-- caller's; a leaf or cursor that names no message of it is a 404.
create function public.conversation_branch(
  conversation_id uuid,
  leaf uuid default null,
  before uuid default null,
  page_size integer default 50
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  tip public.messages;
  cursor_row public.messages;
  start_id uuid;
  skip_reply boolean := false;
  page jsonb;
  has_more boolean;
begin
  if not exists (select 1 from public.conversations c where c.id = conversation_branch.conversation_id) then
    return null;
  end if;
  if conversation_branch.leaf is not null then
    select * into tip from public.messages m
     where m.conversation_id = conversation_branch.conversation_id
       and m.id = (select coalesce(l.reply_to, l.id) from public.messages l where l.id = conversation_branch.leaf);
    if not found then
      raise sqlstate 'PGRST' using
        message = '{"code": "leaf_not_found", "message": "The leaf names no message of this conversation.", "hint": "Pass the id of a message of this conversation, or no leaf for its newest branch."}',
        detail = '{"status": 404, "headers": {}}';
    end if;
    with recursive below as (
      select tip.id as id, tip.seq as seq
      union all
      select c.id, c.seq from below b join public.messages c on c.parent_id = b.id and c.role = 'user'
    )
    select m.* into tip from below b join public.messages m on m.id = b.id order by b.seq desc limit 1;
  else
    select * into tip from public.messages m
     where m.conversation_id = conversation_branch.conversation_id and m.role = 'user'
     order by m.seq desc
     limit 1;
  end if;
  start_id := tip.id;

  if before is not null then
    select * into cursor_row from public.messages m
     where m.id = conversation_branch.before and m.conversation_id = conversation_branch.conversation_id;
    if not found then
      raise sqlstate 'PGRST' using
        message = '{"code": "cursor_not_found", "message": "The before cursor names no message of this conversation.", "hint": "Pass the next_before of a previous page, or start again without it."}',
        detail = '{"status": 404, "headers": {}}';
    end if;
    if cursor_row.role = 'assistant' then
      start_id := cursor_row.reply_to;
      skip_reply := true;
    else
      start_id := cursor_row.parent_id;
    end if;
  end if;

  -- Plain columns of materialized CTEs to join on: under row-level security an index serves only
  -- a leakproof condition, and coalesce(...) = id does not count as one.
  with recursive turns as (
    select m.id, m.parent_id, coalesce(m.regenerates, m.id) as shown_id, m.status, m.error, 1 as depth
      from public.messages m where m.id = start_id
    union all
    select p.id, p.parent_id, coalesce(p.regenerates, p.id), p.status, p.error, t.depth + 1
      from turns t
      join public.messages p on p.id = t.parent_id
     where t.depth <= page_size
  ),
  shown as materialized (
    select t.depth, t.id as turn_id, t.status as turn_status, t.error as turn_error, s.id, s.role, s.content,
           s.status, s.error, s.reply_to, s.created_at, s.seq, s.parent_id, s.edit_of, s.regenerates,
           coalesce(s.edit_of, s.id) as root
      from turns t
      join public.messages s on s.id = t.shown_id
  ),
  items as (
    select t.depth, 0 as part,
           jsonb_build_object('id', r.id, 'role', r.role, 'content', r.content, 'status', r.status, 'error', r.error,
                              'reply_to', r.reply_to, 'created_at', r.created_at, 'seq', r.seq) as item
      from turns t
      join public.messages r on r.reply_to = t.id
     where not (skip_reply and t.id = start_id)
    union all
    select s.depth, 1,
           jsonb_build_object('id', s.id, 'role', s.role, 'content', s.content, 'status', s.status, 'error', s.error,
                              'reply_to', s.reply_to, 'created_at', s.created_at, 'seq', s.seq,
                              'parent_id', s.parent_id, 'edit_of', s.edit_of, 'regenerates', s.regenerates,
                              'versions', v.versions,
                              'reply_versions', rv.versions || jsonb_build_object('status', s.turn_status,
                                                                                  'error', s.turn_error))
      from shown s
      cross join lateral (
        select jsonb_build_object('index', array_position(array_agg(e.id order by e.seq), s.id) - 1,
                                  'count', count(*), 'ids', jsonb_agg(e.id order by e.seq)) as versions
          from public.messages e
         where (e.id = s.root or e.edit_of = s.root) and e.regenerates is null
      ) v
      cross join lateral (
        select jsonb_build_object('index', array_position(array_agg(g.id order by g.seq), s.turn_id) - 1,
                                  'count', count(*), 'ids', jsonb_agg(g.id order by g.seq)) as versions
          from public.messages g
         where g.id = s.id or g.regenerates = s.id
      ) rv
  ),
  newest as (
    select i.item, row_number() over (order by i.depth, i.part) as rn from items i
  )
  select coalesce(jsonb_agg(n.item order by n.rn desc) filter (where n.rn <= page_size), '[]'::jsonb),
         count(*) > page_size
    into page, has_more
    from newest n;
  return jsonb_build_object(
    'messages', page,
    'next_before', case when has_more then page -> 0 ->> 'id' end,
    'leaf', tip.id
  );
end
$$;

revoke execute on function public.conversation_branch(uuid, uuid, uuid, integer) from public, anon, authenticated;
grant execute on function public.conversation_branch(uuid, uuid, uuid, integer) to authenticated;

-- --- titles -----------------------------------------------------------------------------------

alter table public.conversations add column title_requested_at timestamptz;
comment on column public.conversations.title_requested_at is
  'When the service asked the model for a title (at most once per conversation).';

-- The service's turn to title a conversation: once, when it has no title, has a first answered
-- turn, and its owner has tokens left today. Marks the request and answers what the model needs
-- ({"user_id", "model", "messages": [the first answered user message, its reply] as
-- {"role", "content"}}); null when there is nothing to do.
create function public.claim_conversation_title(conversation_id uuid) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  claimed public.conversations;
  first_turn jsonb;
begin
  update public.conversations c
     set title_requested_at = now()
   where c.id = claim_conversation_title.conversation_id
     and c.title is null
     and c.title_requested_at is null
     and exists (select 1 from public.messages r
                  where r.conversation_id = c.id and r.role = 'assistant' and r.status = 'done')
     and coalesce((select u.tokens from public.chat_usage u
                    where u.user_id = c.user_id and u.day = (now() at time zone 'UTC')::date), 0)
         < (private.effective_quota(c.user_id)).tokens_per_day
  returning * into claimed;
  if not found then
    return null;
  end if;
  select jsonb_build_array(jsonb_build_object('role', 'user', 'content', m.content),
                           jsonb_build_object('role', 'assistant', 'content', r.content))
    into first_turn
    from public.messages m
    join public.messages r on r.reply_to = m.id and r.status = 'done'
   where m.conversation_id = claimed.id and m.role = 'user'
   order by m.seq
   limit 1;
  return jsonb_build_object('user_id', claimed.user_id, 'model', claimed.model, 'messages', first_turn);
end
$$;

-- The model's title: its tokens count for the conversation's owner whatever happens, and it is
-- set only if the conversation still has no title (one its owner set meanwhile is kept). Cut to
-- one line of at most 80 characters, without the quotes models like to add. Whether it was set.
create function public.set_conversation_title(conversation_id uuid, title text, tokens integer) returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  owner_id uuid;
  cleaned text;
begin
  if set_conversation_title.tokens < 0 then
    raise exception 'set_conversation_title: tokens must not be negative, not %', set_conversation_title.tokens
      using errcode = '22023';
  end if;
  select c.user_id into owner_id from public.conversations c where c.id = set_conversation_title.conversation_id;
  if not found then
    return false;
  end if;
  if coalesce(set_conversation_title.tokens, 0) > 0 then
    perform private.add_reply_tokens(owner_id, set_conversation_title.tokens);
  end if;
  cleaned := pg_catalog.btrim(pg_catalog.regexp_replace(coalesce(set_conversation_title.title, ''), '\s+', ' ', 'g'),
                              ' "''`');
  cleaned := pg_catalog.rtrim(left(cleaned, 80));
  if cleaned = '' then
    return false;
  end if;
  update public.conversations c set title = cleaned
   where c.id = set_conversation_title.conversation_id and c.title is null;
  return found;
end
$$;

revoke execute on function
  public.claim_conversation_title(uuid),
  public.set_conversation_title(uuid, text, integer)
  from public, anon, authenticated;
grant execute on function
  public.claim_conversation_title(uuid),
  public.set_conversation_title(uuid, text, integer)
  to service_role;

-- --- search -----------------------------------------------------------------------------------

-- An expression index, not a stored tsvector column: adding a stored generated column would
-- rewrite the whole messages table under an exclusive lock at `db push`, and every Realtime
-- change of a message would carry the vector. The 'simple' configuration: chats are in any
-- language, and a language's stemming and stop words would mangle the others (the price: no
-- stemming, "run" does not find "running").
create index messages_content_search_idx on public.messages using gin (to_tsvector('simple', content));

-- The caller's own messages (theirs and the replies to them) that match `query` (web search
-- syntax: words, "a phrase", -not, or), best match first, then newest: the best of the 500 newest
-- matches (ranking means parsing each match again; a word in every message would cost seconds,
-- and old matches of a word that common are not what anyone looks for). The snippet is plain text
-- with the matched words between « and »; nothing in it is markup. A blank query finds nothing.
--
-- Security definer, filtering by auth.uid() itself: under row-level security the planner may use
-- an index only for leakproof operators before the policy has filtered the rows, and @@ is not
-- leakproof, so as the caller every search would read all of the caller's rows (row-level
-- security or not, the same rows: the caller's, and nobody's without a signed-in user).
create function public.search_messages(query text, max_results integer default 20)
returns table (
  message_id uuid,
  conversation_id uuid,
  conversation_title text,
  role text,
  snippet text,
  created_at timestamptz,
  rank real
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  who uuid := auth.uid();
  wanted tsquery;
begin
  if max_results is null or max_results not between 1 and 100 then
    raise exception 'search_messages: max_results must be between 1 and 100, not %', max_results
      using errcode = '22023';
  end if;
  if who is null or query is null or pg_catalog.btrim(query) = '' then
    return;
  end if;
  wanted := pg_catalog.websearch_to_tsquery('simple', query);
  if pg_catalog.numnode(wanted) = 0 then
    return;
  end if;
  return query
    select found.id, found.conversation_id, c.title, found.role,
           pg_catalog.ts_headline('simple', found.content, wanted,
                                  'StartSel=«, StopSel=», MaxWords=30, MinWords=10, MaxFragments=2, FragmentDelimiter=" … "'),
           found.created_at, found.rank
      from (select recent.*, pg_catalog.ts_rank(to_tsvector('simple', recent.content), wanted) as rank
              from (select m.id, m.conversation_id, m.role, m.content, m.created_at
                      from public.messages m
                     where m.user_id = who
                       and to_tsvector('simple', m.content) @@ wanted
                     order by m.created_at desc
                     limit 500) recent
             order by rank desc, recent.created_at desc
             limit max_results) found
      join public.conversations c on c.id = found.conversation_id and c.user_id = who
     order by found.rank desc, found.created_at desc;
end
$$;

revoke execute on function public.search_messages(text, integer) from public, anon, authenticated;
grant execute on function public.search_messages(text, integer) to authenticated;
