// Writing to a conversation as a frontend may: insert a user message (the database webhook
// takes it from there) and ask the database to stop a reply. A refusal (a quota, a bad value)
// comes back from PostgREST as an error whose message is the database's own words: show it.

export async function sendMessage(supabase, conversationId, content) {
  return supabase.from('messages').insert({ conversation_id: conversationId, content }).select().single()
}

/** Stop the reply to a user message; answers {status}. Only the message's owner may. */
export async function stopReply(supabase, messageId) {
  return supabase.rpc('stop_reply', { message_id: messageId })
}

/** What to tell the user about a refusal: the database's message, and its hint when it gave one. */
export function refusalText(error) {
  return [error.message, error.hint].filter(Boolean).join(' ')
}
