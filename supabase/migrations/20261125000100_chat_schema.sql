-- The chat schema: the public contract frontends are written against.

create table public.conversations (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  title text,
  system_prompt text,
  model text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table public.messages (
  id uuid primary key default gen_random_uuid(),
  conversation_id uuid not null references public.conversations (id) on delete cascade,
  user_id uuid not null default auth.uid(),
  role text not null default 'user' check (role in ('user', 'assistant')),
  content text not null,
  status text not null default 'pending'
    check (status in ('pending', 'processing', 'done', 'failed')),
  reply_to uuid unique references public.messages (id) on delete cascade,
  error text,
  created_at timestamptz not null default now(),
  -- What the pipeline needs beyond the contract.
  updated_at timestamptz not null default now(),
  client_message_id uuid,
  model text,
  prompt_tokens integer,
  completion_tokens integer,
  attempts integer not null default 0,
  lease_expires_at timestamptz,
  -- A user message is what a person typed: never empty, never a novel.
  constraint messages_user_content_length
    check (role <> 'user' or char_length(content) between 1 and 32000),
  constraint messages_assistant_answers_something
    check (role <> 'assistant' or reply_to is not null)
);

comment on column public.messages.reply_to is
  'For an assistant row: the user message it answers. Unique, so a message gets one reply.';
comment on column public.messages.lease_expires_at is
  'While status is processing: when the claiming worker''s lease ends and the sweep may retry.';
comment on column public.messages.client_message_id is
  'Idempotency key from a direct API caller: a retried request finds the first message.';

-- Context building reads a conversation newest first; history pages read it the same way.
create index messages_conversation_recent_idx
  on public.messages (conversation_id, created_at desc, id desc);
-- The re-drive sweep looks only at unanswered user messages.
create index messages_unanswered_idx
  on public.messages (created_at)
  where role = 'user' and status in ('pending', 'processing');
create unique index messages_client_message_id_idx
  on public.messages (user_id, client_message_id)
  where client_message_id is not null;
create index conversations_user_recent_idx
  on public.conversations (user_id, created_at desc, id desc);

create function public.touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;
revoke execute on function public.touch_updated_at() from public, anon, authenticated;

create trigger conversations_touch_updated_at
  before update on public.conversations
  for each row execute function public.touch_updated_at();
create trigger messages_touch_updated_at
  before update on public.messages
  for each row execute function public.touch_updated_at();

-- A subscribed frontend sees new replies and status changes through Realtime.
alter publication supabase_realtime add table public.conversations, public.messages;
