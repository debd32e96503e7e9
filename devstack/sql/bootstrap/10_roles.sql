-- What Supabase's Postgres image sets up before a project's migrations run, where the migrations
-- could notice: its roles with their attributes, the privileges `postgres` has and lacks, and the
-- default privileges that hand every new object in `public` to the API roles. Taken from
-- supabase/postgres (migrations/db/init-scripts/00000000000000-initial-schema.sql and
-- migrations/db/migrations/10000000000000_demote-postgres.sql). Applied by devstack only, as the
-- server's superuser `supabase_admin`; never on a real project, which already has all of it.
-- Idempotent, so a restarted stack can apply it again.
--
-- The files in devstack/sql/bootstrap/ run in name order; add a file rather than growing one.

do $$
begin
  -- On Supabase, `postgres` is what `supabase db push` and the SQL editor log in as: it may
  -- create roles and databases and bypasses RLS, but it is not a superuser.
  if not exists (select from pg_roles where rolname = 'postgres') then
    create role postgres login;
  end if;
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin login noinherit createrole;
  end if;
end
$$;
alter role postgres nosuperuser inherit createrole createdb login replication bypassrls;
grant anon, authenticated, service_role to authenticator;
-- Supabase gives postgres the API roles (`set role authenticated` in the SQL editor works there).
grant anon, authenticated, service_role to postgres;

-- What the demotion leaves `postgres`: everything on the database and on `extensions`.
do $$ begin execute format('grant all on database %I to postgres', current_database()); end $$;
create schema if not exists extensions;
grant all on schema extensions to postgres;
grant usage on schema extensions to anon, authenticated, service_role;

-- `public` belongs to the database owner (supabase_admin here, as on Supabase); postgres may
-- create in it, and every table, function and sequence created there, by postgres or by
-- supabase_admin, is granted to the API roles. RLS and the migrations' explicit revokes are what
-- actually protect data, exactly as on a hosted project.
grant usage, create on schema public to postgres;
grant usage on schema public to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on sequences to postgres, anon, authenticated, service_role;
