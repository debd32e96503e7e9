-- fetch_message_context, rewritten so the (conversation_id, created_at desc, id desc) index drives
-- the read and the limit stops it: the first version joined the target message to the history,
-- and with a generic plan Postgres walked the whole conversation (100,000 rows, ~50 ms) before
-- keeping the newest. Looking the target up first makes the cost independent of the
-- conversation's length. Same signature and result.
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
      select m.id, m.role, m.content, m.created_at
        from public.messages m
       where m.conversation_id = target.conversation_id
         and (m.created_at, m.id) <= (target.created_at, target.id)
         and (m.role = 'assistant' or m.status <> 'failed' or m.id = target.id)
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
      jsonb_agg(jsonb_build_object('role', c.role, 'content', c.content) order by c.created_at, c.id),
      '[]'::jsonb)
      from costed c
     where c.running_tokens <= token_budget or c.id = target.id
  );
end
$$;
