// One user message and its reply, as elements. Text only (see dom.js); the reply's text is the
// live one from the stream while it streams, the row's once it has settled.
import { h } from './dom.js'

const ACTIVE = new Set(['pending', 'processing'])

/**
 * @param {object} message the user message row
 * @param {object | undefined} reply its assistant row, if any yet
 * @param {string} replyText what to show of the reply
 * @param {{stop: (message: object) => void, resend: (message: object) => void}} actions
 */
export function messageView(message, reply, replyText, actions) {
  const replying = ACTIVE.has(message.status) || reply?.status === 'streaming'
  const failure = message.status === 'failed' ? message.error : reply?.status === 'failed' ? reply.error : null
  return h('li', { class: 'turn', 'data-message-id': message.id },
    h('article', { class: 'message user', 'data-status': message.status },
      h('div', { class: 'content' }, message.content),
      h('div', { class: 'meta' }, statusLabel(message.status))),
    reply || replying
      ? h('article', { class: 'message assistant', 'data-reply-id': reply?.id, 'data-status': reply?.status ?? 'waiting' },
        h('div', { class: 'content' }, reply ? replyText : ''),
        h('div', { class: 'meta' }, reply ? statusLabel(reply.status) : 'thinking…'))
      : null,
    failure ? h('p', { class: 'error', role: 'alert' }, failure) : null,
    h('div', { class: 'actions' },
      replying ? h('button', { class: 'stop', onclick: () => actions.stop(message) }, 'Stop') : null,
      message.status === 'failed' ? h('button', { class: 'resend', onclick: () => actions.resend(message) }, 'Send again') : null))
}

function statusLabel(status) {
  return {
    pending: 'sent', processing: 'answering…', streaming: 'streaming…', done: '', failed: 'failed', stopped: 'stopped',
  }[status] ?? status
}
