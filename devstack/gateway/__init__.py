"""The local stand-in for Supabase's API gateway: PostgREST at /rest/v1 and Auth at /auth/v1."""
