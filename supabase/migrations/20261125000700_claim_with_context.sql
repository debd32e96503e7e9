-- Claim a message and read its context in ONE round trip: the two are always done together, and
-- on the pipeline's hot path every round trip is latency a user waits for. The history budget is
-- what is left of token_budget once the conversation's system prompt is counted (same estimate:
-- chars / 4 + 4). Returns null when the message is not claimable, as claim_message does.
create function public.claim_message_for_reply(
  message_id uuid,
  token_budget integer,
  lease_seconds integer default 120,
  max_attempts integer default 5,
  max_messages integer default 200
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  claim jsonb := public.claim_message(message_id, lease_seconds, max_attempts);
  prompt_tokens integer;
begin
  if claim is null then
    return null;
  end if;
  prompt_tokens := coalesce(char_length(claim ->> 'system_prompt') / 4 + 4, 0);
  return claim || jsonb_build_object(
    'context', public.fetch_message_context(message_id, greatest(token_budget - prompt_tokens, 1), max_messages)
  );
end
$$;

revoke execute on function public.claim_message_for_reply(uuid, integer, integer, integer, integer)
  from public, anon, authenticated;
grant execute on function public.claim_message_for_reply(uuid, integer, integer, integer, integer) to service_role;

-- Complete a message and return the reply as stored: if another worker answered first, its reply
-- (not ours) is what the message has, and what a waiting caller must be given.
create function public.complete_message_for_reply(
  message_id uuid,
  content text,
  model text default null,
  prompt_tokens integer default null,
  completion_tokens integer default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  reply_id uuid := public.complete_message(message_id, content, model, prompt_tokens, completion_tokens);
begin
  return (
    select jsonb_build_object('reply_id', r.id, 'content', r.content, 'conversation_id', r.conversation_id)
      from public.messages r
     where r.id = reply_id
  );
end
$$;

revoke execute on function public.complete_message_for_reply(uuid, text, text, integer, integer)
  from public, anon, authenticated;
grant execute on function public.complete_message_for_reply(uuid, text, text, integer, integer) to service_role;
