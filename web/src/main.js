// The chat page: sign-in, the conversation list and one open conversation. Everything goes
// through supabase-js to the project's Auth, PostgREST and Realtime; the service is never
// called (the database webhook tells it about each message).
import { createClient } from '@supabase/supabase-js'
import config from '../config.js'
import { $, h, say, show } from './dom.js'
import { branchThrough, leafOfReplyVersion, leafOfVersion } from './branch.js'
import { ConversationFeed } from './conversation-feed.js'
import {
  createConversation, deleteConversation, listConversations, offeredModels, renameConversation, watchConversations,
} from './conversations.js'
import { TurnView } from './message-view.js'
import { editMessage, refusalText, regenerateMessage, sendMessage, stopReply } from './messages.js'
import { resultItem, searchMessages } from './search.js'
import { usageLine, usageToday } from './usage.js'

const supabase = createClient(config.supabaseUrl, config.supabaseAnonKey)
// anchor: the message whose branch is shown (null: the newest); leaf: that branch's last turn
const state = { user: null, conversations: [], openId: null, feed: null, watcher: null, anchor: null, leaf: null }
const SEARCH_DELAY_MS = 250
const firstText = new Set() // replies already seen with text, for the `reply-first-text` timing mark

// ------------------------------------------------------------------------------ signing in

$('#auth-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const signUp = event.submitter?.value === 'sign-up'
  const credentials = { email: $('#email').value.trim(), password: $('#password').value }
  say('#auth-error', '')
  const { data, error } = signUp
    ? await supabase.auth.signUp(credentials)
    : await supabase.auth.signInWithPassword(credentials)
  if (error) say('#auth-error', error.message)
  else if (!data.session) say('#auth-error', 'Check your email to confirm the address, then sign in.')
})

$('#sign-out').addEventListener('click', () => supabase.auth.signOut())

supabase.auth.onAuthStateChange((_event, session) => {
  const user = session?.user ?? null
  if (user?.id === state.user?.id) return
  // Auth callbacks must not await other supabase calls (supabase-js holds a lock): defer.
  setTimeout(() => (user ? signedIn(user) : signedOut()), 0)
})

async function signedIn(user) {
  state.user = user
  say('#who', user.email)
  show('#auth', false)
  show('#app', true)
  state.watcher = watchConversations(supabase, () => refreshConversations())
  loadModels()
  refreshUsage()
  await refreshConversations()
  const wanted = new URL(location.href).searchParams.get('c') ?? sessionStorage.getItem('open-conversation')
  if (wanted && state.conversations.some((c) => c.id === wanted)) await openConversation(wanted)
}

async function signedOut() {
  await closeConversation()
  if (state.watcher) await supabase.removeChannel(state.watcher)
  Object.assign(state, { user: null, conversations: [], openId: null, watcher: null })
  sessionStorage.removeItem('open-conversation')
  $('#conversation-list').replaceChildren()
  $('#search-results').replaceChildren()
  $('#search').value = ''
  say('#usage', '')
  show('#app', false)
  show('#auth', true)
}

// ------------------------------------------------------------------------------ conversations

async function loadModels() {
  const { models } = await offeredModels(supabase)
  $('#new-model').replaceChildren(
    h('option', { value: '' }, 'default model'),
    ...models.map((model) => h('option', { value: model }, model)))
}

async function refreshUsage() {
  const { data, error } = await usageToday(supabase)
  if (!error && state.user) say('#usage', usageLine(data))
}

async function refreshConversations() {
  const { data, error } = await listConversations(supabase)
  if (error) return say('#conversations-error', error.message)
  state.conversations = data
  $('#conversation-list').replaceChildren(...data.map((conversation) =>
    h('li', { class: conversation.id === state.openId ? 'open' : '' },
      h('button', { class: 'conversation', 'data-id': conversation.id, onclick: () => openConversation(conversation.id) },
        conversation.title || 'Untitled'))))
  const open = data.find((c) => c.id === state.openId)
  if (state.openId && !open) await closeConversation()
  else if (open && document.activeElement !== $('#title')) $('#title').value = open.title ?? ''
}

$('#new-conversation').addEventListener('submit', async (event) => {
  event.preventDefault()
  say('#conversations-error', '')
  const { data, error } = await createConversation(supabase, {
    title: $('#new-title').value.trim(), systemPrompt: $('#new-system-prompt').value.trim(), model: $('#new-model').value,
  })
  if (error) return say('#conversations-error', refusalText(error))
  event.target.reset()
  await refreshConversations()
  await openConversation(data.id)
})

$('#rename').addEventListener('submit', async (event) => {
  event.preventDefault()
  const { error } = await renameConversation(supabase, state.openId, $('#title').value.trim())
  say('#conversation-error', error ? refusalText(error) : '')
  if (!error) await refreshConversations()
})

$('#delete').addEventListener('click', async () => {
  if (!confirm('Delete this conversation and all its messages?')) return
  const { error } = await deleteConversation(supabase, state.openId)
  if (error) return say('#conversation-error', error.message)
  await closeConversation()
  await refreshConversations()
})

// ------------------------------------------------------------------------------ one conversation

