// Searching the user's own messages: the database's search_messages (security definer, filtered
// by the caller's own id: another user's words are never found). Its snippet is plain text with
// each matched word between « and » (ts_headline's StartSel/StopSel there); the words are split
// out here and each match becomes a <mark> holding text, so nothing in a snippet is ever markup.
import { h } from './dom.js'

const START = '«'
const STOP = '»'

export async function searchMessages(supabase, query, maxResults = 20) {
  return supabase.rpc('search_messages', { query, max_results: maxResults })
}

/** A snippet as text nodes and <mark> elements, for h(): 'a «b» c' -> ['a ', <mark>b</mark>, ' c']. */
export function highlighted(snippet) {
  const parts = []
  for (const [index, piece] of (snippet ?? '').split(START).entries()) {
    if (index === 0) {
      if (piece) parts.push(piece)
      continue
    }
    const end = piece.indexOf(STOP)
    if (end < 0) {
      parts.push(START + piece) // a « the user wrote themselves, not a match
      continue
    }
    parts.push(h('mark', {}, piece.slice(0, end)))
    if (end + 1 < piece.length) parts.push(piece.slice(end + 1))
  }
  return parts
}

/** One found message: its conversation's title and the snippet, as a button that opens it. */
export function resultItem(result, open) {
  return h('li', {},
    h('button', { class: 'search-result', type: 'button', 'data-conversation-id': result.conversation_id,
      'data-message-id': result.message_id, onclick: () => open(result) },
    h('span', { class: 'result-title' }, result.conversation_title || 'Untitled'),
    h('span', { class: 'snippet' }, highlighted(result.snippet))))
}
