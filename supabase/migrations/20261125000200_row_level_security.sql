-- Row-level security: the database, not our service, decides who sees and writes what.
-- Table privileges are narrowed first (Supabase grants anon and authenticated everything in
-- public by default), so a column a user may not set is refused before any policy runs.

alter table public.conversations enable row level security;
alter table public.messages enable row level security;

revoke all on public.conversations from anon, authenticated;
revoke all on public.messages from anon, authenticated;
grant all on public.conversations to service_role;
grant all on public.messages to service_role;

-- Conversations: a user owns theirs outright, but cannot give one away.
grant select, delete on public.conversations to authenticated;
grant insert (id, user_id, title, system_prompt, model) on public.conversations to authenticated;
grant update (title, system_prompt, model) on public.conversations to authenticated;

create policy conversations_select_own on public.conversations
  for select to authenticated
  using (user_id = (select auth.uid()));
create policy conversations_insert_own on public.conversations
  for insert to authenticated
  with check (user_id = (select auth.uid()));
create policy conversations_update_own on public.conversations
  for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));
create policy conversations_delete_own on public.conversations
  for delete to authenticated
  using (user_id = (select auth.uid()));

-- Messages: a user reads their own and adds user messages to their own conversations.
-- Status, reply_to, error and the pipeline's columns are the service's alone: they are not
-- in the insert grant, and users get no update or delete at all.
grant select on public.messages to authenticated;
grant insert (id, conversation_id, user_id, role, content, client_message_id)
  on public.messages to authenticated;

create policy messages_select_own on public.messages
  for select to authenticated
  using (user_id = (select auth.uid()));
create policy messages_insert_own_user_message on public.messages
  for insert to authenticated
  with check (
    role = 'user'
    and user_id = (select auth.uid())
    and exists (
      select 1 from public.conversations c
      where c.id = conversation_id and c.user_id = (select auth.uid())
    )
  );
