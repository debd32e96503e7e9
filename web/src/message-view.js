// One user message and its reply, as elements built once and then updated in place: a reply
// streams in many small changes, and a button rebuilt on each would lose the click a user is
// making (the Stop button above all). The reply's text is the live one from the stream while it
// streams, the row's once it settles, and shows as Markdown (markdown.js makes it safe). The user's
// message shows as typed, through textContent (see dom.js): a person's `*` or `#` is not markup.
import { h } from './dom.js'
import { renderMarkdown } from './markdown.js'
import { isSettled } from './reply-stream.js'

const ACTIVE = new Set(['pending', 'processing'])
const LABELS = { pending: 'sent', processing: 'answering…', streaming: 'streaming…', done: '', failed: 'failed', stopped: 'stopped' }

export class TurnView {
  /** @param {{stop: (message: object) => void, resend: (message: object) => void}} actions */
  constructor(messageId, actions) {
    this.message = null
    this.userContent = h('div', { class: 'content' })
    this.userMeta = h('div', { class: 'meta' })
    this.user = h('article', { class: 'message user' }, this.userContent, this.userMeta)
    this.replyContent = h('div', { class: 'content' })
    this.replyShown = ''
    this.replyWanted = ''
    this.replyFrame = 0
    this.replyMeta = h('div', { class: 'meta' })
    this.reply = h('article', { class: 'message assistant', hidden: true }, this.replyContent, this.replyMeta)
    this.error = h('p', { class: 'error', role: 'alert', hidden: true })
    this.stop = h('button', { class: 'stop', type: 'button', hidden: true, onclick: () => actions.stop(this.message) }, 'Stop')
    this.resend = h('button', { class: 'resend', type: 'button', hidden: true, onclick: () => actions.resend(this.message) },
      'Send again')
    this.element = h('li', { class: 'turn', 'data-message-id': messageId },
      this.user, this.reply, this.error, h('div', { class: 'actions' }, this.stop, this.resend))
  }

  /**
   * @param {object} message the user message row
   * @param {object | undefined} reply its assistant row, if any yet
   * @param {string} replyText what to show of the reply
   */
  update(message, reply, replyText) {
    this.message = message
    // A settled reply ends the turn even while its message's own change is still on the way: the
    // two rows arrive as separate changes, and Stop must not linger between them.
    const replying = !(reply && isSettled(reply.status)) && (ACTIVE.has(message.status) || reply?.status === 'streaming')
    const failure = message.status === 'failed' ? message.error : reply?.status === 'failed' ? reply.error : null
    setText(this.userContent, message.content)
    setText(this.userMeta, LABELS[message.status] ?? message.status)
    this.user.dataset.status = message.status
    this.reply.hidden = !(reply || replying)
    this.reply.dataset.status = reply?.status ?? 'waiting'
    if (reply) this.reply.dataset.replyId = reply.id
    this.#showReply(reply ? replyText : '', reply?.status !== 'streaming')
    setText(this.replyMeta, reply ? LABELS[reply.status] ?? reply.status : 'thinking…')
    this.error.hidden = !failure
    setText(this.error, failure ?? '')
    this.stop.hidden = !replying
    this.resend.hidden = message.status !== 'failed'
  }

  /**
   * A streaming reply is drawn at most once a frame, however many deltas the frame brought (and
   * not at all while the tab is hidden); any other text at once, so a settled reply shows its
   * last word as soon as its status says it is done.
   */
  #showReply(text, now) {
    this.replyWanted = text
    if (now) this.#drawReply()
    else if (!this.replyFrame) this.replyFrame = requestAnimationFrame(() => this.#drawReply())
  }

  #drawReply() {
    cancelAnimationFrame(this.replyFrame)
    this.replyFrame = 0
    if (this.replyWanted === this.replyShown) return
    this.replyShown = this.replyWanted
    this.replyContent.replaceChildren(renderMarkdown(this.replyShown))
  }
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text
}
