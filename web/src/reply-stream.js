// The client half of the streaming contract: how a reply's text is kept while deltas arrive on
// the private channel and the row arrives (or is read again) from the database. Pure: no DOM,
// no network, so the rule reads in one place.
//
// The row is the truth that survives a reload: `content` is checkpointed while streaming and
// whole once settled; `attempt` grows when the reply is started again. A delta carries the
// character `offset` of its text, so a client that joined late or reloaded applies only the
// part it does not have, and sees a gap (offset past its text) instead of guessing.

/** @typedef {{text: string, attempt: number, settled: boolean}} ReplyText */

/** @returns {ReplyText} */
export function fromRow(row) {
  return { text: row.content ?? '', attempt: row.attempt ?? 0, settled: isSettled(row.status) }
}

export function isSettled(status) {
  return status === 'done' || status === 'failed' || status === 'stopped'
}

/**
 * The row read again (history, a postgres change, a re-read after a gap). A settled row is
 * final; a newer attempt replaces what we had; a checkpoint of the same attempt is a prefix
 * of the text, so it only helps when it is longer than what the deltas already gave.
 * @param {ReplyText | undefined} current
 * @returns {ReplyText}
 */
export function applyRow(current, row) {
  const incoming = fromRow(row)
  if (!current || incoming.settled || incoming.attempt > current.attempt) return incoming
  if (incoming.attempt < current.attempt || current.settled) return current
  return incoming.text.length > current.text.length ? incoming : current
}

/**
 * One reply_delta {attempt, offset, delta}. Returns the new state and whether there is a gap
 * (the caller then reads the row again and applies the deltas that arrived meanwhile).
 * @param {ReplyText | undefined} current
 * @returns {{state: ReplyText, gap: boolean}}
 */
export function applyDelta(current, { attempt, offset, delta }) {
  let state = current ?? { text: '', attempt, settled: false }
  if (state.settled) return { state, gap: false }
  if (attempt < state.attempt) return { state, gap: false }
  if (attempt > state.attempt) state = { text: '', attempt, settled: false }
  if (offset + delta.length <= state.text.length) return { state, gap: false }
  if (offset > state.text.length) return { state, gap: true }
  return { state: { ...state, text: state.text.slice(0, offset) + delta }, gap: false }
}
