"""The chat page's tree of turns, search, usage and titles in a real headless Chromium, all through
supabase-js under RLS and Realtime: regenerate and edit show a new version and keep the old one
a click away, a message typed at the bottom continues the branch on screen, search finds only
one's own words, the usage line counts, and a title the service writes arrives by itself."""

from __future__ import annotations

import re

import psycopg

from devstack.service_process import ServiceProcess
from tests.support.browser import Browser
from tests.support.chat_page import Browsers, new_conversation, reply_to, send, sign_up, turns
from tests.support.stack import FakeModelControl

LAST_REPLY = """
  const replies = [...document.querySelectorAll('#messages .message.assistant')]
  const reply = replies[replies.length - 1]
  return reply && {text: reply.querySelector('.content').textContent, status: reply.dataset.status,
                   id: reply.dataset.replyId, versions: reply.querySelector('.reply-versions').hidden
                     ? '' : reply.querySelector('.reply-versions .position').textContent}"""


def last_reply(page: Browser, **expected: str) -> dict[str, str]:
    """Wait until the last reply on screen shows these fields (text, status, id, versions)."""
    def probe() -> dict[str, str] | None:
        shown = page.js(LAST_REPLY)
        return shown if shown and all(shown[key] == value for key, value in expected.items()) else None
    return dict(page.wait_for(probe, f"the last reply showing {expected}", deadline_seconds=20))


def message_versions(page: Browser, index: int = 0) -> str:
    return str(page.js("""
      const versions = document.querySelectorAll('#messages .message.user .versions')[arguments[0]]
      return versions && !versions.hidden ? versions.querySelector('.position').textContent : ''""", index))


def user_row(db: psycopg.Connection, content: str) -> tuple[str, str | None]:
    """(id, parent_id) of the newest user message with this text."""
    found = db.execute("select id::text, parent_id::text from public.messages where role = 'user' and content = %s"
                       " order by seq desc limit 1", (content,)).fetchone()
    assert found is not None
    return found[0], found[1]


def test_regenerate_shows_the_new_reply_as_2_of_2_and_1_of_2_brings_the_first_back(
    browser: Browsers, live_service: ServiceProcess, fake_model: FakeModelControl
) -> None:
    fake_model.set_pace(first_token_ms=200, tokens_per_second=10)
    page = browser("alice")
    sign_up(page)
    new_conversation(page, "Regenerated")
    text = " ".join(f"word{index}" for index in range(120))
    send(page, text)
    page.wait_for(page.js_probe("""return document.querySelector(
      '#messages .message.assistant[data-status=streaming] .content')?.textContent.length > 8"""), "the reply streaming")
    page.click("#messages .stop")
    first = last_reply(page, status="stopped", versions="")
    assert f"Echo: {text}".startswith(first["text"]) and first["text"] != f"Echo: {text}"

    fake_model.set_pace(first_token_ms=0, tokens_per_second=0)
    page.click("#messages .regenerate")
    second = last_reply(page, status="done", versions="2/2")
    assert second["text"] == f"Echo: {text}" and second["id"] != first["id"]
    assert turns(page) == [(text, second["text"])]  # one turn: the same question, its newest reply

    page.click("#messages .reply-versions .previous")
    assert last_reply(page, versions="1/2") == {**first, "versions": "1/2"}
    page.click("#messages .reply-versions .next")
    assert last_reply(page, versions="2/2")["id"] == second["id"]


def test_edit_answers_on_a_new_branch_and_the_old_branch_is_one_click_away(
    browser: Browsers, live_service: ServiceProcess, db: psycopg.Connection
) -> None:
    page = browser("alice")
    sign_up(page)
    new_conversation(page, "Edited")
    for text in ("one", "two"):
        send(page, text)
        reply_to(page, text)

    page.click("#messages .turn .edit")
    page.fill("#messages .editor textarea", "uno")
    page.click("#messages .editor .save")
    page.wait_for(lambda: turns(page) == [("uno", "Echo: uno")], "the edited branch answered")
    assert message_versions(page) == "2/2"

    page.click("#messages .versions .previous")
    page.wait_for(lambda: turns(page) == [("one", "Echo: one"), ("two", "Echo: two")], "the old branch again")
    assert message_versions(page) == "1/2"

    # Typed at the bottom of the old branch, a message goes on from it, not from the newest message.
    send(page, "three")
    reply_to(page, "three")
    assert turns(page) == [("one", "Echo: one"), ("two", "Echo: two"), ("three", "Echo: three")]
    assert user_row(db, "three")[1] == user_row(db, "two")[0]

    page.click("#messages .versions .next")
    page.wait_for(lambda: turns(page) == [("uno", "Echo: uno")], "the edited branch again")
    send(page, "dos")
    reply_to(page, "dos")
    assert turns(page) == [("uno", "Echo: uno"), ("dos", "Echo: dos")]
    assert user_row(db, "dos")[1] == user_row(db, "uno")[0]


def search(page: Browser, query: str) -> list[dict[str, object]]:
    page.fill("#search", query)
    return list(page.wait_for(page.js_probe("""
      const found = [...document.querySelectorAll('#search-results .search-result')]
      return found.length && found.map(b => ({title: b.querySelector('.result-title').textContent,
        snippet: b.querySelector('.snippet').textContent,
        marked: [...b.querySelectorAll('mark')].map(m => m.textContent)}))"""), f"results for {query!r}"))


