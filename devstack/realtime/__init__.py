"""The Supabase Realtime stand-in: the real clients' protocol at /realtime/v1 on the gateway."""
