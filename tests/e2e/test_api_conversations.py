"""/api/conversations: create, get, delete and list, each as the caller through row-level security."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import psycopg

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.database import one_row
from tests.support.users import SignedUpUser, sign_up

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
# A well-formed `before` that names none of the caller's conversations (api/errors.py, api/openapi.py).
UNKNOWN_CURSOR = (404, "cursor_not_found")


def insert_conversation(db: psycopg.Connection, user_id: str, minute: int, title: str | None = None) -> str:
    """A conversation created `minute` minutes after EPOCH, so the order of a listing is known."""
    return str(one_row(
        db, "insert into public.conversations (user_id, title, created_at) values (%s, %s, %s) returning id",
        (user_id, title, EPOCH + timedelta(minutes=minute)),
    )[0])


def insert_exchange(db: psycopg.Connection, conversation_id: str, user_id: str) -> None:
    """A settled question and its answer, as the pipeline leaves them."""
    question = one_row(
        db, "insert into public.messages (conversation_id, user_id, role, content, status)"
        " values (%s, %s, 'user', 'question', 'done') returning id",
        (conversation_id, user_id),
    )[0]
    db.execute(
        "insert into public.messages (conversation_id, user_id, role, content, status, reply_to)"
        " values (%s, %s, 'assistant', 'answer', 'done', %s)",
        (conversation_id, user_id, question),
    )


def conversation_exists(db: psycopg.Connection, conversation_id: str) -> bool:
    return bool(one_row(db, "select exists (select 1 from public.conversations where id = %s)", (conversation_id,))[0])


def message_count(db: psycopg.Connection, conversation_id: str) -> int:
    return int(one_row(db, "select count(*) from public.messages where conversation_id = %s", (conversation_id,))[0])


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if code is not None:
        assert error["code"] == code


# ----------------------------------------------------------------------------- create


def test_create_echoes_the_fields_and_belongs_to_the_caller(
    service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    fields = {"title": "Trip", "system_prompt": "Be brief.", "model": "fake-model-2"}
    response = alice.api(service.url).post("/api/conversations", json=fields)
    assert response.status_code == 201, response.text
    body = response.json()
    assert {key: body[key] for key in fields} == fields
    assert body["user_id"] == alice.user_id
    uuid.UUID(body["id"])
    assert body["created_at"]
    stored = one_row(
        db, "select user_id, title, system_prompt, model from public.conversations where id = %s", (body["id"],)
    )
    assert (str(stored[0]), *stored[1:]) == (alice.user_id, "Trip", "Be brief.", "fake-model-2")


def test_create_with_an_empty_body_object(service: ServiceProcess, alice: SignedUpUser) -> None:
    response = alice.api(service.url).post("/api/conversations", json={})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user_id"] == alice.user_id
    assert body["title"] is None and body["system_prompt"] is None and body["model"] is None


def test_create_refuses_a_bad_body(service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection) -> None:
    """One bad body through the running service; every other (types, lengths, unknown and
    caller-set fields, malformed JSON, media types) is a row of unit/test_doors.py
    (test_creating_a_conversation_refuses_bad_bodies_naming_the_field)."""
    response = alice.api(service.url).post(
        "/api/conversations", content=b'{"title": "ok", "user_id": "00000000-0000-0000-0000-000000000000"}',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "bad_request")
    assert one_row(db, "select count(*) from public.conversations")[0] == 0


def test_create_names_the_offending_field(service: ServiceProcess, alice: SignedUpUser) -> None:
    response = alice.api(service.url).post("/api/conversations", json={"title": 5})
    assert_error(response, 400, "bad_request")
    assert "title" in response.json()["error"]["message"]
    unknown = alice.api(service.url).post("/api/conversations", json={"colour": "blue"})
    assert_error(unknown, 400, "bad_request")
    assert "colour" in unknown.json()["error"]["message"]


# ----------------------------------------------------------------------------- get


def test_get_own_conversation(service: ServiceProcess, alice: SignedUpUser) -> None:
    api = alice.api(service.url)
    created = api.post("/api/conversations", json={"title": "Mine"}).json()
    response = api.get(f"/api/conversations/{created['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == created


def test_get_someone_elses_conversation_is_404(
    service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    conversation_id = insert_conversation(db, alice.user_id, 0, "private")
    response = bob.api(service.url).get(f"/api/conversations/{conversation_id}")
    assert_error(response, 404, "not_found")
    assert "private" not in response.text


def test_get_unknown_conversation_is_404(service: ServiceProcess, alice: SignedUpUser) -> None:
    """A well-formed id the database does not know; ids that are not UUIDs (SQL, U+0000) are
    refused at the door (unit/test_doors.py: test_conversation_routes_refuse_what_names_nothing)."""
    assert_error(alice.api(service.url).get(f"/api/conversations/{uuid.uuid4()}"), 404, "not_found")


# ----------------------------------------------------------------------------- delete


def test_delete_own_conversation_removes_it_and_its_messages(
    service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection
) -> None:
    api = alice.api(service.url)
    conversation_id = insert_conversation(db, alice.user_id, 0)
    kept = insert_conversation(db, alice.user_id, 1)
    insert_exchange(db, conversation_id, alice.user_id)
    insert_exchange(db, kept, alice.user_id)
    assert message_count(db, conversation_id) == 2
    response = api.delete(f"/api/conversations/{conversation_id}")
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_error(api.get(f"/api/conversations/{conversation_id}"), 404, "not_found")
    assert not conversation_exists(db, conversation_id)
    assert message_count(db, conversation_id) == 0
    assert message_count(db, kept) == 2
    assert_error(api.delete(f"/api/conversations/{conversation_id}"), 404, "not_found")


def test_delete_someone_elses_conversation_is_404_and_keeps_it(
    service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    conversation_id = insert_conversation(db, alice.user_id, 0)
    insert_exchange(db, conversation_id, alice.user_id)
    assert_error(bob.api(service.url).delete(f"/api/conversations/{conversation_id}"), 404, "not_found")
    assert conversation_exists(db, conversation_id)
    assert message_count(db, conversation_id) == 2
    assert alice.api(service.url).get(f"/api/conversations/{conversation_id}").status_code == 200


def test_delete_unknown_conversation_is_404(service: ServiceProcess, alice: SignedUpUser) -> None:
    """Not a UUID: unit/test_doors.py (test_deleting_a_conversation_that_is_not_there_is_404)."""
    assert_error(alice.api(service.url).delete(f"/api/conversations/{uuid.uuid4()}"), 404, "not_found")


# ----------------------------------------------------------------------------- list


def test_list_shows_only_the_callers_newest_first(
    service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    alices = [insert_conversation(db, alice.user_id, minute, f"a{minute}") for minute in (0, 2, 4)]
    bobs = [insert_conversation(db, bob.user_id, minute, f"b{minute}") for minute in (1, 3, 5)]
    response = alice.api(service.url).get("/api/conversations")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["id"] for c in body["conversations"]] == alices[::-1]
    assert [c["title"] for c in body["conversations"]] == ["a4", "a2", "a0"]
    assert body["next_before"] is None
    assert [c["id"] for c in bob.api(service.url).get("/api/conversations").json()["conversations"]] == bobs[::-1]


def test_list_is_empty_for_a_new_user(service: ServiceProcess, alice: SignedUpUser) -> None:
    response = alice.api(service.url).get("/api/conversations")
    assert response.status_code == 200
    assert response.json() == {"conversations": [], "next_before": None}


def test_list_pages_with_limit_and_before(
    service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    ids = [insert_conversation(db, alice.user_id, minute) for minute in range(5)]
    insert_conversation(db, bob.user_id, 10)  # newer than all of alice's: must not show up or shift a page
    api = alice.api(service.url)
    pages: list[list[str]] = []
    cursors: list[str | None] = []
    params: dict[str, str | int] = {"limit": 2}
    for _ in range(3):
        response = api.get("/api/conversations", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([c["id"] for c in body["conversations"]])
        cursors.append(body["next_before"])
        if body["next_before"] is None:
            break
        params = {"limit": 2, "before": body["next_before"]}
    newest_first = ids[::-1]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]
    assert cursors == [newest_first[1], newest_first[3], None]


def test_list_exact_last_page_has_no_cursor(service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection) -> None:
    ids = [insert_conversation(db, alice.user_id, minute) for minute in range(4)]
    api = alice.api(service.url)
    first = api.get("/api/conversations", params={"limit": 2}).json()
    second = api.get("/api/conversations", params={"limit": 2, "before": first["next_before"]}).json()
    assert [c["id"] for c in second["conversations"]] == [ids[1], ids[0]]
    assert second["next_before"] is None
    everything = api.get("/api/conversations", params={"limit": 4}).json()
    assert len(everything["conversations"]) == 4 and everything["next_before"] is None


def test_list_orders_equal_timestamps_stably(service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection) -> None:
    """Conversations created in the same instant are still paged without loss or repetition."""
    ids = [insert_conversation(db, alice.user_id, 0) for _ in range(5)]
    api = alice.api(service.url)
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        body = api.get("/api/conversations", params=params).json()
        seen.extend(c["id"] for c in body["conversations"])
        if body["next_before"] is None:
            break
        params = {"limit": 2, "before": body["next_before"]}
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert seen == sorted(ids, reverse=True)


def test_list_refuses_a_bad_query_parameter(service: ServiceProcess, alice: SignedUpUser) -> None:
    """One through the running service; every other (limit 0, negative, not a number, a fraction,
    before not a UUID, after, page, unknown) is a row of unit/test_doors.py
    (test_conversation_routes_refuse_what_names_nothing)."""
    assert_error(alice.api(service.url).get("/api/conversations", params={"limit": "101"}), 400, "bad_request")


def test_list_accepts_the_largest_limit(service: ServiceProcess, alice: SignedUpUser) -> None:
    """100, as the database's list function takes it; the smallest, 1, in unit/test_doors.py
    (test_the_smallest_page_is_one)."""
    assert alice.api(service.url).get("/api/conversations", params={"limit": "100"}).status_code == 200


def test_list_refuses_a_cursor_that_is_not_one_of_the_callers_conversations(
    service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser, db: psycopg.Connection
) -> None:
    insert_conversation(db, alice.user_id, 0)
    bobs = insert_conversation(db, bob.user_id, 1)
    api = alice.api(service.url)
    for cursor in (bobs, str(uuid.uuid4())):
        response = api.get("/api/conversations", params={"before": cursor})
        assert_error(response, *UNKNOWN_CURSOR)
        assert "cursor" in response.json()["error"]["message"]
        assert "conversations" not in response.json()


def test_token_of_a_deleted_user_is_401_not_404(live_service: ServiceProcess, stack: LocalStack, db: psycopg.Connection) -> None:
    ghost = sign_up(stack)
    db.execute("delete from auth.users where id = %s", (ghost.user_id,))
    response = ghost.api(live_service.url).post("/api/conversations", json={"title": "from beyond"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
