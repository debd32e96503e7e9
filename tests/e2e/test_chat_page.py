"""The reference chat page (web/) in a real headless Chromium, with the real supabase-js, against
the local stack and the service: what a person does in it, and what they must never see."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.browser import ARTIFACTS, Browser
from tests.support.chat_page import PASSWORD, Browsers, new_conversation, reply_to, send, sign_up, turns
from tests.support.realtime import Subscribers
from tests.support.stack import UNCONFIGURED_WEBHOOK, FakeModelControl


def test_sign_up_create_a_conversation_send_and_see_the_reply(
    browser: Browsers, live_service: ServiceProcess, db: psycopg.Connection
) -> None:
    page = browser("alice")
    email = sign_up(page)
    conversation_id = new_conversation(page, "First chat")
    send(page, "hello there")
    assert reply_to(page, "hello there") == {"text": "Echo: hello there", "status": "done"}
    owner = db.execute("select u.email from public.conversations c join auth.users u on u.id = c.user_id"
                       " where c.id = %s", (conversation_id,)).fetchone()
    assert owner == (email,)


def test_conversations_are_created_renamed_and_deleted_in_the_table(
    browser: Browsers, live_service: ServiceProcess, db: psycopg.Connection
) -> None:
    page = browser("alice")
    sign_up(page)
    conversation_id = new_conversation(page, "Recipes", system_prompt="Answer as a chef.")
    assert db.execute("select title, system_prompt, model from public.conversations where id = %s",
                      (conversation_id,)).fetchone() == ("Recipes", "Answer as a chef.", None)
    page.fill("#title", "Soups")
    page.click("#rename button")
    page.text_of("#conversation-list button", "Soups")
    assert db.execute("select title from public.conversations where id = %s", (conversation_id,)).fetchone() == ("Soups",)
    page.click("#delete")
    page.driver.switch_to.alert.accept()
    page.wait_for(lambda: not page.texts("#conversation-list button"), "the conversation gone from the list")
    assert db.execute("select count(*) from public.conversations where id = %s", (conversation_id,)).fetchone() == (0,)
    assert page.element("#placeholder").is_displayed()


def test_sign_out_then_in_again_finds_the_conversation(
    browser: Browsers, live_service: ServiceProcess
) -> None:
    page = browser("alice")
    email = sign_up(page)
    new_conversation(page, "Kept")
    send(page, "remember me")
    reply_to(page, "remember me")
    page.click("#sign-out")
    page.element("#auth-form")
    assert not page.texts("#conversation-list button")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.text_of("#conversation-list button", "Kept")
    page.click("#conversation-list button")
    assert reply_to(page, "remember me")["text"] == "Echo: remember me"


def test_a_wrong_password_is_refused_with_auths_message(browser: Browsers, live_service: ServiceProcess) -> None:
    page = browser("alice")
    email = sign_up(page)
    page.click("#sign-out")
    page.fill("#email", email)
    page.fill("#password", "not the password")
    page.click("#sign-in")
    page.text_of("#auth-error", "Invalid login credentials")
    assert page.element("#auth-form").is_displayed()


def test_a_second_user_sees_none_of_it(
    browser: Browsers, live_service: ServiceProcess, db: psycopg.Connection
) -> None:
    alice = browser("alice")
    sign_up(alice)
    secret_conversation = new_conversation(alice, "Alice's secret")
    bob = browser("bob")
    sign_up(bob)
    # Bob listens to every change on messages and conversations his token may see, with the
    # page's own supabase-js (and its session), and tries Alice's private channel.
    bob.driver.execute_async_script("""
      const done = arguments[arguments.length - 1]
      const { createClient } = await import('@supabase/supabase-js')
      const config = (await import('/config.js')).default
      const client = createClient(config.supabaseUrl, config.supabaseAnonKey)
      await client.realtime.setAuth()
      window.__seen = []
      window.__private = 'joining'
      client.channel('spy').on('postgres_changes', { event: '*', schema: 'public', table: 'messages' },
        (change) => window.__seen.push(change.new)).on('postgres_changes',
        { event: '*', schema: 'public', table: 'conversations' }, (change) => window.__seen.push(change.new))
        .subscribe((status) => status === 'SUBSCRIBED' && done())
      client.channel('chat:' + arguments[0], { config: { private: true } })
        .on('broadcast', { event: '*' }, (message) => window.__seen.push(message))
        .subscribe((status, error) => { window.__private = status + ' ' + (error?.message ?? '') })
    """, secret_conversation)
    bob.wait_for(lambda: "CHANNEL_ERROR" in bob.js("return window.__private"), "Bob refused on Alice's channel")
    send(alice, "for Alice only")
    assert reply_to(alice, "for Alice only")["text"] == "Echo: for Alice only"
    # The marker: Bob's own message reaches Bob by the same path, after all of Alice's rows.
    new_conversation(bob, "Bob's")
    send(bob, "bob marker")
    reply_to(bob, "bob marker")
    seen = bob.js("return window.__seen")
    assert any(row.get("content") == "bob marker" for row in seen)
    assert all(row.get("conversation_id", row.get("id")) != secret_conversation for row in seen), seen
    assert not [row for row in seen if "Alice" in str(row)], seen
    assert bob.texts("#conversation-list button") == ["Bob's"]
    bob.open(f"?c={secret_conversation}")  # a link to Alice's conversation opens nothing for Bob
    bob.text_of("#conversation-list button", "Bob's")
    assert bob.element("#placeholder").is_displayed()
    assert not bob.js("return document.querySelector('#conversation').dataset.state")
    assert "for Alice only" not in bob.visible_text()


INJECTION = '<img src=x onerror="window.__pwned = 1"><b>bold</b><script>window.__pwned = 2</script>'


def test_html_in_a_message_and_its_reply_renders_as_text(
    browser: Browsers, live_service: ServiceProcess
) -> None:
    page = browser("alice")
    sign_up(page)
    new_conversation(page, "<i>title</i>")
    send(page, INJECTION)
    assert reply_to(page, INJECTION) == {"text": f"Echo: {INJECTION}", "status": "done"}
    assert turns(page) == [(INJECTION, f"Echo: {INJECTION}")]
    elements = "#messages img, #messages b, #messages script, #conversation-list i"
    assert page.js("return document.querySelectorAll(arguments[0]).length", elements) == 0
    assert page.js("return window.__pwned") is None
    page.text_of("#conversation-list button", "<i>title</i>")


# ----------------------------------------------------------------------------- Markdown

MARKDOWN = ("**bold** and *leaning*\n- first\n- second\n\n"
            "```python\ndef greet(name):\n    return f\"hi {name}\"\n```\n\n"
            "See [the docs](https://example.com/docs).")

HOSTILE_MARKDOWN = ("<script>window.__pwned = 'script'</script>\n\n"
                    "<img src=x onerror=\"window.__pwned = 'onerror'\">\n\n"
                    "[a markdown link](javascript:window.__pwned='markdown-link')\n\n"
                    "<a href=\"javascript:window.__pwned='raw-link'\">a raw link</a>")

REPLY_CONTENT = "#messages .message.assistant .content"


def test_a_reply_renders_as_markdown_with_its_code_highlighted(
    browser: Browsers, live_service: ServiceProcess
) -> None:
    page = browser("alice")
    sign_up(page)
    new_conversation(page, "Markdown")
    send(page, MARKDOWN)
    assert reply_to(page, MARKDOWN)["status"] == "done"
    shown = page.js("""
      const reply = document.querySelector(arguments[0])
      const code = reply.querySelector('pre > code')
      const link = reply.querySelector('a')
      return {
        strong: [...reply.querySelectorAll('strong')].map(e => e.textContent),
        em: [...reply.querySelectorAll('em')].map(e => e.textContent),
        items: [...reply.querySelectorAll('ul > li')].map(e => e.textContent),
        codeClass: code.className,
        code: code.textContent,
        keywords: [...code.querySelectorAll('.hljs-keyword')].map(e => e.textContent),
        link: [link.getAttribute('href'), link.target, link.rel, link.textContent],
      }""", REPLY_CONTENT)
    assert shown == {
        "strong": ["bold"],
        "em": ["leaning"],
        "items": ["first", "second"],
        "codeClass": "hljs language-python",
        "code": 'def greet(name):\n    return f"hi {name}"',
        "keywords": ["def", "return"],
        "link": ["https://example.com/docs", "_blank", "noopener noreferrer", "the docs"],
    }
    # What the user typed shows as typed: no markup in their own message.
    assert turns(page)[0][0] == MARKDOWN
    assert page.js("return document.querySelectorAll('#messages .message.user .content *').length") == 0


def test_html_and_script_links_in_a_markdown_reply_never_run(
    browser: Browsers, live_service: ServiceProcess
) -> None:
    page = browser("alice")
    sign_up(page)
    new_conversation(page, "Hostile")
    send(page, HOSTILE_MARKDOWN)
    assert reply_to(page, HOSTILE_MARKDOWN)["status"] == "done"
    page.js("document.querySelectorAll('#messages a').forEach(a => a.click())")  # what a curious user would do
    assert page.js("return window.__pwned") is None
    assert page.js("return document.querySelectorAll('#messages script, #messages img, #messages [onerror]').length") == 0
    hrefs = page.js("return [...document.querySelectorAll('#messages [href]')].map(e => e.getAttribute('href'))")
    assert not [href for href in hrefs if href.strip().lower().startswith("javascript:")], hrefs
    reply = page.texts(REPLY_CONTENT)[0]
    # Raw HTML shows as the characters the model wrote; the Markdown link keeps its words, not its target.
    for written in ("<script>window.__pwned = 'script'</script>", "<img src=x onerror=\"window.__pwned = 'onerror'\">",
                    "<a href=\"javascript:window.__pwned='raw-link'\">a raw link</a>", "a markdown link"):
        assert written in reply, reply
    assert "javascript:window.__pwned='markdown-link'" not in reply
    assert page.js("return window.__pwned") is None


@pytest.mark.parametrize(("markdown", "expected_html"), [
    pytest.param("[x](JaVaScRiPt:alert(1))", "<p><a>x</a></p>", id="a javascript link in any case"),
    pytest.param("[x](&#106;avascript:alert(1))", "<p><a>x</a></p>", id="a javascript link as an entity"),
    pytest.param("[x](data:text/html,<script>alert(1)</script>)", "<p><a>x</a></p>", id="a data link"),
    pytest.param("[x](vbscript:msgbox)", "<p><a>x</a></p>", id="a vbscript link"),
    pytest.param("![x](https://example.com/pixel.png)",
                 '<p><a href="https://example.com/pixel.png" target="_blank" rel="noopener noreferrer">x</a></p>',
                 id="an image is a link, never loaded"),
    pytest.param("<style>body{display:none}</style>", "<p>&lt;style&gt;body{display:none}&lt;/style&gt;</p>",
                 id="a style block is text"),
    pytest.param("<details open ontoggle=alert(1)>", "<p>&lt;details open ontoggle=alert(1)&gt;</p>",
                 id="an event attribute is text"),
    pytest.param("- [x] done", '<ul>\n<li><input checked="" disabled="" type="checkbox"> done</li>\n</ul>',
                 id="a task list keeps its disabled box"),
])
def test_markdown_keeps_only_safe_elements(browser: Browsers, markdown: str, expected_html: str) -> None:
    """markdown.js on its own, in the page: what reaches the DOM for text a model could write."""
    page = browser("alice")
    page.open()
    html = page.driver.execute_async_script("""
      const done = arguments[arguments.length - 1]
      const { renderMarkdown } = await import('/src/markdown.js')
      const holder = document.createElement('div')
      holder.append(renderMarkdown(arguments[0]))
      done(holder.innerHTML)""", markdown)
    assert html == expected_html
    assert page.js("return window.__pwned") is None


def test_a_streaming_markdown_reply_renders_as_it_arrives(
    browser: Browsers, live_service: ServiceProcess, fake_model: FakeModelControl
) -> None:
    fake_model.set_pace(first_token_ms=200, tokens_per_second=20)
    page = browser("alice")
    sign_up(page)
    new_conversation(page, "Streamed list")
    text = "Items:\n" + "\n".join(f"- item {index} is **here**" for index in range(40))
    send(page, text)
    items_while_streaming = page.wait_for(page.js_probe("""
      const reply = document.querySelector('#messages .message.assistant[data-status=streaming]')
      const items = reply ? reply.querySelectorAll('.content li strong').length : 0
      return items >= 2 ? items : null"""), "a list item rendered mid-stream")
    assert reply_to(page, text)["status"] == "done"
    assert items_while_streaming < 40
    assert page.texts(f"{REPLY_CONTENT} li") == [f"item {index} is here" for index in range(40)]


def test_a_refused_message_shows_the_databases_reason_and_keeps_the_text(
    browser: Browsers, live_service: ServiceProcess, db: psycopg.Connection
) -> None:
    page = browser("alice")
    sign_up(page)
    conversation_id = new_conversation(page, "Too long")
    novel = "x" * 32001
    send(page, novel)
    shown = page.wait_for(lambda: page.texts("#composer-error")[0], "the refusal")
    assert "messages_user_content_length" in shown
    assert page.js("return document.querySelector('#message').value.length") == len(novel)
    assert db.execute("select count(*) from public.messages where conversation_id = %s", (conversation_id,)).fetchone() == (0,)


def test_a_failed_reply_shows_its_error_and_can_be_sent_again(
    browser: Browsers, live_service: ServiceProcess, db: psycopg.Connection, fake_model: FakeModelControl
) -> None:
    fake_model.queue_faults({"kind": "insufficient_quota"}, match="doomed")
    page = browser("alice")
    sign_up(page)
    conversation_id = new_conversation(page, "Fails once")
    send(page, "doomed")
    shown = page.wait_for(lambda: page.texts("#messages .turn .error:not([hidden])"), "the failure")
    stored = db.execute("select status, error from public.messages where conversation_id = %s and role = 'user'",
                        (conversation_id,)).fetchone()
    assert stored is not None and stored[0] == "failed" and shown == [stored[1]] and "quota" in stored[1]
    page.click("#messages .resend")
    page.wait_for(lambda: len(page.texts("#messages .turn")) == 2 and page.js(
        "return document.querySelectorAll('#messages .message.assistant[data-status=done]').length === 1"),
        "the message sent again and answered")
    assert turns(page)[1] == ("doomed", "Echo: doomed")
    assert page.texts("#messages .turn .error:not([hidden])") == [stored[1]]


def test_reload_converges_to_the_same_conversation(browser: Browsers, live_service: ServiceProcess) -> None:
    page = browser("alice")
    sign_up(page)
    new_conversation(page, "Reloaded")
    for text in ("one", "two", "three"):
        send(page, text)
        reply_to(page, text)
    before = turns(page)
    assert before == [("one", "Echo: one"), ("two", "Echo: two"), ("three", "Echo: three")]
    page.driver.refresh()
    page.wait_for(lambda: turns(page) == before, "the same turns after the reload")
    page.text_of("#conversation-list li.open button", "Reloaded")


def test_two_tabs_on_one_conversation_stay_in_step(browser: Browsers, live_service: ServiceProcess) -> None:
    first = browser("alice")
    sign_up(first)
    new_conversation(first, "Shared")
    first_tab = first.driver.current_window_handle
    first.driver.switch_to.new_window("tab")
    second_tab = first.driver.current_window_handle
    first.open()  # the same profile: signed in already, the open conversation remembered per tab
    first.click("#conversation-list button")
    first.wait_for(lambda: first.js("return document.querySelector('#conversation').dataset.state === 'live'"), "joined")
    first.driver.switch_to.window(first_tab)
    send(first, "typed in the first tab")
    reply_to(first, "typed in the first tab")
    first.driver.switch_to.window(second_tab)
    assert reply_to(first, "typed in the first tab")["text"] == "Echo: typed in the first tab"
    first.fill("#title", "Renamed in the second tab")
    first.click("#rename button")
    first.driver.switch_to.window(first_tab)
    first.text_of("#conversation-list button", "Renamed in the second tab")


# ----------------------------------------------------------------------------- streaming

def broadcast(db: psycopg.Connection, conversation_id: str, event: str, payload: dict[str, object]) -> None:
    """What the service sends on the private channel, sent from SQL as the service role may."""
    db.execute("select realtime.send(%s::jsonb, %s, %s, true)", (json.dumps(payload), event, f"chat:{conversation_id}"))


def test_the_contracts_deltas_spell_the_reply_on_the_page(
    browser: Browsers, stack: LocalStack, db: psycopg.Connection, realtime_clients: Subscribers
) -> None:
    """The page's half of the streaming contract on its own: deltas in order, a repeat, a new
    attempt, as the private channel carries them (no service: the message stays unanswered)."""
    stack.configure_webhook(UNCONFIGURED_WEBHOOK)
    page = browser("alice")
    sign_up(page)
    conversation_id = new_conversation(page, "Deltas")
    send(page, "spell it")
    message_id = page.wait_for(lambda: page.js("return document.querySelector('#messages .turn')?.dataset.messageId"),
                               "the message on screen")
    reply = {"message_id": message_id, "reply_id": str(uuid.uuid4())}
    shown = "#messages .message.assistant .content"
    for attempt, offset, text, expected in [
        (1, 0, "Hel", "Hel"),
        (1, 3, "lo", "Hello"),
        (1, 0, "XYZ", "Hello"),  # before the end of what it has: ignored
        (1, 3, "lo, world", "Hello, world"),  # overlaps the end: the new part only
        (2, 0, "Second", "Second"),  # a new attempt starts again
        (1, 0, "Old words", "Second"),  # the old attempt's late delta: ignored
        (2, 6, " try", "Second try"),  # (and the next one proves it was)
    ]:
        broadcast(db, conversation_id, "reply_delta", {**reply, "attempt": attempt, "offset": offset, "delta": text})
        page.wait_for(lambda expected=expected: page.texts(shown) == [expected], f"the reply showing {expected!r}")
    assert page.js("return document.querySelector('#messages .message.assistant').dataset.status") == "streaming"
    assert page.element("#messages .stop").is_displayed()



SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "chat-page.png"


PARAGRAPH = ("Tell me how a reply gets here. The model writes it a few words at a time; the service "
             "batches those words and broadcasts them on this conversation's private channel, which only "
             "I may join, and checkpoints the text in the reply's row, so a reload picks up where it was.")


def long_message(words: int) -> str:
    return " ".join(f"word{index}" for index in range(words))


def streaming_reply(page: Browser, text: str, at_least: int = 1) -> str:
    """Wait until the reply to `text` is on screen mid-stream: status streaming, `at_least`
    characters past the fake model's "Echo: "."""
    script = """
      const turn = [...document.querySelectorAll('#messages .turn')]
        .find(t => t.querySelector('.message.user .content').textContent === arguments[0])
      const reply = turn && turn.querySelector('.message.assistant[data-status=streaming]')
      const shown = reply && reply.querySelector('.content').textContent
      return shown && shown.length >= 6 + arguments[1] ? shown : null"""
    return str(page.wait_for(lambda: page.js(script, text, at_least), f"the reply to {text[:20]!r}… streaming"))


