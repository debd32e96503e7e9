-- What Supabase Realtime installs in a project's database before any migration runs, reduced to
-- what the local Realtime stand-in (devstack/realtime/) and this project's policies touch: the
-- `realtime` schema, `realtime.messages` (the table private-channel policies are written on),
-- `realtime.topic()` and `realtime.send()`. Tables, columns, partitioning, ownership and grants
-- follow Realtime's own tenant migrations (supabase/realtime lib/realtime/tenants/repo/migrations:
-- the 2026-04 squash, binary payloads, broadcast storage, the default partition, and "restrict
-- realtime schema", which revokes supabase_realtime_admin from postgres on projects whose supautils
-- lists realtime tables in policy_grants, as hosted ones do).
--
-- So here, as on a hosted project, `postgres` (what migrations run as) is NOT a member of
-- supabase_realtime_admin and owns nothing in `realtime`: it may create, alter and drop policies on
-- realtime.messages (and nothing else there) only because supautils' `policy_grants` lets it. The
-- stand-in for that setting is the pair of event triggers at the end of this file; anything else a
-- migration tries on realtime.messages (a column, an index, a trigger, disabling RLS) fails with
-- "must be owner of table messages", as it would on a hosted project.
--
-- Applied by devstack as the superuser after the image's extras (10-30) and before the migrations,
-- as Realtime migrates a project's database when it first connects. Idempotent.

do $$
begin
  if not exists (select from pg_roles where rolname = 'supabase_realtime_admin') then
    create role supabase_realtime_admin noinherit nologin noreplication;
  end if;
end
$$;
-- A stack made before this file followed hosted Realtime had postgres in this role: not any more.
do $$
begin
  if pg_has_role('postgres', 'supabase_realtime_admin', 'member') then
    revoke supabase_realtime_admin from postgres;
  end if;
end
$$;

create schema if not exists realtime;
grant usage on schema realtime to anon, authenticated, service_role;
grant usage on schema realtime to postgres with grant option;
grant all on schema realtime to supabase_realtime_admin with grant option;
revoke create on schema realtime from postgres;

-- A stand-in made before this file partitioned the table kept one plain table: move its policies
-- (the project's, from its migrations) onto the partitioned table and drop it.
do $$
declare
  policy record;
begin
  if exists (select from pg_class where oid = to_regclass('realtime.messages') and relkind = 'r') then
    alter table realtime.messages rename to messages_unpartitioned;
    alter table realtime.messages_unpartitioned rename constraint messages_pkey to messages_unpartitioned_pkey;
    create temporary table moved_policies on commit drop as
      select * from pg_policies where schemaname = 'realtime' and tablename = 'messages_unpartitioned';
  end if;
end
$$;

-- Realtime's definition: partitioned by day on inserted_at (Realtime's janitor creates each day's
-- partition ahead and drops old ones; rows outside them land in the default partition).
create table if not exists realtime.messages (
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp without time zone not null default now(),
  inserted_at timestamp without time zone not null default now(),
  id uuid not null default gen_random_uuid(),
  binary_payload bytea,
  broadcasted_at timestamp without time zone,
  constraint messages_pkey primary key (id, inserted_at)
) partition by range (inserted_at);
do $$
begin
  if not exists (select from pg_constraint where conname = 'messages_payload_exclusive'
                   and conrelid = 'realtime.messages'::regclass) then
    alter table realtime.messages
      add constraint messages_payload_exclusive check (payload is null or binary_payload is null);
  end if;
end
$$;
create index if not exists messages_inserted_at_topic_index on only realtime.messages
  using btree (inserted_at desc, topic) where extension = 'broadcast' and private is true;
create table if not exists realtime.messages_default partition of realtime.messages default;
-- Today's partition and the next three, as the janitor keeps them (skipped if the default
-- partition already holds rows of that day).
do $$
declare
  day date;
begin
  for day in select generate_series(current_date, current_date + 3, interval '1 day')::date loop
    begin
      execute format(
        'create table if not exists realtime.%I partition of realtime.messages for values from (%L) to (%L)',
        'messages_' || to_char(day, 'YYYY_MM_DD'), day, day + 1
      );
    exception when check_violation then
      null;
    end;
  end loop;
end
$$;
do $$
declare
  part regclass;
begin
  alter table realtime.messages owner to supabase_realtime_admin;
  for part in select inhrelid::regclass from pg_inherits where inhparent = 'realtime.messages'::regclass loop
    execute format('alter table %s owner to supabase_realtime_admin', part);
  end loop;
end
$$;
alter table realtime.messages enable row level security;
grant select, insert, update on realtime.messages to postgres, anon, authenticated, service_role;
grant delete, truncate, references, trigger on realtime.messages to postgres;

do $$
declare
  policy record;
begin
  if to_regclass('pg_temp.moved_policies') is not null then
    for policy in select * from pg_temp.moved_policies loop
      execute format(
        'create policy %I on realtime.messages as %s for %s to %s%s%s',
        policy.policyname, policy.permissive, policy.cmd, array_to_string(policy.roles, ', '),
        coalesce(' using (' || policy.qual || ')', ''), coalesce(' with check (' || policy.with_check || ')', '')
      );
    end loop;
    drop table realtime.messages_unpartitioned;
  end if;
