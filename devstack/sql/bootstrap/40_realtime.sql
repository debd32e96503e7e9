-- What Supabase Realtime installs in a project's database before any migration runs, reduced to
-- what the local Realtime stand-in (devstack/realtime/) and this project's policies touch: the
-- `realtime` schema, `realtime.messages` (the table private-channel policies are written on),
-- `realtime.topic()` and `realtime.send()`. Ownership and grants follow Realtime's own tenant
-- migrations, so a project migration run as `postgres` (a member of supabase_realtime_admin, not
-- a superuser) can create policies on realtime.messages here exactly as on a hosted project.
-- Applied by devstack as the superuser after the image's extras (10-30) and before the migrations,
-- as Realtime migrates a project's database when it first connects. Idempotent.

do $$
begin
  if not exists (select from pg_roles where rolname = 'supabase_realtime_admin') then
    create role supabase_realtime_admin noinherit nologin noreplication;
  end if;
end
$$;
grant supabase_realtime_admin to postgres;

create schema if not exists realtime;
grant usage on schema realtime to postgres, anon, authenticated, service_role, supabase_realtime_admin;
grant create on schema realtime to supabase_realtime_admin;

-- Supabase partitions this table by day and deletes old partitions; the stand-in keeps one table
-- (nothing here replays broadcasts, so nothing reads old rows back).
create table if not exists realtime.messages (
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp without time zone not null default now(),
  inserted_at timestamp without time zone not null default now(),
  id uuid not null default gen_random_uuid(),
  constraint messages_pkey primary key (id, inserted_at)
);
alter table realtime.messages owner to supabase_realtime_admin;
alter table realtime.messages enable row level security;
grant select, insert, update on realtime.messages to postgres, anon, authenticated, service_role;
grant delete, truncate, references, trigger on realtime.messages to postgres;

create or replace function realtime.topic() returns text
language sql stable as $$
  select nullif(current_setting('realtime.topic', true), '')::text;
$$;
alter function realtime.topic() owner to supabase_realtime_admin;

-- Realtime's own definition: the row is the broadcast, delivered after the inserting transaction
-- commits; a failure only warns, so a trigger calling it never breaks the caller's write.
create or replace function realtime.send(payload jsonb, event text, topic text, private boolean default true)
returns void
language plpgsql as $$
declare
  generated_id uuid;
  final_payload jsonb;
begin
  begin
    generated_id := gen_random_uuid();
    if payload ? 'id' then
      final_payload := payload;
    else
      final_payload := jsonb_set(payload, '{id}', to_jsonb(generated_id));
    end if;
    execute format('set local realtime.topic to %L', topic);
    insert into realtime.messages (id, payload, event, topic, private, extension)
    values (generated_id, final_payload, event, topic, private, 'broadcast');
  exception
    when others then
      raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
  end;
end;
$$;
grant all on all functions in schema realtime to supabase_realtime_admin;

-- Realtime reads broadcasts from the database through this publication (Postgres Changes read
-- supabase_realtime, which the project's migrations fill).
do $$
begin
  if not exists (select from pg_publication where pubname = 'supabase_realtime_messages_publication') then
    create publication supabase_realtime_messages_publication for table realtime.messages with (publish = 'insert');
  end if;
end
$$;
