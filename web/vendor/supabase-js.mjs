// `import { createClient } from '@supabase/supabase-js'` in the browser without a bundler: the
// import map in index.html points the package name here, and this module re-exports what
// supabase-js's own single-file build (dist/umd/supabase.js, from npm, loaded just before the
// modules) put on `globalThis.supabase`.
const supabaseJs = globalThis.supabase
if (!supabaseJs?.createClient) {
  throw new Error('supabase-js did not load: /vendor/supabase.js is missing (run `npm ci` in web/)')
}
export const { createClient } = supabaseJs