def test_search_finds_your_own_words_only_and_opens_the_conversation(
    browser: Browsers, live_service: ServiceProcess
) -> None:
    alice = browser("alice")
    sign_up(alice)
    new_conversation(alice, "Crossings")
    send(alice, "<i>zebra</i> crossing ahead")
    reply_to(alice, "<i>zebra</i> crossing ahead")
    new_conversation(alice, "Elsewhere")
    send(alice, "nothing to find")
    reply_to(alice, "nothing to find")
    bob = browser("bob")
    sign_up(bob)
    new_conversation(bob, "Bob's stripes")
    send(bob, "a zebra of my own")
    reply_to(bob, "a zebra of my own")

    found = search(alice, "zebra")
    assert {result["title"] for result in found} == {"Crossings"}  # the message and its reply, nothing of Bob's
    assert all(result["marked"] == ["zebra"] and "crossing ahead" in str(result["snippet"]) for result in found), found
    assert alice.js("return document.querySelectorAll('#search-results .snippet :not(mark)').length") == 0
    assert {result["title"] for result in search(bob, "zebra")} == {"Bob's stripes"}

    alice.click("#search-results .search-result")
    alice.text_of("#conversation-list li.open button", "Crossings")
    alice.wait_for(lambda: turns(alice) == [("<i>zebra</i> crossing ahead", "Echo: <i>zebra</i> crossing ahead")],
                   "the found conversation open")


USAGE = re.compile(r"Today: ([\d,]+) / ([\d,]+) messages · ([\d,]+) / ([\d,]+) tokens")


def usage(page: Browser) -> tuple[int, ...]:
    shown = page.wait_for(lambda: USAGE.fullmatch(page.texts("#usage")[0]), "the usage line")
    return tuple(int(number.replace(",", "")) for number in shown.groups())


def test_the_usage_line_counts_todays_messages_and_tokens(
    browser: Browsers, live_service: ServiceProcess
) -> None:
    page = browser("alice")
    sign_up(page)
    messages, message_limit, tokens, token_limit = usage(page)
    assert (messages, tokens) == (0, 0) and message_limit > 0 and token_limit > 0
    new_conversation(page, "Counted")
    send(page, "count me in")
    reply_to(page, "count me in")
    page.wait_for(lambda: usage(page)[0] == 1 and usage(page)[2] > 0, "one message and its tokens counted")
    assert usage(page)[1::2] == (message_limit, token_limit)


def test_a_title_the_service_writes_arrives_in_the_list(
    browser: Browsers, live_service: ServiceProcess, db: psycopg.Connection
) -> None:
    """The session's service does not title conversations; set_conversation_title is called here as
    the service calls it (as the service role), and the page learns of it only through Realtime."""
    page = browser("alice")
    sign_up(page)
    conversation_id = new_conversation(page, "")
    page.text_of("#conversation-list li.open button", "Untitled")
    send(page, "plan a trip to Lisbon")
    reply_to(page, "plan a trip to Lisbon")
    assert db.execute("select public.set_conversation_title(%s, %s, 3)",
                      (conversation_id, '"A trip to Lisbon"')).fetchone() == (True,)
    page.text_of("#conversation-list li.open button", "A trip to Lisbon")
    page.wait_for(lambda: page.js("return document.querySelector('#title').value") == "A trip to Lisbon",
                  "the title in the conversation's header")


TREE = """
  const done = arguments[arguments.length - 1]
  const { createClient } = await import('@supabase/supabase-js')
  const config = (await import('/config.js')).default
  const { branchThrough } = await import('/src/branch.js')
  const client = createClient(config.supabaseUrl, config.supabaseAnonKey)
  const conversation = (await client.from('conversations').insert({ title: 'Tree' }).select().single()).data.id
  const send = async (content, parent) => (await client.from('messages')
    .insert({ conversation_id: conversation, content, ...(parent ? { parent_id: parent } : {}) }).select().single()).data.id
  const rpc = async (name, args) => (await client.rpc(name, args)).data
  const one = await send('one')
  const two = await send('two')
  await send('three')
  const uno = await rpc('edit_message', { message_id: one, content: 'uno' })
  const again = await rpc('regenerate_message', { message_id: two })
  await send('dos', uno)
  await rpc('regenerate_message', { message_id: again })
  await send('after the regeneration', again)
  await rpc('edit_message', { message_id: again, content: 'deux' })
  const { data: rows } = await client.from('messages').select('*').eq('conversation_id', conversation)
  const compared = []
  for (const leaf of [null, ...rows.map((row) => row.id)]) {
    const server = await rpc('conversation_branch', { conversation_id: conversation, leaf })
    const page = branchThrough(rows, leaf)
    compared.push({
      leaf,
      server: [server.leaf, server.messages.filter((m) => m.role === 'user').map((m) =>
        [m.id, m.versions.index, m.versions.ids, m.reply_versions.index, m.reply_versions.ids])],
      page: [page.leaf, page.turns.map((t) =>
        [t.message.id, t.versions.index, t.versions.ids, t.replyVersions.index, t.replyVersions.ids])],
    })
  }
  done(compared)"""


def test_the_pages_branch_is_the_one_conversation_branch_reads(browser: Browsers) -> None:
    """branch.js and the database's conversation_branch agree on every leaf of a tree with edits,
    regenerations, an edit of a regeneration and messages placed on older branches."""
    page = browser("alice")
    sign_up(page)
    compared = page.driver.execute_async_script(TREE)
    assert len(compared) == 10
    for each in compared:
        assert each["page"] == each["server"], each["leaf"]
