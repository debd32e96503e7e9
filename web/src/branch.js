// Which branch of a conversation to show, from the rows the feed already holds: the rules of the
// database's conversation_branch (supabase/migrations/20261207000000_branches_titles_search.sql)
// applied client-side. A conversation is a tree of turns: each user row's parent_id is the user
// row before it on its branch; an edit (edit_of) and a regeneration (regenerates) sit beside the
// row they redo, under the same parent. Pure: no DOM, no network.
//
// Built here rather than read with conversation_branch because the feed holds every row and every
// Realtime change already: the branch is derived again on each change without a round trip, and a
// reply streaming into it stays keyed by its own id. conversation_branch is the choice for a client
// that pages through a long conversation instead of reading it whole.

/**
 * @typedef {{index: number, ids: string[]}} Versions ids in order; ids[index] is the one shown
 * @typedef {{turn: object, message: object, reply: object | undefined, versions: Versions, replyVersions: Versions}} Turn
 *   turn: the user row answered on this branch (a regeneration, or the message itself);
 *   message: the user row shown (what a regeneration regenerates); reply: the turn's reply
 */

/**
 * The branch through `anchor` (a user or assistant row's id; null: the newest user message),
 * root first, on to the newest message below the anchor; and its leaf, the last turn's id (a
 * message that continues the branch is inserted with parent_id = leaf).
 * @param {Iterable<object>} rows
 * @param {string | null} anchor
 * @returns {{turns: Turn[], leaf: string | null}}
 */
export function branchThrough(rows, anchor) {
  const tree = indexRows(rows)
  const start = tree.users.get(tree.replyTo.get(anchor) ?? anchor)
  const tip = start ? newestBelow(tree, [start]) : newest(tree.users.values())
  const path = []
  for (let turn = tip; turn; turn = tree.users.get(turn.parent_id)) {
    path.unshift(turn)
    if (path.length > tree.users.size) break // a cycle cannot happen in the database; never loop here
  }
  return { turns: path.map((turn) => describe(tree, turn)), leaf: tip?.id ?? null }
}

/**
 * Where to go to show version `id` of a message: the newest message below it or below any of its
 * regenerations, so the version comes back with everything written after it.
 */
export function leafOfVersion(rows, id) {
  const tree = indexRows(rows)
  const starts = [...tree.users.values()].filter((row) => row.id === id || row.regenerates === id)
  return newestBelow(tree, starts)?.id ?? id
}

/** Where to go to show reply version `id` (a user row: the message or a regeneration of it). */
export function leafOfReplyVersion(rows, id) {
  const tree = indexRows(rows)
  const start = tree.users.get(id)
  return start ? newestBelow(tree, [start]).id : id
}

function describe(tree, turn) {
  const message = tree.users.get(turn.regenerates) ?? turn
  const root = message.edit_of ?? message.id
  const versions = sorted([...tree.users.values()]
    .filter((row) => (row.id === root || row.edit_of === root) && !row.regenerates))
  const replyVersions = sorted([...tree.users.values()]
    .filter((row) => row.id === message.id || row.regenerates === message.id))
  return {
    turn,
    message,
    reply: tree.replies.get(turn.id),
    versions: { index: versions.findIndex((row) => row.id === message.id), ids: versions.map((row) => row.id) },
    replyVersions: { index: replyVersions.findIndex((row) => row.id === turn.id), ids: replyVersions.map((row) => row.id) },
  }
}

function indexRows(rows) {
  const users = new Map()
  const children = new Map()
  const replies = new Map()
  const replyTo = new Map()
  for (const row of rows) {
    if (row.role === 'assistant') {
      replies.set(row.reply_to, row)
      replyTo.set(row.id, row.reply_to)
      continue
    }
    users.set(row.id, row)
    if (!children.has(row.parent_id)) children.set(row.parent_id, [])
    children.get(row.parent_id).push(row)
  }
  return { users, children, replies, replyTo }
}

function newestBelow(tree, starts) {
  const seen = new Set()
  const below = []
  const queue = [...starts]
  while (queue.length) {
    const row = queue.pop()
    if (seen.has(row.id)) continue
    seen.add(row.id)
    below.push(row)
    queue.push(...(tree.children.get(row.id) ?? []))
  }
  return newest(below)
}

function newest(rows) {
  let found
  for (const row of rows) if (!found || inOrder(found, row) < 0) found = row
  return found
}

function sorted(rows) {
  return rows.sort(inOrder)
}

/** Conversation order: `seq`, which the database draws so that a parent comes before its children. */
function inOrder(a, b) {
  if (a.seq != null && b.seq != null && a.seq !== b.seq) return a.seq - b.seq
  return (a.created_at ?? '').localeCompare(b.created_at ?? '') || a.id.localeCompare(b.id)
}
