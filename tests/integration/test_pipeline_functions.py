"""The pipeline's SQL functions as the service role calls them: atomic claims, leases, attempts,
release, and exactly-once completion, checked directly against the database."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.support.database import Role
from tests.support.deliveries import message_state, pending_message, replies_to


@pytest.fixture
def service_role(database_url: str) -> Role:
    return Role(database_url, "service_role")


def claim(service_role: Role, message_id: str, lease: int = 60, max_attempts: int = 5) -> dict | None:
    return service_role.execute(
        "select public.claim_message_for_reply(%s, 6000, %s, %s)", (message_id, lease, max_attempts)
    )[0][0]


def test_concurrent_claims_have_one_winner(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db)
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: claim(service_role, message_id), range(8)))
    assert sum(result is not None for result in claims) == 1
    assert message_state(db, message_id) == ("processing", None, 1)


def test_claim_returns_the_context_with_the_system_prompt(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db, "what is up?", system_prompt="Be kind.")
    result = claim(service_role, message_id)
    assert result is not None
    assert result["system_prompt"] == "Be kind."
    assert result["context"] == [{"role": "user", "content": "what is up?"}]


def test_live_lease_blocks_and_expired_lease_allows_a_new_claim(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db)
    assert claim(service_role, message_id) is not None
    assert claim(service_role, message_id) is None
    db.execute("update public.messages set lease_expires_at = now() - interval '1 second' where id = %s", (message_id,))
    assert claim(service_role, message_id)["attempt"] == 2


def test_message_out_of_attempts_is_failed_visibly(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db)
    db.execute("update public.messages set attempts = 3 where id = %s", (message_id,))
    assert claim(service_role, message_id, max_attempts=3) is None
    status, error, _ = message_state(db, message_id)
    assert status == "failed" and "after 3 attempts" in error


COMPLETE = "select public.complete_message_for_reply(%s, %s, %s)"


def test_second_completion_returns_the_first_reply(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db)
    token = claim(service_role, message_id)["claim_token"]
    first = service_role.execute(COMPLETE, (message_id, token, "first answer"))[0][0]
    second = service_role.execute(COMPLETE, (message_id, token, "second answer"))[0][0]
    assert first["content"] == second["content"] == "first answer"
    assert first["reply_id"] == second["reply_id"]
    assert replies_to(db, message_id) == [(first["reply_id"], "first answer")]
    assert message_state(db, message_id)[0] == "done"


def test_failure_never_overrides_a_reply(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db)
    token = claim(service_role, message_id)["claim_token"]
    service_role.execute(COMPLETE, (message_id, token, "answer"))
    refused = service_role.execute("select public.fail_message(%s, %s, 'too late')", (message_id, token))
    assert refused == [({"failed": False, "next_message_id": None},)]
    assert message_state(db, message_id) == ("done", None, 1)


def test_release_hands_back_only_the_holders_claim(db: psycopg.Connection, service_role: Role) -> None:
    message_id, _ = pending_message(db)
    token = claim(service_role, message_id)["claim_token"]
    release = "select public.release_message(%s, %s)"
    assert service_role.execute(release, (message_id, "00000000-0000-0000-0000-000000000000")) == [(False,)]
    assert service_role.execute(release, (message_id, token)) == [(True,)]
    assert service_role.execute(release, (message_id, token)) == [(False,)]  # a released claim is void
    assert message_state(db, message_id) == ("processing", None, 0)
    stalled = service_role.execute("select id::text from public.list_stalled_messages(3600, 10)")
    assert stalled == [(message_id,)]
