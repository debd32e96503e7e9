-- The models a user may pick for a conversation, readable by signed-in users: the service
-- publishes them into private.chat_models at start-up (configure_chat_models), a table no user
-- can read, and the conversation trigger refuses any other. A frontend lists them from here:
--   select * from public.chat_models();   (supabase-js: supabase.rpc('chat_models'))
-- Empty means only the service's default model (leave conversations.model null).
create function public.chat_models() returns table (model text)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return query select m.model from private.chat_models m order by m.model;
end
$$;
revoke execute on function public.chat_models() from public, anon;
grant execute on function public.chat_models() to authenticated, service_role;
