// Conversations straight from the table, under RLS: a user reads, creates, renames and deletes
// only their own (the policies in supabase/migrations/..._row_level_security.sql), and the
// column grants let them set only title, system prompt and model.
const COLUMNS = 'id, title, system_prompt, model, created_at, updated_at'

export async function listConversations(supabase) {
  return supabase.from('conversations').select(COLUMNS).order('created_at', { ascending: false })
}

export async function createConversation(supabase, { title, systemPrompt, model }) {
  return supabase.from('conversations')
    .insert({ title: title || null, system_prompt: systemPrompt || null, model: model || null })
    .select(COLUMNS).single()
}

export async function renameConversation(supabase, id, title) {
  return supabase.from('conversations').update({ title }).eq('id', id).select(COLUMNS).single()
}

export async function deleteConversation(supabase, id) {
  return supabase.from('conversations').delete().eq('id', id)
}

/** The models the service offers (empty: only its default). */
export async function offeredModels(supabase) {
  const { data, error } = await supabase.rpc('chat_models')
  return { models: error ? [] : data.map((row) => row.model ?? row), error }
}

/**
 * Every change to this user's conversations, from any tab or device. RLS decides what arrives;
 * a DELETE carries only the key (the table has RLS, so Realtime sends no old values).
 */
export function watchConversations(supabase, onChange) {
  return supabase.channel('conversations')
    .on('postgres_changes', { event: '*', schema: 'public', table: 'conversations' }, onChange)
    .subscribe()
}
