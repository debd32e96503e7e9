"""The libraries behind the domain's ports: supabase-py for the doors (as the service role, and as
the caller under RLS), aiohttp for what the reply engine awaits (the pipeline's SQL functions, the
model, Realtime). Thin, built once by the app factory, never aware of Flask."""
