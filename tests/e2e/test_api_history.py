"""GET /api/chat/<id>/history: newest page first, chronological within a page, and its edges."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import psycopg

from devstack.service_process import ServiceProcess
from tests.support.database import one_row
from tests.support.users import SignedUpUser

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
# A well-formed `before` that names no message of this conversation (api/errors.py, api/openapi.py).
UNKNOWN_CURSOR = (404, "cursor_not_found")


def insert_conversation(db: psycopg.Connection, user_id: str) -> str:
    return str(one_row(
        db, "insert into public.conversations (user_id) values (%s) returning id", (user_id,)
    )[0])


def insert_messages(db: psycopg.Connection, conversation_id: str, user_id: str, count: int,
                    created_at: list[datetime] | None = None) -> list[str]:
    """`count` settled messages, user and assistant alternating (each answer replies to the question
    before it), the n-th (from 1) `content` "m<n>", created n seconds after EPOCH unless `created_at`
    says otherwise. Settled, so neither the webhook nor the re-drive sweep touches them."""
    ids: list[str] = []
    for n in range(1, count + 1):
        is_user = n % 2 == 1
        moment = created_at[n - 1] if created_at else EPOCH + timedelta(seconds=n)
        ids.append(str(one_row(
            db, "insert into public.messages (conversation_id, user_id, role, content, status, reply_to, created_at)"
            " values (%s, %s, %s, %s, 'done', %s, %s) returning id",
            (conversation_id, user_id, "user" if is_user else "assistant", f"m{n}", None if is_user else ids[-1],
             moment),
        )[0]))
    return ids


def read_all_pages(api: httpx.Client, conversation_id: str, limit: int) -> tuple[list[list[str]], list[str | None]]:
    pages: list[list[str]] = []
    cursors: list[str | None] = []
    params: dict[str, str | int] = {"limit": limit}
    while len(pages) < 50:
        response = api.get(f"/api/chat/{conversation_id}/history", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["conversation_id"] == conversation_id
        pages.append([m["content"] for m in body["messages"]])
        cursors.append(body["next_before"])
        if body["next_before"] is None:
            return pages, cursors
        params = {"limit": limit, "before": body["next_before"]}
    raise AssertionError(f"history never ended: {pages}")


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if code is not None:
        assert error["code"] == code


def test_seven_messages_in_pages_of_three(service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection) -> None:
    conversation_id = insert_conversation(db, alice.user_id)
    ids = insert_messages(db, conversation_id, alice.user_id, 7)
    pages, cursors = read_all_pages(alice.api(service.url), conversation_id, 3)
    assert pages == [["m5", "m6", "m7"], ["m2", "m3", "m4"], ["m1"]]
    # The cursor is the oldest message of the page just read.
    assert cursors == [ids[4], ids[1], None]


def test_history_messages_carry_the_documented_fields(
    service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    conversation_id = insert_conversation(db, alice.user_id)
    question, answer = insert_messages(db, conversation_id, alice.user_id, 2)
    messages = alice.api(service.url).get(f"/api/chat/{conversation_id}/history").json()["messages"]
    assert [(m["id"], m["role"], m["content"], m["status"], m["reply_to"], m["error"]) for m in messages] == [
        (question, "user", "m1", "done", None, None),
        (answer, "assistant", "m2", "done", question, None),
    ]
    assert all(m["created_at"] for m in messages)


def test_page_that_ends_exactly_has_no_cursor(service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection) -> None:
    conversation_id = insert_conversation(db, alice.user_id)
    ids = insert_messages(db, conversation_id, alice.user_id, 6)
    api = alice.api(service.url)
    assert read_all_pages(api, conversation_id, 3) == ([["m4", "m5", "m6"], ["m1", "m2", "m3"]], [ids[3], None])
    assert read_all_pages(api, conversation_id, 6) == ([["m1", "m2", "m3", "m4", "m5", "m6"]], [None])
    assert read_all_pages(api, conversation_id, 100) == ([["m1", "m2", "m3", "m4", "m5", "m6"]], [None])


def test_default_limit_is_fifty(service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection) -> None:
    conversation_id = insert_conversation(db, alice.user_id)
    insert_messages(db, conversation_id, alice.user_id, 51)
    body = alice.api(service.url).get(f"/api/chat/{conversation_id}/history").json()
    assert [m["content"] for m in body["messages"]] == [f"m{n}" for n in range(2, 52)]
    assert body["next_before"] is not None


def test_equal_timestamps_are_paged_in_insert_order_without_loss_or_repetition(
    service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    """The order is the conversation's seq, not created_at (equal here) nor the random id."""
    conversation_id = insert_conversation(db, alice.user_id)
    insert_messages(db, conversation_id, alice.user_id, 7, created_at=[EPOCH] * 7)
    api = alice.api(service.url)
    pages, _ = read_all_pages(api, conversation_id, 3)
    contents = [content for page in reversed(pages) for content in page]
    assert contents == [f"m{n}" for n in range(1, 8)]


