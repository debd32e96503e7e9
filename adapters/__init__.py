"""The libraries behind the domain's ports: supabase-py (as the service role, and as the caller
under RLS) and the openai SDK. Thin, built once by the app factory, never aware of Flask."""