/** Open a conversation on the branch through `anchor` (a message id; null: its newest branch). */
async function openConversation(id, anchor = null) {
  if (state.openId === id) {
    if (anchor) showBranch(anchor)
    return
  }
  await closeConversation()
  state.openId = id
  state.anchor = anchor
  sessionStorage.setItem('open-conversation', id)
  const conversation = state.conversations.find((c) => c.id === id)
  $('#title').value = conversation?.title ?? ''
  say('#conversation-model', conversation?.model ? `model: ${conversation.model}` : 'default model')
  say('#conversation-error', '')
  show('#conversation', true)
  show('#placeholder', false)
  await refreshConversations()
  const feed = new ConversationFeed(supabase, id, () => renderMessages(feed), refreshUsage)
  state.feed = feed
  $('#conversation').dataset.state = 'connecting'
  try {
    await feed.open()
    if (state.feed === feed) $('#conversation').dataset.state = 'live'
  } catch (error) {
    if (state.feed === feed) {
      $('#conversation').dataset.state = 'failed'
      say('#conversation-error', `Live updates are off: ${error.message}. Reload to try again.`)
    }
  }
}

async function closeConversation() {
  const feed = state.feed
  state.feed = null
  state.openId = null
  state.anchor = null
  state.leaf = null
  delete $('#conversation').dataset.state
  show('#conversation', false)
  show('#placeholder', true)
  $('#messages').replaceChildren()
  turnViews.clear()
  if (feed) await feed.close()
}

const actions = {
  async stop(message) {
    const { error } = await stopReply(supabase, message.id)
    say('#conversation-error', error ? refusalText(error) : '')
  },
  async resend(message) {
    await send(message.content)
  },
  async edit(message, content) {
    return wrote(await editMessage(supabase, message.id, content), '#conversation-error')
  },
  async regenerate(turn) {
    await wrote(await regenerateMessage(supabase, turn.id), '#conversation-error')
  },
  showVersion(id) {
    showBranch(leafOfVersion(state.feed.rows.values(), id))
  },
  showReplyVersion(id) {
    showBranch(leafOfReplyVersion(state.feed.rows.values(), id))
  },
}

function showBranch(anchor) {
  state.anchor = anchor
  if (state.feed) renderMessages(state.feed)
}

/**
 * After an edit or a regeneration (the database answers the new message's id): show its branch,
 * with the row read at once so the branch holds it before its change arrives.
 */
async function wrote({ data: id, error }, errorAt) {
  say(errorAt, error ? refusalText(error) : '')
  if (error) return false
  refreshUsage()
  await state.feed?.read([id])
  showBranch(id)
  return true
}

/** @type {Map<string, TurnView>} the turns of the branch on screen, by the id of the user row answered */
const turnViews = new Map()

function renderMessages(feed) {
  if (feed !== state.feed) return
  const list = $('#messages')
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40
  const branch = branchThrough(feed.rows.values(), state.anchor)
  state.leaf = branch.leaf
  const present = new Set(branch.turns.map(({ turn }) => turn.id))
  for (const [id, view] of turnViews) {
    if (!present.has(id)) {
      view.element.remove()
      turnViews.delete(id)
    }
  }
  branch.turns.forEach((shown, index) => {
    const { turn, reply } = shown
    let view = turnViews.get(turn.id)
    if (!view) turnViews.set(turn.id, (view = new TurnView(turn.id, actions)))
    const text = reply ? feed.replyText(reply) : ''
    if (reply && text && !firstText.has(reply.id)) {
      firstText.add(reply.id)
      performance.mark('reply-first-text', { detail: turn.id })
    }
    view.update(shown, text)
    // Moved only when out of place, so an element under the pointer stays where it is.
    if (list.children[index] !== view.element) list.insertBefore(view.element, list.children[index] ?? null)
  })
  if (feed.error) say('#conversation-error', feed.error)
  if (atBottom) list.scrollTop = list.scrollHeight
}

async function send(content) {
  say('#composer-error', '')
  performance.mark('message-submitted')
  const { data, error } = await sendMessage(supabase, state.openId, content, state.leaf)
  if (error) {
    // Refused by the database (a limit, a bad value): its message, and the text stays put.
    say('#composer-error', refusalText(error))
    return false
  }
  state.anchor = data.id // the branch on screen goes on with it
  state.feed?.merge([data])
  refreshUsage()
  return true
}

$('#composer').addEventListener('submit', async (event) => {
  event.preventDefault()
  const box = $('#message')
  if (!box.value.trim()) return
  if (await send(box.value)) box.value = ''
})

$('#message').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault()
    $('#composer').requestSubmit()
  }
})

// ------------------------------------------------------------------------------ search

let searchTimer = 0
let searchRound = 0

async function search() {
  clearTimeout(searchTimer)
  const query = $('#search').value.trim()
  const round = ++searchRound
  if (!query) return $('#search-results').replaceChildren()
  const { data, error } = await searchMessages(supabase, query)
  if (round !== searchRound) return // a newer query is on its way
  if (error) return say('#conversations-error', refusalText(error))
  $('#search-results').replaceChildren(...(data.length
    ? data.map((result) => resultItem(result, (found) => openConversation(found.conversation_id, found.message_id)))
    : [h('li', { class: 'no-results' }, 'No messages found')]))
}

$('#search').addEventListener('input', () => {
  clearTimeout(searchTimer)
  searchTimer = setTimeout(search, SEARCH_DELAY_MS)
})

$('#search-form').addEventListener('submit', (event) => {
  event.preventDefault()
  search()
})

// The page is usable from here on; the tests and the first-paint figure read this mark.
performance.mark('chat-page-ready')
document.body.dataset.ready = 'true'
