-- One round trip per process per interval for every reply the process streams. Before, each
-- streamed reply cost a checkpoint_reply call every second and the process polled
-- stop_requested_messages besides; with hundreds of replies on one process that is hundreds of
-- requests a second. reply_tick does all of it in one call: it stores each reply's text so far
-- under its claim, extends that claim's lease (a reply that keeps streaming keeps its message,
-- however long it runs), and answers which of the streamed messages their owners asked to stop.
-- checkpoint_reply and stop_requested_messages stay for services of the previous release.
--
-- Locks, as every pipeline writer takes them (20261201100100_answered_in_order.sql,
-- 20261201300000_streaming_replies.sql): the conversation's row (FOR NO KEY UPDATE), then the
-- user message, then its reply. One tick touches many conversations, so it takes all of their
-- locks first, in conversation id order: two ticks (two processes) then always wait for each
-- other in the same order, and a writer of one conversation (claim, finish_reply, stop_reply)
-- never holds a lock the tick needs while waiting for one it holds.

-- checkpoints: [{message_id, claim_token, content}]; streaming: the user messages the process
-- streams (to ask about stops). Answers {"superseded": [message ids whose checkpoint was refused
-- because the claim is stale or the reply no longer streams: nothing was written for them, their
-- worker stops generating], "stop_requested": [those of `streaming` whose owners asked to stop]}.
create function public.reply_tick(checkpoints jsonb, streaming uuid[], lease_seconds integer) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  item record;
  superseded jsonb := '[]'::jsonb;
  stop_requested jsonb;
begin
  if reply_tick.lease_seconds is null or reply_tick.lease_seconds < 1 then
    raise exception 'reply_tick: lease_seconds must be a positive number of seconds, not %', reply_tick.lease_seconds
      using errcode = '22023';
  end if;

  perform 1
     from public.conversations c
    where c.id in (select m.conversation_id
                     from jsonb_to_recordset(coalesce(reply_tick.checkpoints, '[]'::jsonb)) as i(message_id uuid)
                     join public.messages m on m.id = i.message_id and m.role = 'user')
    order by c.id
      for no key update;

  for item in
    select i.message_id, i.claim_token, i.content
      from jsonb_to_recordset(coalesce(reply_tick.checkpoints, '[]'::jsonb))
           as i(message_id uuid, claim_token uuid, content text)
     order by i.message_id
  loop
    update public.messages m
       set lease_expires_at = now() + make_interval(secs => reply_tick.lease_seconds)
     where m.id = item.message_id and m.role = 'user'
       and m.status = 'processing' and m.claim_token = item.claim_token
       and exists (select 1 from public.messages r where r.reply_to = m.id and r.status = 'streaming');
    if found then
      update public.messages r
         set content = item.content, updated_at = now()
       where r.reply_to = item.message_id and r.status = 'streaming';
    else
      superseded := superseded || to_jsonb(item.message_id::text);
    end if;
  end loop;

  select coalesce(jsonb_agg(m.id::text order by m.id), '[]'::jsonb) into stop_requested
    from public.messages m
   where m.id = any (coalesce(reply_tick.streaming, '{}'::uuid[])) and m.role = 'user'
     and m.stop_requested_at is not null;

  return jsonb_build_object('superseded', superseded, 'stop_requested', stop_requested);
end
$$;

revoke execute on function public.reply_tick(jsonb, uuid[], integer) from public, anon, authenticated;
grant execute on function public.reply_tick(jsonb, uuid[], integer) to service_role;
