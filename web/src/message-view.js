// One turn of the branch on screen (a user message and its reply), as elements built once and
// then updated in place: a reply streams in many small changes, and a button rebuilt on each would
// lose the click a user is making (the Stop button above all). The reply's text is the live one
// from the stream while it streams, the row's once it settles, and shows as Markdown (markdown.js
// makes it safe). The user's message shows as typed, through textContent (see dom.js): a person's
// `*` or `#` is not markup. A message with other versions (edits) and a reply with other versions
// (regenerations) carry `< i/n >` controls; Edit opens an editor in place, Regenerate asks again.
import { h } from './dom.js'
import { renderMarkdown } from './markdown.js'
import { isSettled } from './reply-stream.js'

const ACTIVE = new Set(['pending', 'processing'])
const LABELS = { pending: 'sent', processing: 'answering…', streaming: 'streaming…', done: '', failed: 'failed', stopped: 'stopped' }

export class TurnView {
  /**
   * @param {string} turnId the user row answered in this turn
   * @param {{stop, resend, edit, regenerate, showVersion, showReplyVersion}} actions what the
   *   buttons do: stop(turn), resend(turn), edit(message, text) -> Promise<boolean>,
   *   regenerate(turn), showVersion(id), showReplyVersion(id)
   */
  constructor(turnId, actions) {
    this.message = null
    this.shown = null
    this.userContent = h('div', { class: 'content' })
    this.userMeta = h('div', { class: 'meta' })
    this.versions = new VersionSwitch('versions', 'Message version', (id) => actions.showVersion(id))
    this.user = h('article', { class: 'message user' }, this.userContent, this.userMeta, this.versions.element)
    this.editor = new Editor(async (text) => actions.edit(this.shown, text))
    this.replyContent = h('div', { class: 'content' })
    this.replyShown = ''
    this.replyWanted = ''
    this.replyFrame = 0
    this.replyMeta = h('div', { class: 'meta' })
    this.replyVersions = new VersionSwitch('reply-versions', 'Reply version', (id) => actions.showReplyVersion(id))
    this.reply = h('article', { class: 'message assistant', hidden: true },
      this.replyContent, this.replyMeta, this.replyVersions.element)
    this.error = h('p', { class: 'error', role: 'alert', hidden: true })
    this.stop = h('button', { class: 'stop', type: 'button', hidden: true, onclick: () => actions.stop(this.message) }, 'Stop')
    this.resend = h('button', { class: 'resend', type: 'button', hidden: true, onclick: () => actions.resend(this.message) },
      'Send again')
    this.edit = h('button', { class: 'edit', type: 'button', hidden: true, onclick: () => this.editor.open(this.shown.content) },
      'Edit')
    this.regenerate = h('button', { class: 'regenerate', type: 'button', hidden: true,
      onclick: () => actions.regenerate(this.message) }, 'Regenerate')
    // Edit sits under the message it edits, Regenerate and Stop under the reply they act on.
    this.element = h('li', { class: 'turn', 'data-message-id': turnId },
      this.user, h('div', { class: 'actions user-actions' }, this.edit), this.editor.element, this.reply, this.error,
      h('div', { class: 'actions' }, this.stop, this.resend, this.regenerate))
  }

  /**
   * @param {import('./branch.js').Turn} turn the turn as the branch has it (its rows and versions)
   * @param {string} replyText what to show of the reply
   */
  update({ turn: message, message: shown, reply, versions, replyVersions }, replyText) {
    this.message = message
    this.shown = shown
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
    this.edit.hidden = replying
    this.regenerate.hidden = replying || !reply || !isSettled(reply.status)
    this.versions.update(versions)
    this.replyVersions.update(replyVersions)
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

/** `< i/n >`: the versions of a message or of a reply, shown only when there is more than one. */
class VersionSwitch {
  constructor(className, label, choose) {
    this.ids = []
    this.index = 0
    this.previous = h('button', { class: 'previous', type: 'button', 'aria-label': `Previous ${label.toLowerCase()}`,
      onclick: () => choose(this.ids[this.index - 1]) }, '<')
    this.position = h('span', { class: 'position' })
    this.next = h('button', { class: 'next', type: 'button', 'aria-label': `Next ${label.toLowerCase()}`,
      onclick: () => choose(this.ids[this.index + 1]) }, '>')
    this.element = h('div', { class: className, role: 'group', 'aria-label': label, hidden: true },
      this.previous, this.position, this.next)
  }

  update({ index, ids }) {
    this.ids = ids
    this.index = index
    this.element.hidden = ids.length < 2
    setText(this.position, `${index + 1}/${ids.length}`)
    this.previous.disabled = index <= 0
    this.next.disabled = index >= ids.length - 1
  }
}

/** The inline editor of a user message: Save sends the new text, Cancel (or Escape) closes it. */
class Editor {
  constructor(save) {
    this.text = h('textarea', { rows: 2, 'aria-label': 'Edited message' })
    this.saving = h('button', { class: 'save', type: 'submit' }, 'Save')
    this.element = h('form', { class: 'editor', hidden: true,
      onsubmit: async (event) => {
        event.preventDefault()
        if (!this.text.value.trim()) return
        this.saving.disabled = true
        if (await save(this.text.value)) this.close()
        this.saving.disabled = false
      },
      onkeydown: (event) => event.key === 'Escape' && this.close(),
    }, this.text, h('div', { class: 'buttons' }, this.saving,
      h('button', { class: 'cancel', type: 'button', onclick: () => this.close() }, 'Cancel')))
  }

  open(text) {
    this.text.value = text
    this.element.hidden = false
    this.text.focus()
  }

  close() {
    this.element.hidden = true
  }
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text
}
