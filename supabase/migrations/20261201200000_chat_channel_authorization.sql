-- Realtime authorization for the chat's private channel `chat:<conversation_id>`: only the
-- conversation's owner may join it (receive its broadcasts and use presence there). Nobody but
-- the service role (which bypasses RLS) may broadcast into it, so what a subscriber receives
-- there always comes from the backend. Supabase evaluates these policies on realtime.messages
-- with realtime.topic() set to the channel's topic when a client joins with `private: true`.

create policy chat_channel_owner_receives on realtime.messages
  for select to authenticated
  using (
    realtime.messages.extension in ('broadcast', 'presence')
    and exists (
      select 1
      from public.conversations c
      where c.user_id = (select auth.uid())
        and 'chat:' || c.id::text = (select realtime.topic())
    )
  );
