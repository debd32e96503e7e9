-- Realtime reads this publication; an empty one exists on every Supabase project, owned by
-- postgres (it was created while postgres was still the superuser), so migrations can add tables.
do $$
begin
  if not exists (select from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$$;
alter publication supabase_realtime owner to postgres;
