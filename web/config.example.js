// Copy to config.js (or let `make run` serve one) to point the page at a Supabase project:
// the project's API URL and its anon (publishable) key, both meant to be public.
export default {
  supabaseUrl: 'https://YOUR-PROJECT.supabase.co',
  supabaseAnonKey: 'YOUR-ANON-KEY',
}