def keep_screenshot(page: Browser) -> None:
    """The README's picture, taken mid-stream; UPDATE_README_SCREENSHOT=1 replaces docs/chat-page.png."""
    shot = page.screenshot(ARTIFACTS / "chat-page-mid-stream.png")
    if os.environ.get("UPDATE_README_SCREENSHOT"):
        shutil.copyfile(shot, SCREENSHOT)


def test_the_reply_streams_in_and_finishes(
    browser: Browsers, live_service: ServiceProcess, fake_model: FakeModelControl, db: psycopg.Connection
) -> None:
    fake_model.set_pace(first_token_ms=200, tokens_per_second=20)
    page = browser("alice")
    sign_up(page)
    conversation_id = new_conversation(page, "Streaming")
    send(page, "Hello! Can you stream?")
    reply_to(page, "Hello! Can you stream?")
    text = PARAGRAPH
    send(page, text)
    partial = streaming_reply(page, text, at_least=len(text) // 2)
    keep_screenshot(page)
    final = reply_to(page, text)
    assert final == {"text": f"Echo: {text}", "status": "done"}
    assert final["text"].startswith(partial) and len(partial) < len(final["text"])
    assert page.js("return performance.getEntriesByName('reply-first-delta').length") >= 1  # deltas, not only rows
    stored = db.execute("select content, status from public.messages where conversation_id = %s and role = 'assistant'"
                        " order by created_at", (conversation_id,)).fetchall()
    assert stored[-1] == (final["text"], "done")


def test_stop_halts_a_long_reply_and_keeps_what_came(
    browser: Browsers, live_service: ServiceProcess, fake_model: FakeModelControl, db: psycopg.Connection
) -> None:
    fake_model.set_pace(first_token_ms=200, tokens_per_second=10)
    page = browser("alice")
    sign_up(page)
    conversation_id = new_conversation(page, "Stopped")
    text = long_message(120)
    send(page, text)
    streaming_reply(page, text)
    page.click("#messages .stop")
    stopped = reply_to(page, text)
    assert stopped["status"] == "stopped"
    assert f"Echo: {text}".startswith(stopped["text"]) and len(stopped["text"]) < len(f"Echo: {text}")
    assert not page.js("return document.querySelectorAll('#messages .stop:not([hidden])').length")
    rows = dict(db.execute("select role, status from public.messages where conversation_id = %s", (conversation_id,)).fetchall())
    assert rows == {"user": "stopped", "assistant": "stopped"}
    content = db.execute("select content from public.messages where conversation_id = %s and role = 'assistant'",
                         (conversation_id,)).fetchone()
    assert content == (stopped["text"],)


def test_stop_before_any_reply_ends_the_message_stopped(
    browser: Browsers, stack: LocalStack, db: psycopg.Connection
) -> None:
    """Nothing is generating it (the service is away): Stop ends the message at once."""
    stack.configure_webhook(UNCONFIGURED_WEBHOOK)
    page = browser("alice")
    sign_up(page)
    conversation_id = new_conversation(page, "Stopped early")
    send(page, "never mind")
    page.click("#messages .stop")
    page.wait_for(page.js_probe("return document.querySelector('#messages .message.user').dataset.status === 'stopped'"),
                  "the message stopped")
    still_shown = "#messages .stop:not([hidden]), #messages .message.assistant:not([hidden])"
    assert not page.js("return document.querySelectorAll(arguments[0]).length", still_shown)
    assert db.execute("select role, status from public.messages where conversation_id = %s",
                      (conversation_id,)).fetchall() == [("user", "stopped")]


def test_reload_mid_stream_converges_to_the_final_text(
    browser: Browsers, live_service: ServiceProcess, fake_model: FakeModelControl, db: psycopg.Connection
) -> None:
    fake_model.set_pace(first_token_ms=200, tokens_per_second=15)
    page = browser("alice")
    sign_up(page)
    conversation_id = new_conversation(page, "Reloaded mid-stream")
    text = long_message(90)
    send(page, text)
    before = streaming_reply(page, text)
    page.driver.refresh()
    page.wait_for(lambda: page.js("return document.querySelector('#conversation').dataset.state === 'live'"), "rejoined")
    after = streaming_reply(page, text)  # picked up mid-stream: the row's checkpoint, then the deltas
    assert len(after) >= 1 and f"Echo: {text}".startswith(after)
    final = reply_to(page, text, deadline_seconds=30)
    assert final == {"text": f"Echo: {text}", "status": "done"}
    assert final["text"].startswith(before)
    assert turns(page) == [(text, final["text"])]
    assert db.execute("select content from public.messages where conversation_id = %s and role = 'assistant'",
                      (conversation_id,)).fetchone() == (final["text"],)


# ----------------------------------------------------------------------------- limits and models


def test_a_conversation_takes_a_model_from_the_offered_list(
    browser: Browsers, live_service: ServiceProcess, db: psycopg.Connection
) -> None:
    offered = [row[0] for row in db.execute("select model from private.chat_models order by model").fetchall()]
    assert offered, "the service publishes its models at start-up"
    page = browser("alice")
    sign_up(page)
    page.wait_for(lambda: page.js("return [...document.querySelectorAll('#new-model option')].map(o => o.value)")
                  == ["", *offered], "the offered models in the list")
    page.fill("#new-title", "With a model")
    page.js("const s = document.querySelector('#new-model'); s.value = arguments[0]", offered[0])
    page.click("#create")
    page.text_of("#conversation-model", f"model: {offered[0]}")
    assert db.execute("select model from public.conversations where title = 'With a model'").fetchone() == (offered[0],)
    send(page, "which model?")
    assert reply_to(page, "which model?")["status"] == "done"


def test_a_quota_refusal_shows_the_databases_message(
    browser: Browsers, live_service: ServiceProcess, db: psycopg.Connection
) -> None:
    page = browser("alice")
    email = sign_up(page)
    db.execute("insert into private.user_quotas (user_id, messages_per_window, window_seconds)"
               " select id, 1, 3600 from auth.users where email = %s", (email,))
    conversation_id = new_conversation(page, "Limited")
    send(page, "the one allowed")
    reply_to(page, "the one allowed")
    send(page, "one too many")
    shown = page.wait_for(lambda: page.texts("#composer-error")[0], "the refusal")
    assert shown.startswith("Too many messages: at most 1 per 3600 s. The limit resets at "), shown
    assert page.js("return document.querySelector('#message').value") == "one too many"
    assert db.execute("select count(*) from public.messages where conversation_id = %s and role = 'user'",
                      (conversation_id,)).fetchone() == (1,)
