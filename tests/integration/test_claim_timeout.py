"""A claim whose answer never reaches the service (the call timed out after the database had
committed it) is handed back at once by the token the service chose, so the message is not
stranded for a whole lease and the lost attempt is not counted. On a database of its own: a
released claim is stalled at once, and the session service's sweep would take it first."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from adapters.reply_store import PostgrestReplyStore
from chat.answering.pipeline import AnswerResult, ReplyPipeline
from chat.errors import StoreUnavailable
from chat.ports import ModelReply
from tests.support.database import Role, separate_migrated_database
from tests.support.deliveries import pending_message
from tests.support.engine_loop import EngineLoop
from tests.support.stack import scratch_dir, start_test_stack

if TYPE_CHECKING:
    from devstack.postgres import LocalPostgres
    from devstack.stack import LocalStack


@pytest.fixture(scope="module")
def database_url(postgres_server: LocalPostgres) -> Iterator[str]:
    with separate_migrated_database(postgres_server.superuser_url, "claim_timeout") as url:
        yield url


@pytest.fixture(scope="module")
def stack(database_url: str) -> Iterator[LocalStack]:
    with scratch_dir("ai-chat-claim-timeout-") as folder:
        running = start_test_stack(folder, database_url)
        yield running
        running.stop()



class AnswerLost(PostgrestReplyStore):
    """The real store, with the network losing the claim's answer after the database did the work
    (what a client-side timeout looks like from the service)."""

    async def claim_message_for_reply(self, *args: Any, **kwargs: Any) -> Any:
        await super().claim_message_for_reply(*args, **kwargs)
        raise StoreUnavailable("Supabase unreachable during claim_message_for_reply: TimeoutError")


class NeverCalled:
    async def complete(self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None) -> ModelReply:
        raise AssertionError("the model must not be called for a claim the service does not hold")


def released_state(db: psycopg.Connection, message_id: str) -> tuple[Any, ...]:
    row = db.execute(
        "select status, attempts, lease_expires_at < now(), claim_token from public.messages where id = %s", (message_id,)
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_claim_whose_answer_was_lost_is_released_without_burning_an_attempt(
    stack: LocalStack, db: psycopg.Connection, engine: EngineLoop
) -> None:
    assert stack.keys is not None
    store = AnswerLost(stack.api_url, stack.keys.api_key("service_role"), engine.session())
    pipeline = ReplyPipeline(
        store, NeverCalled(), default_model="fake-model", lease_seconds=180, max_attempts=5,
        context_token_budget=6000, context_max_messages=200,
    )
    message_id, _ = pending_message(db)

    assert engine.run(pipeline.answer(message_id)) is AnswerResult.DEFERRED
    assert released_state(db, message_id) == ("processing", 0, True, None)
    stalled = db.execute("select id::text from public.list_stalled_messages(3600, 10)").fetchall()
    assert stalled == [(message_id,)]  # the next sweep answers it now, not in 180 s


def test_only_the_token_the_caller_chose_releases_the_claim(
    database_url: str, db: psycopg.Connection
) -> None:
    """SQL level: the token the caller chose names the claim; any other token releases nothing."""
    service_role = Role(database_url, "service_role")
    message_id, _ = pending_message(db)
    token = str(uuid.uuid4())
    claimed = service_role.execute(
        "select public.claim_message_for_reply(%s, 6000, 60, 5, 200, %s)", (message_id, token)
    )[0][0]
    assert (claimed["claim_token"], claimed["attempt"]) == (token, 1)
    release = "select public.release_message(%s, %s)"
    assert service_role.execute(release, (message_id, str(uuid.uuid4()))) == [(False,)]
    assert service_role.execute(release, (message_id, token)) == [(True,)]
    assert released_state(db, message_id) == ("processing", 0, True, None)
