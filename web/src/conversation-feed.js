// One open conversation: its messages, kept current by two subscriptions, and the live text of
// each reply. The order matters and is the pattern to copy:
//   1. subscribe to postgres changes on `messages` (RLS decides what this user receives, so the
//      filter is only to narrow it to this conversation);
//   2. join the private broadcast channel `chat:<conversation_id>` (the database's policy on
//      realtime.messages lets only the conversation's owner join; the user's token must reach
//      Realtime first, hence setAuth);
//   3. only once both are SUBSCRIBED, read the history. Anything that changed in between arrives
//      through a subscription, and rows are merged by `updated_at`, so nothing is missed twice.
import { applyDelta, applyRow } from './reply-stream.js'

const MESSAGE_COLUMNS = '*'
const SUBSCRIBE_TIMEOUT_MS = 10000

export class ConversationFeed {
  /**
   * @param {import('@supabase/supabase-js').SupabaseClient} supabase
   * @param {string} conversationId
   * @param {() => void} onChange called after every change, to render
   * @param {() => void} onSettled called when a reply has ended (done, failed or stopped)
   */
  constructor(supabase, conversationId, onChange, onSettled = () => {}) {
    this.supabase = supabase
    this.conversationId = conversationId
    this.onChange = onChange
    this.onSettled = onSettled
    /** @type {Map<string, object>} rows by id */
    this.rows = new Map()
    /** @type {Map<string, import('./reply-stream.js').ReplyText>} reply text by the assistant row's id */
    this.replies = new Map()
    /** @type {Map<string, object[]>} deltas held while a reply's row is read again */
    this.rereading = new Map()
    this.channels = []
    this.error = null
    this.closed = false
  }

  async open() {
    await this.supabase.realtime.setAuth()
    const changes = this.supabase
      .channel(`messages:${this.conversationId}`)
      .on('postgres_changes',
        { event: '*', schema: 'public', table: 'messages', filter: `conversation_id=eq.${this.conversationId}` },
        (payload) => this.#onRowChange(payload))
    const stream = this.supabase
      .channel(`chat:${this.conversationId}`, { config: { private: true } })
      .on('broadcast', { event: 'reply_delta' }, ({ payload }) => this.#onDelta(payload))
      .on('broadcast', { event: 'reply_done' }, ({ payload }) => this.#onSettled(payload))
      .on('broadcast', { event: 'reply_failed' }, ({ payload }) => this.#onSettled(payload))
      .on('broadcast', { event: 'reply_stopped' }, ({ payload }) => this.#onSettled(payload))
    this.channels = [changes, stream]
    // After a dropped socket supabase-js rejoins by itself; what changed meanwhile is read again.
    const rejoined = () => this.closed || this.reload()
    await Promise.all(this.channels.map((channel) => subscribed(channel, rejoined)))
    await this.reload()
  }

  async close() {
    this.closed = true
    await Promise.all(this.channels.map((channel) => this.supabase.removeChannel(channel)))
  }

  /** Read the whole history again (on open, and after the socket reconnects). */
  async reload() {
    const { data, error } = await this.supabase
      .from('messages').select(MESSAGE_COLUMNS).eq('conversation_id', this.conversationId)
    if (error) {
      this.error = error.message
    } else {
      for (const row of data) this.#mergeRow(row)
    }
    this.#changed()
  }

  /**
   * Read these rows now (a message this page just wrote, before its change arrives): the branch
   * the page switches to must hold it at once.
   */
  async read(ids) {
    const { data } = await this.supabase.from('messages').select(MESSAGE_COLUMNS).in('id', ids)
    this.merge(data ?? [])
  }

  /** Rows this page already has from an insert's answer; merged like any change. */
  merge(rows) {
    for (const row of rows) this.#mergeRow(row)
    this.#changed()
  }

  /** Messages in conversation order: by `seq` where the schema has it, else by creation. */
  ordered() {
    return [...this.rows.values()].sort(byConversationOrder)
  }

  replyTo(messageId) {
    for (const row of this.rows.values()) {
      if (row.role === 'assistant' && row.reply_to === messageId) return row
    }
    return undefined
  }

  replyText(reply) {
    return this.replies.get(reply.id)?.text ?? reply.content ?? ''
  }

  #onRowChange(payload) {
    if (payload.eventType === 'DELETE') {
      this.rows.delete(payload.old.id)
      this.replies.delete(payload.old.id)
    } else {
      this.#mergeRow(payload.new)
    }
    this.#changed()
  }

  #mergeRow(row) {
    const known = this.rows.get(row.id)
    if (known && !known.placeholder && isNewer(known, row)) return
    this.rows.set(row.id, row)
    if (row.role === 'assistant') this.replies.set(row.id, applyRow(this.replies.get(row.id), row))
  }

  #onDelta(delta) {
    if (!this.replies.has(delta.reply_id) || !this.replies.get(delta.reply_id).text) {
      performance.mark('reply-first-delta', { detail: delta.message_id })
    }
    this.#ensureReplyRow(delta)
    const held = this.rereading.get(delta.reply_id)
    if (held) {
      held.push(delta)
      return
    }
    const { state, gap } = applyDelta(this.replies.get(delta.reply_id), delta)
    this.replies.set(delta.reply_id, state)
    if (gap) this.#reread(delta.reply_id, [delta])
    this.#changed()
  }

  /** A gap: the row holds what we missed (its checkpoint); read it, then replay what came meanwhile. */
  async #reread(replyId, held) {
    this.rereading.set(replyId, held)
    const { data, error } = await this.supabase.from('messages').select(MESSAGE_COLUMNS).eq('id', replyId).maybeSingle()
    this.rereading.delete(replyId)
    if (!error && data) this.#mergeRow(data)
    for (const delta of held) {
      const { state } = applyDelta(this.replies.get(replyId), delta)
      this.replies.set(replyId, state)
    }
    this.#changed()
  }

  /**
   * A settled event. The rows' final state follows as postgres changes; read both now (the user
   * message and its reply) so the end shows even if a change was missed. A reply stopped before
   * its first token has no row: `reply_id` is null then.
   */
  async #onSettled(event) {
    if (event.reply_id) this.#ensureReplyRow(event)
    const ids = [event.message_id, event.reply_id].filter(Boolean)
    const { data } = await this.supabase.from('messages').select(MESSAGE_COLUMNS).in('id', ids)
    for (const row of data ?? []) this.#mergeRow(row)
    this.#changed()
    if (!this.closed) this.onSettled()
  }

