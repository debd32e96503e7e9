"""The chat page as a person uses it, for the browser tests: sign up, open a conversation, send,
and read what the page shows (turns, replies), each waiting with a deadline."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from tests.support.browser import Browser

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


def turns(page: Browser) -> list[tuple[str, str]]:
    """Every turn on screen: (the user's message, the reply's text or '')."""
    return [tuple(turn) for turn in page.js("""
      return [...document.querySelectorAll('#messages .turn')].map(t => [
        t.querySelector('.message.user .content').textContent,
        t.querySelector('.message.assistant .content')?.textContent ?? ''])""")]
