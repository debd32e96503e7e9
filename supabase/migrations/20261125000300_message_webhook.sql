-- The database webhook: every user message queues a signed POST to the service through
-- pg_net. Assistant rows never fire it (the WHEN clause), so a reply cannot loop.
--
-- The request follows Standard Webhooks (standardwebhooks.com): headers webhook-id,
-- webhook-timestamp and webhook-signature = "v1," + base64(HMAC-SHA256(secret,
-- id + "." + timestamp + "." + body)). The URL and the secret live in private.webhook_config,
-- which anon and authenticated cannot read; set them on a project with one call:
--
--   select private.configure_message_webhook('https://<your-app>/webhooks/messages', 'whsec_<base64>');

-- pg_net need not be enabled on a project (Supabase's guide has you enable it): enable it here,
-- before anything refers to `net`, so a database without it fails now, not at the first insert.
-- Its objects live in schema `net` whatever schema is named; Supabase keeps extensions in
-- `extensions`.
create extension if not exists pg_net with schema extensions;

create schema if not exists private;
revoke all on schema private from public, anon, authenticated;

create table private.webhook_config (
  name text primary key,
  url text not null,
  secret text not null check (secret like 'whsec_%'),
  timeout_milliseconds integer not null default 5000,
  updated_at timestamptz not null default now()
);
revoke all on private.webhook_config from public, anon, authenticated;

create function private.configure_message_webhook(
  url text,
  secret text,
  timeout_milliseconds integer default 5000
) returns void
language sql
set search_path = ''
as $$
  insert into private.webhook_config (name, url, secret, timeout_milliseconds)
  values ('messages', url, secret, timeout_milliseconds)
  on conflict (name) do update
    set url = excluded.url,
        secret = excluded.secret,
        timeout_milliseconds = excluded.timeout_milliseconds,
        updated_at = now();
$$;
revoke execute on function private.configure_message_webhook(text, text, integer)
  from public, anon, authenticated;

-- HMAC (RFC 2104) over the built-in sha256(), so signing needs no extension: pgcrypto is
-- not on every Postgres this runs on.
create function private.hmac_sha256(key bytea, message bytea) returns bytea
language plpgsql immutable strict
set search_path = ''
as $$
declare
  block_size constant integer := 64;
  padded_key bytea := key;
  inner_pad bytea;
  outer_pad bytea;
begin
  if length(padded_key) > block_size then
    padded_key := pg_catalog.sha256(padded_key);
  end if;
  padded_key := padded_key || pg_catalog.decode(repeat('00', block_size - length(padded_key)), 'hex');
  inner_pad := padded_key;
  outer_pad := padded_key;
  for i in 0 .. block_size - 1 loop
    inner_pad := pg_catalog.set_byte(inner_pad, i, pg_catalog.get_byte(padded_key, i) # 54);
    outer_pad := pg_catalog.set_byte(outer_pad, i, pg_catalog.get_byte(padded_key, i) # 92);
  end loop;
  return pg_catalog.sha256(outer_pad || pg_catalog.sha256(inner_pad || message));
end
$$;
revoke execute on function private.hmac_sha256(bytea, bytea) from public, anon, authenticated;

create function private.standard_webhook_headers(webhook_id text, body text, secret text)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  sent_at text := floor(extract(epoch from pg_catalog.clock_timestamp()))::bigint::text;
  key bytea := pg_catalog.decode(substr(secret, length('whsec_') + 1), 'base64');
  signature bytea := private.hmac_sha256(
    key, pg_catalog.convert_to(webhook_id || '.' || sent_at || '.' || body, 'UTF8'));
begin
  return jsonb_build_object(
    'Content-Type', 'application/json',
    'webhook-id', webhook_id,
    'webhook-timestamp', sent_at,
    'webhook-signature', 'v1,' || pg_catalog.encode(signature, 'base64')
  );
end
$$;
revoke execute on function private.standard_webhook_headers(text, text, text)
  from public, anon, authenticated;

-- Security definer: the trigger runs as the inserting user, who must not read the secret.
create function private.queue_message_webhook() returns trigger
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
  -- Supabase's database-webhook payload shape, so the service accepts either source.
  payload := jsonb_build_object(
    'type', tg_op,
    'table', tg_table_name,
    'schema', tg_table_schema,
    'record', to_jsonb(new),
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

create trigger messages_queue_webhook
  after insert on public.messages
  for each row
  when (new.role = 'user')
  execute function private.queue_message_webhook();
