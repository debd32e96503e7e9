-- Hand a claimed message back at once instead of waiting for its lease: what an instance does
-- for the generations it cannot finish before it shuts down. Releasing = ending the lease now,
-- so the next sweep on any instance claims it again. The lease value identifies the claim, so an
-- instance releases only its own, never a message someone else has since claimed or answered.
-- The interrupted attempt is not counted against the message.
create function public.release_message(message_id uuid, lease_expires_at timestamptz) returns boolean
language plpgsql
set search_path = ''
as $$
begin
  update public.messages m
     set lease_expires_at = now() - interval '1 millisecond',
         attempts = greatest(m.attempts - 1, 0)
   where m.id = release_message.message_id
     and m.status = 'processing'
     and m.lease_expires_at = release_message.lease_expires_at;
  return found;
end
$$;

revoke execute on function public.release_message(uuid, timestamptz) from public, anon, authenticated;
grant execute on function public.release_message(uuid, timestamptz) to service_role;
