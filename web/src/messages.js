// Writing to a conversation as a frontend may: insert a user message (the database webhook
// takes it from there), ask for a message to be edited or its reply regenerated (each a new user
// row the database places in the tree of turns, answered like any other) and ask the database to
// stop a reply. A refusal (a quota, a bad value)
// comes back from PostgREST as an error whose message is the database's own words: show it.

/**
 * A new message. `parentId` continues the branch on screen (its leaf); without it the database
 * puts the message after the conversation's newest one, whichever branch that is on.
 */
export async function sendMessage(supabase, conversationId, content, parentId = null) {
  const row = { conversation_id: conversationId, content }
  if (parentId) row.parent_id = parentId
  return supabase.from('messages').insert(row).select().single()
}

/** A new version of a user message, beside it; answers {data: the new message's id}. */
export async function editMessage(supabase, messageId, content) {
  return supabase.rpc('edit_message', { message_id: messageId, content })
}

/** Ask again for the reply to a message (or a reply's id); answers {data: the new user row's id}. */
export async function regenerateMessage(supabase, messageId) {
  return supabase.rpc('regenerate_message', { message_id: messageId })
}

/** Stop the reply to a user message; answers {status}. Only the message's owner may. */
export async function stopReply(supabase, messageId) {
  return supabase.rpc('stop_reply', { message_id: messageId })
}

/** What to tell the user about a refusal: the database's message, and its hint when it gave one. */
export function refusalText(error) {
  return [error.message, error.hint].filter(Boolean).join(' ')
}
