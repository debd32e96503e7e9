"""The domain both doors share: settings, the reply pipeline, and the adapters to Supabase and
the model. Nothing here knows about Flask."""
