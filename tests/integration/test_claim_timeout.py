"""A claim whose answer never reaches the service (the call timed out after the database had
committed it) is handed back at once by the token the service chose, so the message is not
stranded for a whole lease and the lost attempt is not counted."""

from __future__ import annotations

from typing import Any

import psycopg

from chat.errors import StoreUnavailable
from chat.model import ModelReply
from chat.pipeline import Outcome, ReplyPipeline
from chat.settings import Settings
from chat.store import MessageStore, service_client, shared_http_client
from devstack.stack import LocalStack
from tests.support.deliveries import pending_message


class AnswerLost(MessageStore):
    """The real store, with the network losing the claim's answer after the database did the work
    (what a client-side timeout looks like from the service)."""

    def claim_message(self, *args: Any, **kwargs: Any) -> Any:
        super().claim_message(*args, **kwargs)
        raise StoreUnavailable("Supabase unreachable during claim_message_for_reply: ReadTimeout")


class NeverCalled:
    def complete(self, messages: list[dict[str, str]], model: str) -> ModelReply:
        raise AssertionError("the model must not be called for a claim the service does not hold")


def test_a_claim_whose_answer_was_lost_is_released_without_burning_an_attempt(
    stack: LocalStack, db: psycopg.Connection
) -> None:
    assert stack.keys is not None
    settings = Settings(
        supabase_url=stack.api_url, supabase_service_role_key=stack.keys.api_key("service_role"),
        supabase_anon_key=stack.keys.api_key("anon"), webhook_secret=stack.webhook_secret,
        openai_api_key="unused", openai_model="fake-model", lease_seconds=180, redrive_interval_seconds=0,
    )
    store = AnswerLost(service_client(settings, shared_http_client(settings)))
    message_id, _ = pending_message(db)

    assert ReplyPipeline(settings, store, NeverCalled()).answer(message_id) is Outcome.DEFERRED  # type: ignore[arg-type]

    status, attempts, lease_over, token = db.execute(
        "select status, attempts, lease_expires_at < now(), claim_token from public.messages where id = %s",
        (message_id,),
    ).fetchone()
    assert (status, attempts, lease_over, token) == ("processing", 0, True, None)
    stalled = db.execute("select id::text from public.list_stalled_messages(3600, 10)").fetchall()
    assert (message_id,) in stalled  # the next sweep answers it now, not in 180 s
