-- The devstack stand-in for pg_net, installed as a real extension named pg_net so that the
-- migrations' `create extension if not exists pg_net with schema extensions;` is what creates it,
-- as on a hosted project. Like pg_net, its objects live in `net` whatever schema is named.
-- net.http_post only queues the request; devstack's delivery worker sends it after the
-- transaction commits (it is woken by the NOTIFY, which Postgres delivers only on commit) and
-- records the outcome in net._http_response, as pg_net's background worker does.

\echo Use "CREATE EXTENSION pg_net" to load this file. \quit

create schema net;

create table net.http_request_queue (
  id bigserial primary key,
  method text not null,
  url text not null,
  headers jsonb not null,
  body bytea,
  timeout_milliseconds integer not null
);

create unlogged table net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out boolean,
  error_msg text,
  created timestamptz not null default now()
);
create index on net._http_response (created);

-- pg_net's signature. Security invoker, as pg_net is from 0.12 on.
create function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint
language plpgsql volatile
set search_path = ''
as $$
declare
  request_id bigint;
  query_string text;
begin
  select string_agg(pg_catalog.format('%s=%s', key, value), '&')
    into query_string
    from pg_catalog.jsonb_each_text(coalesce(params, '{}'::jsonb));
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (
    'POST',
    case when query_string is null then url else url || '?' || query_string end,
    headers,
    pg_catalog.convert_to(body::text, 'UTF8'),
    timeout_milliseconds
  )
  returning id into request_id;
  perform pg_catalog.pg_notify('devstack_pg_net', request_id::text);
  return request_id;
end
$$;

-- pg_net's own grants (sql/pg_net--0.11.0--0.12.0.sql and later): everyone may use the schema
-- and read and write its tables; functions keep PostgreSQL's default EXECUTE for PUBLIC.
-- Nothing queued there is private from `authenticated`.
grant usage on schema net to public;
grant all on all sequences in schema net to public;
grant all on all tables in schema net to public;
-- What Supabase's issue_pg_net_access event trigger adds when the extension is created.
grant usage on schema net to postgres, anon, authenticated, service_role;
