-- The webhook's queued request carries ids only, never what the user wrote. pg_net grants every
-- role (PUBLIC) all privileges on net.http_request_queue and net._http_response, and `postgres`
-- cannot revoke grants the extension's owner made, so anything queued there is readable by any
-- signed-in user of the project. The service reads the message itself (claim_message_for_reply),
-- so the body needs nothing more than which message to answer. The signature in the headers is
-- readable too: it lets a reader resend that same delivery, which the service answers at most
-- once (the claim), and forge nothing else (HMAC over id, timestamp and body).
create or replace function private.queue_message_webhook() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  config private.webhook_config;
  payload jsonb;
begin
  select * into config from private.webhook_config where name = 'messages';
  if not found then
    -- Unconfigured: the message stays pending and the service's re-drive sweep answers it.
    raise warning 'message webhook is not configured; call private.configure_message_webhook()';
    return null;
  end if;
  -- Supabase's database-webhook payload shape, with a record reduced to the ids.
  payload := jsonb_build_object(
    'type', tg_op,
    'table', tg_table_name,
    'schema', tg_table_schema,
    'record', jsonb_build_object('id', new.id, 'conversation_id', new.conversation_id, 'role', new.role),
    'old_record', null
  );
  -- pg_net sends body::text; sign exactly those bytes.
  perform net.http_post(
    url := config.url,
    body := payload,
    headers := private.standard_webhook_headers('msg_' || new.id::text, payload::text, config.secret),
    timeout_milliseconds := config.timeout_milliseconds
  );
  return null;
end
$$;
revoke execute on function private.queue_message_webhook() from public, anon, authenticated;