def test_empty_conversation(service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection) -> None:
    conversation_id = insert_conversation(db, alice.user_id)
    response = alice.api(service.url).get(f"/api/chat/{conversation_id}/history")
    assert response.status_code == 200, response.text
    assert response.json() == {"conversation_id": conversation_id, "messages": [], "next_before": None}


def test_before_from_another_conversation_is_refused(
    service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    mine = insert_conversation(db, alice.user_id)
    insert_messages(db, mine, alice.user_id, 3)
    my_other = insert_conversation(db, alice.user_id)
    my_other_message = insert_messages(db, my_other, alice.user_id, 1)[0]
    bobs = insert_conversation(db, bob.user_id)
    bobs_message = insert_messages(db, bobs, bob.user_id, 1)[0]
    api = alice.api(service.url)
    for cursor in (my_other_message, bobs_message, str(uuid.uuid4())):
        response = api.get(f"/api/chat/{mine}/history", params={"before": cursor})
        assert_error(response, *UNKNOWN_CURSOR)
        assert "messages" not in response.json()


def test_someone_elses_conversation_is_404(
    service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    bobs = insert_conversation(db, bob.user_id)
    bobs_messages = insert_messages(db, bobs, bob.user_id, 2)
    api = alice.api(service.url)
    for params in ({}, {"before": bobs_messages[1]}, {"limit": 1}):
        response = api.get(f"/api/chat/{bobs}/history", params=params)
        assert_error(response, 404, "not_found")
        assert "m1" not in response.text


def test_unknown_conversation_is_404(service: ServiceProcess, alice: SignedUpUser) -> None:
    """Not a UUID: unit/test_doors.py (test_conversation_routes_refuse_what_names_nothing)."""
    assert_error(alice.api(service.url).get(f"/api/chat/{uuid.uuid4()}/history"), 404, "not_found")


def test_a_bad_query_parameter_is_400(service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection) -> None:
    """One through the running service; every other (limit 0, negative, not a number, empty,
    before not a UUID, an unknown parameter) is a row of unit/test_doors.py
    (test_conversation_routes_refuse_what_names_nothing)."""
    conversation_id = insert_conversation(db, alice.user_id)
    response = alice.api(service.url).get(f"/api/chat/{conversation_id}/history", params={"limit": "101"})
    assert_error(response, 400, "bad_request")


def test_the_largest_limit_is_accepted(service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection) -> None:
    """100, as the database's history function takes it; the smallest, 1, in unit/test_doors.py
    (test_the_smallest_page_is_one), and pages of 3 above."""
    conversation_id = insert_conversation(db, alice.user_id)
    insert_messages(db, conversation_id, alice.user_id, 3)
    response = alice.api(service.url).get(f"/api/chat/{conversation_id}/history", params={"limit": "100"})
    assert response.status_code == 200, response.text
    assert [m["content"] for m in response.json()["messages"]] == ["m1", "m2", "m3"]
