"""The reference chat page (web/) in a real headless Chromium, with the real supabase-js, against
the local stack and the service: what a person does in it, and what they must never see."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg

from devstack.service_process import ServiceProcess
from tests.support.browser import Browser
from tests.support.stack import FakeModelControl

PASSWORD = "correct horse battery"
Browsers = Callable[[str], Browser]


def sign_up(page: Browser) -> str:
    email = f"{uuid.uuid4()}@example.test"
    page.open()
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#sign-up")
    page.text_of("#who", email)
    return email


def new_conversation(page: Browser, title: str, system_prompt: str = "") -> str:
    page.fill("#new-title", title)
    if system_prompt:
        page.fill("#new-system-prompt", system_prompt)
    page.click("#create")
    page.wait_for(lambda: page.js("return document.querySelector('#conversation').dataset.state === 'live'"),
                  "the conversation's subscriptions joined")
    return str(page.js("return document.querySelector('#conversation-list li.open button').dataset.id"))


def send(page: Browser, text: str) -> None:
    page.fill("#message", text)
    page.click("#send")


def reply_to(page: Browser, text: str, deadline_seconds: float = 20.0) -> dict[str, str]:
    """Wait for the turn whose message is `text` to have a settled reply; its text and status."""
    script = """
      const turn = [...document.querySelectorAll('#messages .turn')]
        .find(t => t.querySelector('.message.user .content').textContent === arguments[0])
      const reply = turn && turn.querySelector('.message.assistant')
      return reply && ['done', 'failed', 'stopped'].includes(reply.dataset.status)
        ? {text: reply.querySelector('.content').textContent, status: reply.dataset.status} : null"""
    return dict(page.wait_for(lambda: page.js(script, text), f"a settled reply to {text!r}", deadline_seconds))


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
