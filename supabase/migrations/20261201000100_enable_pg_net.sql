-- Enable pg_net on projects that applied 20261125000300_message_webhook before it enabled pg_net
-- itself: `supabase db push` applies only files it has not applied yet, so the statement added
-- there never runs on them, and without pg_net every user insert fails once the webhook is
-- configured (3F000 schema "net" does not exist). On any other database this does nothing.
create extension if not exists pg_net with schema extensions;