  /** A delta can come before the row's INSERT does: show the reply at once, the row fills it in. */
  #ensureReplyRow({ message_id: messageId, reply_id: replyId, attempt }) {
    if (this.rows.has(replyId)) return
    const message = this.rows.get(messageId)
    this.rows.set(replyId, {
      id: replyId, role: 'assistant', reply_to: messageId, status: 'streaming', content: '', attempt,
      conversation_id: this.conversationId, created_at: message?.created_at, seq: message?.seq, placeholder: true,
    })
  }

  #changed() {
    if (!this.closed) this.onChange()
  }
}

/** Resolves on the first SUBSCRIBED; every later one (a rejoin) calls `onRejoin`. */
function subscribed(channel, onRejoin) {
  let joined = false
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${channel.topic}: no answer from Realtime`)), SUBSCRIBE_TIMEOUT_MS)
    channel.subscribe((status, error) => {
      if (status === 'SUBSCRIBED') {
        clearTimeout(timer)
        if (joined) onRejoin()
        joined = true
        resolve()
      } else if (joined) {
        // Dropped after joining: supabase-js retries the join; nothing to do until it succeeds.
      } else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT' || status === 'CLOSED') {
        clearTimeout(timer)
        reject(new Error(`${channel.topic}: ${error?.message ?? status}`))
      }
    })
  })
}

function byConversationOrder(a, b) {
  const answered = (row) => (row.role === 'assistant' ? 1 : 0)
  if (a.seq != null && b.seq != null && a.seq !== b.seq) return a.seq - b.seq
  const at = (a.created_at ?? '').localeCompare(b.created_at ?? '')
  if (at !== 0) return at
  return answered(a) - answered(b) || a.id.localeCompare(b.id)
}

/** Timestamps arrive as text from PostgREST and from Realtime; compare them as instants. */
function isNewer(known, row) {
  return Boolean(known.updated_at && row.updated_at) && Date.parse(known.updated_at) > Date.parse(row.updated_at)
}
