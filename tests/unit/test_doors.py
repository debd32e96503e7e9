"""Both doors in process: create_app on in-memory fakes and Flask's test client, one row per
answer a caller can get, with the exact status and error code they would see."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chat.errors import ModelRejected, RateLimited, StoreRejected, StoreUnavailable
from chat.service import Delivery
from tests.support.deliveries import message_event, signed_headers
from tests.support.doors import USER_ID, Doors, error, token
from tests.support.in_process import WEBHOOK_SECRET, FakeChat
from tests.support.polling import wait_until


@pytest.fixture
def doors() -> Iterator[Doors]:
    running = Doors()
    yield running
    running.chat.service.close()


# ----------------------------------------------------------------------------- the REST door


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, "invalid_token", id="no Authorization header"),
        pytest.param({"Authorization": "Basic abc"}, "invalid_token", id="not a bearer token"),
        pytest.param({"Authorization": "Bearer "}, "invalid_token", id="empty bearer token"),
        pytest.param({"Authorization": "Bearer"}, "invalid_token", id="the scheme alone"),
        pytest.param({"Authorization": token()}, "invalid_token", id="a token without its scheme"),
        pytest.param({"Authorization": "Bearer abc.def"}, "invalid_token", id="garbage"),
        pytest.param({"Authorization": f"Bearer {token(exp=int(time.time()) - 1)}"}, "invalid_token", id="expired"),
        pytest.param({"Authorization": f"Bearer {token(role='anon')}"}, "invalid_token", id="not a user's token"),
    ],
)
def test_the_rest_door_refuses_without_a_good_token(doors: Doors, headers: dict[str, str], code: str) -> None:
    response = doors.client.post(f"/api/chat/{doors.conversation_id}", json={"message": "hi"}, headers=headers)
    assert_invalid_token(response, code)
    assert doors.chat.database.messages == {}


def assert_invalid_token(response: Any, code: str = "invalid_token") -> None:
    assert error(response) == (401, code)
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", "/api/conversations", id="create a conversation"),
        pytest.param("GET", "/api/conversations", id="list conversations"),
        pytest.param("GET", "/api/conversations/{id}", id="get a conversation"),
        pytest.param("DELETE", "/api/conversations/{id}", id="delete a conversation"),
        pytest.param("GET", "/api/chat/{id}/history", id="history"),
        pytest.param("GET", "/api/chat/{id}/stream", id="resume a reply"),
        pytest.param("POST", f"/api/chat/{{id}}/messages/{uuid.uuid4()}/stop", id="stop a reply"),
    ],
)
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no token"),
        pytest.param(f"Bearer {token(aud='anon')}", id="a token for another audience"),
    ],
)
def test_every_rest_route_refuses_without_a_good_token(
    doors: Doors, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = doors.client.open(path.format(id=doors.conversation_id), method=method, json={}, headers=headers)
    assert_invalid_token(response)
    assert list(doors.chat.database.conversations) == [doors.conversation_id]


@pytest.mark.parametrize(
    ("request_kwargs", "expected"),
    [
        pytest.param({"data": "{not json", "content_type": "application/json"}, (400, "bad_request"), id="malformed JSON"),
        pytest.param({"json": ["a list"]}, (400, "bad_request"), id="not an object"),
        pytest.param({"json": {"message": 7}}, (400, "bad_request"), id="wrong type"),
        pytest.param({"json": {"message": ""}}, (400, "bad_request"), id="empty message"),
        pytest.param({"json": {"message": "a\x00b"}}, (400, "bad_request"), id="U+0000 in the text"),
        pytest.param({"json": {"text": "wrong field"}}, (400, "bad_request"), id="no message field"),
        pytest.param({"json": {"message": "hi", "client_message_id": "nope"}}, (400, "bad_request"),
                     id="client_message_id not a UUID"),
        pytest.param({"json": {"message": "x" * 32001}}, (400, "bad_request"), id="over 32000 characters"),
        pytest.param({"data": "message=hi", "content_type": "application/x-www-form-urlencoded"},
                     (415, "unsupported_media_type"), id="a form"),
        pytest.param({"data": '{"message": "hi"}', "content_type": "text/plain"}, (415, "unsupported_media_type"),
                     id="JSON sent as text/plain"),
        pytest.param({"data": "message=hi", "content_type": "text/plain"}, (415, "unsupported_media_type"), id="not JSON"),
        pytest.param({"json": {"message": "x" * 600_000}}, (413, "request_entity_too_large"), id="over the body limit"),
        pytest.param({"json": {"message": "hi", "user_id": "someone-else"}}, (403, "forbidden"), id="another user_id"),
    ],
)
def test_bad_bodies_get_their_error_and_insert_nothing(
    doors: Doors, request_kwargs: dict[str, Any], expected: tuple[int, str]
) -> None:
    response = doors.client.post(f"/api/chat/{doors.conversation_id}", headers=doors.auth, **request_kwargs)
    assert error(response) == expected
    assert doors.chat.database.messages == {}


@pytest.mark.parametrize(
    "conversation_id",
    [
        pytest.param(str(uuid.uuid4()), id="unknown conversation"),
        pytest.param("not-a-uuid", id="not a UUID"),
        pytest.param("1%20OR%201=1", id="SQL in the path"),
    ],
)
def test_a_message_to_a_conversation_that_is_not_there_is_404(doors: Doors, conversation_id: str) -> None:
    response = doors.client.post(f"/api/chat/{conversation_id}", json={"message": "hello?"}, headers=doors.auth)
    assert error(response) == (404, "not_found")
    assert doors.chat.database.messages == {}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("\U0001F600" * 32000, id="32000 emoji"),
        pytest.param("\u4e2d" * 32000, id="32000 CJK"),
    ],
)
@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["JSON-escaped", "UTF-8"])
def test_the_largest_message_the_contract_allows_fits_the_body_limit(doors: Doors, text: str, ensure_ascii: bool) -> None:
    body = json.dumps({"message": text}, ensure_ascii=ensure_ascii)
    response = doors.client.post(f"/api/chat/{doors.conversation_id}", data=body, content_type="application/json",
                                 headers=doors.auth)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.get_json()["response"] == f"Echo: {text}"


def test_a_message_gets_its_reply(doors: Doors) -> None:
    response = doors.client.post(f"/api/chat/{doors.conversation_id}", json={"message": "hi"}, headers=doors.auth)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["response"], body["conversation_id"]) == ("Echo: hi", doors.conversation_id)


def fail_insert(fault: Exception) -> Callable[[Doors], None]:
    return lambda doors: doors.callers_store().fail_next("insert_message", fault)


def model_rejects(doors: Doors) -> None:
    doors.chat.model.script.append(ModelRejected("The AI model rejected this conversation (400): no."))


def rate_limited(doors: Doors) -> None:
    doors.callers_store().fail_next(
        "insert_message", RateLimited(9, "Too many messages: at most 1 per 60 s.", "messages_per_window")
    )


def hold_the_model(doors: Doors) -> None:
    doors.chat.model.gate = threading.Event()


@pytest.mark.parametrize(
    ("arrange", "settings", "expected", "headers"),
    [
        pytest.param(fail_insert(StoreUnavailable("down")), {}, (503, "supabase_unavailable"), {"Retry-After": "5"},
                     id="Supabase unreachable: 503, try again"),
        pytest.param(fail_insert(StoreRejected("no such function")), {}, (500, "internal_error"), {},
                     id="Supabase refuses a request of ours: 500, no Retry-After"),
        pytest.param(model_rejects, {}, (502, "reply_failed"), {}, id="the model failed: 502, message kept"),
        pytest.param(rate_limited, {}, (429, "rate_limited"), {"Retry-After": "9"},
                     id="over the rate limit: 429 with Retry-After"),
        pytest.param(hold_the_model, {"chat_reply_timeout_seconds": 0.05}, (504, "reply_timeout"), {},
                     id="no reply in time: 504 with the message id"),
    ],
)
def test_the_domain_failures_a_caller_sees(
    arrange: Callable[[Doors], None], settings: dict[str, Any], expected: tuple[int, str], headers: dict[str, str]
) -> None:
    doors = Doors(**settings)
    try:
        arrange(doors)
        response = doors.client.post(f"/api/chat/{doors.conversation_id}", json={"message": "hi"}, headers=doors.auth)
        assert error(response) == expected
        for name, value in headers.items():
            assert response.headers[name] == value
        if expected[0] in (502, 504):
            assert response.get_json()["error"]["message_id"] in doors.chat.database.messages
        if expected[0] == 500:
            assert "Retry-After" not in response.headers
    finally:
        if doors.chat.model.gate is not None:
            doors.chat.model.gate.set()
        doors.chat.service.close()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(f"/api/conversations/{uuid.uuid4()}", (404, "not_found"), id="unknown conversation"),
        pytest.param("/api/conversations/not-a-uuid", (404, "not_found"), id="not a UUID"),
        pytest.param("/api/conversations/1%20OR%201=1", (404, "not_found"), id="SQL in the path"),
        pytest.param("/api/conversations/%00", (404, "not_found"), id="U+0000 as the id"),
        pytest.param("/api/conversations?limit=0", (400, "bad_request"), id="limit out of range"),
        pytest.param("/api/conversations?limit=101", (400, "bad_request"), id="limit over 100"),
        pytest.param("/api/conversations?limit=-1", (400, "bad_request"), id="limit negative"),
        pytest.param("/api/conversations?limit=abc", (400, "bad_request"), id="limit not a number"),
        pytest.param("/api/conversations?limit=2.5", (400, "bad_request"), id="limit a fraction"),
        pytest.param("/api/conversations?before=not-a-uuid", (400, "bad_request"), id="before not a UUID"),
        pytest.param(f"/api/conversations?after={uuid.uuid4()}", (400, "bad_request"), id="after: not offered"),
        pytest.param("/api/conversations?page=2", (400, "bad_request"), id="page: not offered"),
        pytest.param("/api/conversations?colour=red", (400, "bad_request"), id="unknown query parameter"),
        pytest.param(f"/api/chat/{uuid.uuid4()}/history", (404, "not_found"), id="history of an unknown conversation"),
        pytest.param("/api/chat/not-a-uuid/history", (404, "not_found"), id="history of not a UUID"),
        pytest.param("/api/chat/{id}/history?limit=0", (400, "bad_request"), id="history limit 0"),
        pytest.param("/api/chat/{id}/history?limit=101", (400, "bad_request"), id="history limit over 100"),
        pytest.param("/api/chat/{id}/history?limit=-3", (400, "bad_request"), id="history limit negative"),
        pytest.param("/api/chat/{id}/history?limit=abc", (400, "bad_request"), id="history limit not a number"),
        pytest.param("/api/chat/{id}/history?limit=", (400, "bad_request"), id="history limit empty"),
        pytest.param("/api/chat/{id}/history?before=not-a-uuid", (400, "bad_request"), id="history before not a UUID"),
        pytest.param(f"/api/chat/{{id}}/history?after={uuid.uuid4()}", (400, "bad_request"),
                     id="history unknown query parameter"),
    ],
)
def test_conversation_routes_refuse_what_names_nothing(doors: Doors, path: str, expected: tuple[int, str]) -> None:
    assert error(doors.client.get(path.format(id=doors.conversation_id), headers=doors.auth)) == expected


@pytest.mark.parametrize("conversation_id", [pytest.param(str(uuid.uuid4()), id="unknown"), "not-a-uuid"])
def test_deleting_a_conversation_that_is_not_there_is_404(doors: Doors, conversation_id: str) -> None:
    assert error(doors.client.delete(f"/api/conversations/{conversation_id}", headers=doors.auth)) == (404, "not_found")
    assert list(doors.chat.database.conversations) == [doors.conversation_id]


@pytest.mark.parametrize("path", ["/api/conversations?limit=1", "/api/chat/{id}/history?limit=1"])
def test_the_smallest_page_is_one(doors: Doors, path: str) -> None:
    doors.chat.database.add_conversation(USER_ID)
    for content in ("m1", "m2"):
        doors.chat.database.add_message(doors.conversation_id, content, status="done")
    response = doors.client.get(path.format(id=doors.conversation_id), headers=doors.auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(response.get_json().get("conversations", response.get_json().get("messages"))) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        pytest.param('{"title": 5}', "application/json", "title", id="title not a string"),
        pytest.param('{"system_prompt": ["a"]}', "application/json", "system_prompt", id="prompt a list"),
        pytest.param('{"model": ""}', "application/json", "model", id="model empty"),
        pytest.param('{"title": "' + "x" * 201 + '"}', "application/json", "title", id="title over 200 characters"),
        pytest.param('{"title": "ok", "colour": "blue"}', "application/json", "colour", id="an unknown field"),
        pytest.param('{"title": "ok", "user_id": "00000000-0000-0000-0000-000000000000"}', "application/json", "user_id",
                     id="user_id: not the caller's to set"),
        pytest.param('{"title": "ok", "id": "00000000-0000-0000-0000-000000000000"}', "application/json", "id",
                     id="id: not the caller's to set"),
        pytest.param("{not json", "application/json", None, id="malformed JSON"),
        pytest.param("[]", "application/json", None, id="not an object"),
        pytest.param('{"title": "ok"}', "text/plain", None, id="JSON sent as text/plain"),
        pytest.param("title=ok", "application/x-www-form-urlencoded", None, id="a form"),
    ],
)
def test_creating_a_conversation_refuses_bad_bodies_naming_the_field(
    doors: Doors, body: str, content_type: str, field: str | None
) -> None:
    response = doors.client.post("/api/conversations", data=body, content_type=content_type, headers=doors.auth)
    expected = (415, "unsupported_media_type") if content_type != "application/json" else (400, "bad_request")
    assert error(response) == expected
    if field is not None:
        assert field in response.get_json()["error"]["message"]
    assert list(doors.chat.database.conversations) == [doors.conversation_id]


def test_someone_elses_conversation_is_indistinguishable_from_none(doors: Doors) -> None:
    other = doors.chat.database.add_conversation("someone-else")
    assert error(doors.client.get(f"/api/conversations/{other}", headers=doors.auth)) == (404, "not_found")
    assert error(doors.client.delete(f"/api/conversations/{other}", headers=doors.auth)) == (404, "not_found")
    assert other in doors.chat.database.conversations


def test_create_list_get_delete(doors: Doors) -> None:
    created = doors.client.post("/api/conversations", json={"title": "First"}, headers=doors.auth)
    assert created.status_code == 201
    conversation_id = created.get_json()["id"]
    listed = doors.client.get("/api/conversations", headers=doors.auth).get_json()["conversations"]
    assert conversation_id in [item["id"] for item in listed]
    assert doors.client.get(f"/api/conversations/{conversation_id}", headers=doors.auth).get_json()["title"] == "First"
    assert doors.client.delete(f"/api/conversations/{conversation_id}", headers=doors.auth).status_code == 204
    assert conversation_id not in doors.chat.database.conversations


# ----------------------------------------------------------------------------- health


def test_ready_when_every_dependency_answers(doors: Doors) -> None:
    assert doors.client.get("/healthz").get_json() == {"status": "ok"}
    ready = doors.client.get("/readyz")
    assert (ready.status_code, ready.get_json()) == (
        200, {"status": "ready", "checks": {"database": "ok", "model": "ok", "realtime": "ok"}}
    )


def database_down(chat: FakeChat) -> None:
    chat.store.fail_next("ping", StoreUnavailable("connection refused"))


def model_down(chat: FakeChat) -> None:
    chat.model.down = ConnectionError("the model's API answered 503")


def realtime_down(chat: FakeChat) -> None:
    chat.broadcaster.down = TimeoutError("no answer within 4 s")


@pytest.mark.parametrize(
    ("arrange", "checks"),
    [
        pytest.param(database_down, {"database": "down: connection refused", "model": "ok", "realtime": "ok"},
                     id="database"),
        pytest.param(model_down, {"database": "ok", "model": "down: the model's API answered 503", "realtime": "ok"},
                     id="model"),
        pytest.param(realtime_down, {"database": "ok", "model": "ok", "realtime": "down: no answer within 4 s"},
                     id="realtime"),
    ],
)
def test_readiness_names_the_dependency_that_is_down(
    doors: Doors, arrange: Callable[[FakeChat], None], checks: dict[str, str]
) -> None:
    arrange(doors.chat)
    response = doors.client.get("/readyz")
    [down] = [name for name, state in checks.items() if state != "ok"]
    reason = checks[down].removeprefix("down: ")
    assert (response.status_code, response.get_json()) == (
        503,
        {
            "error": {"code": "not_ready", "message": f"Not ready: down: {down} ({reason}).", "down": [down]},
            "checks": checks,
        },
    )
    assert doors.client.get("/healthz").status_code == 200, "liveness never depends on a dependency"


# ----------------------------------------------------------------------------- the event door


def delivery(doors: Doors, body: bytes | None = None, **header_changes: str) -> Any:
    message_id = doors.chat.database.add_message(doors.conversation_id)
    body = body if body is not None else message_event(message_id, doors.conversation_id)
    headers = {**signed_headers(WEBHOOK_SECRET, body), **header_changes}
    return doors.client.post("/webhooks/messages", data=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "header_changes", "expected"),
    [
        pytest.param(None, {"webhook-signature": "v1,Zm9yZ2Vk"}, (401, "invalid_signature"), id="forged"),
        pytest.param(None, {"webhook-timestamp": "1614265330"}, (401, "invalid_signature"), id="replayed"),
        pytest.param(b"{", {}, (400, "invalid_payload"), id="signed but not JSON"),
        pytest.param(json.dumps({"type": "INSERT"}).encode(), {}, (400, "invalid_payload"), id="signed, not an event"),
        pytest.param(b"[]", {}, (400, "invalid_payload"), id="signed, not an object"),
        pytest.param(message_event("not-a-uuid", "also-not"), {}, (400, "invalid_payload"), id="signed, ids not UUIDs"),
        pytest.param(b"x" * 300_000, {}, (413, "request_entity_too_large"), id="over the body limit"),
    ],
)
def test_the_event_door_refuses_bad_deliveries(
    doors: Doors, body: bytes | None, header_changes: dict[str, str], expected: tuple[int, str]
) -> None:
    assert error(delivery(doors, body, **header_changes)) == expected
    assert all(row.status == "pending" for row in doors.chat.database.messages.values())


def test_a_body_that_is_not_utf8_is_401(doors: Doors) -> None:
    headers = signed_headers(WEBHOOK_SECRET, b"placeholder")
    response = doors.client.post("/webhooks/messages", data=b"\xff\xfe not utf-8", headers=headers)
    assert error(response) == (401, "invalid_signature")


@pytest.mark.parametrize(
    ("role", "changes"),
    [
        pytest.param("assistant", {}, id="the assistant's message"),
        pytest.param("user", {"type": "UPDATE"}, id="an update"),
        pytest.param("user", {"table": "conversations"}, id="another table"),
    ],
)
def test_an_event_that_is_not_a_new_user_message_is_ignored(doors: Doors, role: str, changes: dict[str, str]) -> None:
    message_id = doors.chat.database.add_message(doors.conversation_id)
    response = delivery(doors, message_event(message_id, doors.conversation_id, role, **changes))
    assert (response.status_code, response.get_json()) == (200, {"status": "ignored"})
    assert all(row.status == "pending" for row in doors.chat.database.messages.values())


def test_a_delivery_is_accepted_and_answered(doors: Doors) -> None:
    response = delivery(doors)
    assert response.status_code == 202
    message_id = response.get_json()["message_id"]
    wait_until(lambda: doors.chat.database.messages[message_id].status == "done")


def shut_down(chat: FakeChat) -> None:
    chat.service.begin_shutdown()


def occupy_the_only_worker(chat: FakeChat) -> None:
    chat.model.gate = threading.Event()
    conversation_id = next(iter(chat.database.conversations))
    assert chat.service.accept_delivery(chat.database.add_message(conversation_id)) is Delivery.ACCEPTED


@pytest.mark.parametrize(
    ("arrange", "code"),
    [
        pytest.param(shut_down, "shutting_down", id="instance shutting down"),
        pytest.param(occupy_the_only_worker, "busy", id="every worker busy"),
    ],
)
def test_a_delivery_the_instance_cannot_take_is_503_and_stays_pending(
    arrange: Callable[[FakeChat], None], code: str
) -> None:
    doors = Doors(reply_concurrency=1, reply_queue_size=0)
    try:
        arrange(doors.chat)
        response = delivery(doors)
        assert error(response) == (503, code)
        assert response.headers["Retry-After"] == "5"
        assert doors.chat.database.messages[_last(doors)].status == "pending"
    finally:
        if doors.chat.model.gate is not None:
            doors.chat.model.gate.set()
        doors.chat.service.close()


def _last(doors: Doors) -> str:
    return max(doors.chat.database.messages.values(), key=lambda row: row.created_at).id