end
$$;

create or replace function realtime.topic() returns text
language sql stable as $$
  select nullif(current_setting('realtime.topic', true), '')::text;
$$;
alter function realtime.topic() owner to supabase_realtime_admin;

-- Realtime's own definitions: the row is the broadcast, delivered after the inserting transaction
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
create or replace function realtime.send(payload bytea, event text, topic text, private boolean default true)
returns void
language plpgsql as $$
declare
  generated_id uuid;
begin
  begin
    generated_id := gen_random_uuid();
    execute format('set local realtime.topic to %L', topic);
    insert into realtime.messages (id, binary_payload, event, topic, private, extension)
    values (generated_id, payload, event, topic, private, 'broadcast');
  exception
    when others then
      raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
  end;
end;
$$;
alter function realtime.send(jsonb, text, text, boolean) owner to supabase_realtime_admin;
alter function realtime.send(bytea, text, text, boolean) owner to supabase_realtime_admin;
grant all on all functions in schema realtime to supabase_realtime_admin;

-- Realtime reads broadcasts from the database through this publication (Postgres Changes read
-- supabase_realtime, which the project's migrations fill). Hosted Realtime adds each day's
-- partition to it; the stand-in publishes through the partitioned table instead, so one
-- publication entry covers every partition, present and future.
do $$
begin
  if not exists (select from pg_publication where pubname = 'supabase_realtime_messages_publication') then
    create publication supabase_realtime_messages_publication
      for table realtime.messages with (publish = 'insert', publish_via_partition_root = true);
  else
    alter publication supabase_realtime_messages_publication set (publish = 'insert', publish_via_partition_root = true);
    if not exists (select from pg_publication_tables
                    where pubname = 'supabase_realtime_messages_publication'
                      and schemaname = 'realtime' and tablename = 'messages') then
      alter publication supabase_realtime_messages_publication add table realtime.messages;
    end if;
  end if;
end
$$;

-- supautils' `policy_grants` (hosted: '{"postgres": [..., "realtime.messages", ...]}'), stood in
-- by event triggers: while `postgres` runs CREATE, ALTER or DROP POLICY, it holds
-- supabase_realtime_admin for that one command, and the command must be on realtime.messages
-- itself (not a partition, not another realtime table). Nothing else gets that privilege.
create schema if not exists supautils_standin;
revoke all on schema supautils_standin from public;

create or replace function supautils_standin.policy_command_start() returns event_trigger
language plpgsql security definer set search_path = '' as $$
begin
  if current_setting('role') = 'postgres' or session_user = 'postgres' then
    grant supabase_realtime_admin to postgres;
  end if;
end
$$;

create or replace function supautils_standin.policy_command_end() returns event_trigger
language plpgsql security definer set search_path = '' as $$
declare
  command record;
begin
  if not pg_catalog.pg_has_role('postgres', 'supabase_realtime_admin', 'member') then
    return;
  end if;
  revoke supabase_realtime_admin from postgres;
  for command in select * from pg_catalog.pg_event_trigger_ddl_commands() loop
    if command.object_type = 'policy' and command.object_identity not like '% on realtime.messages'
       and command.object_identity like '% on realtime.%' then
      raise exception 'must be owner of the table of policy %', command.object_identity
        using errcode = '42501', hint = 'supautils.policy_grants lets postgres manage policies on realtime.messages only';
    end if;
  end loop;
end
$$;

create or replace function supautils_standin.policy_drop() returns event_trigger
language plpgsql security definer set search_path = '' as $$
declare
  dropped record;
begin
  for dropped in select * from pg_catalog.pg_event_trigger_dropped_objects() loop
    if dropped.object_type = 'policy' and dropped.object_identity not like '% on realtime.messages'
       and dropped.object_identity like '% on realtime.%'
       and (current_setting('role') = 'postgres' or session_user = 'postgres') then
      raise exception 'must be owner of the table of policy %', dropped.object_identity
        using errcode = '42501', hint = 'supautils.policy_grants lets postgres manage policies on realtime.messages only';
    end if;
  end loop;
end
$$;

drop event trigger if exists supautils_policy_grants_start;
drop event trigger if exists supautils_policy_grants_end;
drop event trigger if exists supautils_policy_grants_drop;
create event trigger supautils_policy_grants_start on ddl_command_start
  when tag in ('CREATE POLICY', 'ALTER POLICY', 'DROP POLICY')
  execute function supautils_standin.policy_command_start();
create event trigger supautils_policy_grants_drop on sql_drop
  when tag in ('DROP POLICY')
  execute function supautils_standin.policy_drop();
create event trigger supautils_policy_grants_end on ddl_command_end
  when tag in ('CREATE POLICY', 'ALTER POLICY', 'DROP POLICY')
  execute function supautils_standin.policy_command_end();
