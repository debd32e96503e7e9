"""The AI SDK's door without servers: its request bodies read into the message sent (or refused
with the message a useChat page shows), a reply's events written as UI message stream parts,
and the routes on in-memory fakes: the stream, every refusal with its status and its message as
the body the SDK shows, a failure once the reply is under way as the stream's error part, and the
resume (204 when nothing is under way)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.exceptions import BadRequest

from api.ai_sdk import (
    EDIT_REFUSED,
    NO_CHAT_ID,
    NO_TEXT,
    NOT_THE_USERS,
    REGENERATE_REFUSED,
    SDK_MESSAGE_IDS,
    chat_request,
    message_to_send,
    speaks_ai_sdk,
)
from api.ui_message_stream import RESTARTED, encode, ui_message_parts
from chat.errors import ModelRejected, RateLimited, StoreRejected, StoreUnavailable
from chat.waiting.direct_stream import StreamEvent
from tests.support.ai_sdk import sdk_body, ui_parts
from tests.support.doors import Doors

CONVERSATION = str(uuid.uuid4())


def user_message(*parts: dict[str, Any], role: str = "user", message_id: str = "m1") -> dict[str, Any]:
    return {"id": message_id, "role": role, "parts": list(parts)}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def body_with(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": CONVERSATION, "messages": list(messages), "trigger": "submit-message", **fields}


# ----------------------------------------------------------------------------- reading the request


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"messages": [], "id": "c", "trigger": "submit-message"}, True, id="the SDK's shape"),
        pytest.param({"messages": []}, True, id="messages alone"),
        pytest.param({"message": "hi"}, False, id="our JSON callers' shape"),
        pytest.param({"message": "hi", "messages": []}, False, id="both: our callers' shape wins"),
    ],
)
def test_the_sdks_requests_are_told_by_their_messages(body: dict[str, Any], expected: bool) -> None:
    assert speaks_ai_sdk(body) is expected


@pytest.mark.parametrize(
    ("body", "content"),
    [
        pytest.param(body_with(user_message(text("hi"))), "hi", id="one text part"),
        pytest.param(body_with(user_message(text("one"), text("two"))), "one\ntwo", id="text parts joined by a newline"),
        pytest.param(body_with(user_message({"type": "file", "mediaType": "image/png", "url": "data:,"}, text("see"))),
                     "see", id="other parts left out"),
        pytest.param(body_with(user_message(text("old"), message_id="a"),
                               {"id": "b", "role": "assistant", "parts": [{"type": "tool-x", "input": {"deep": [1]}}]},
                               user_message(text("new"), message_id="c")),
                     "new", id="history is not read, whatever its parts"),
        pytest.param(body_with(user_message(text("hi")), appField={"x": 1}), "hi", id="the app's own body fields ignored"),
    ],
)
def test_the_last_user_messages_text_is_sent(body: dict[str, Any], content: str) -> None:
    assert message_to_send(chat_request(body), CONVERSATION).content == content


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(body_with(user_message(text("hi")), trigger="regenerate-message"), REGENERATE_REFUSED, id="regenerate"),
        pytest.param(body_with(user_message(text("hi")), messageId="m1"), EDIT_REFUSED, id="an edited message"),
        pytest.param(body_with(user_message(text("hi"), role="assistant")), NOT_THE_USERS, id="last is the assistant's"),
        pytest.param(body_with(user_message({"type": "file", "mediaType": "image/png", "url": "data:,"})), NO_TEXT,
                     id="no text part"),
        pytest.param(body_with(user_message(text(""))), NO_TEXT, id="empty text"),
        pytest.param(body_with(user_message(text("x" * 32001))),
                     "Invalid request: message: String should have at most 32000 characters.", id="over the length limit"),
        pytest.param(body_with(user_message(text("a\x00b"))),
                     "Invalid request: message: String should match pattern '^[^\\x00]*$'.", id="U+0000"),
        pytest.param(body_with(), "Invalid request: messages: List should have at least 1 item after validation, not 0.",
                     id="no messages"),
        pytest.param(body_with({"role": "user", "parts": [text("hi")]}), "Invalid request: messages.0.id: Field required.",
                     id="a message without its id"),
        pytest.param(body_with(user_message(text("hi")), trigger="continue"),
                     "Invalid request: trigger: Input should be 'submit-message' or 'regenerate-message'.",
                     id="an unknown trigger"),
    ],
)
def test_what_cannot_be_sent_is_refused_saying_why(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        message_to_send(chat_request(body), CONVERSATION)
    assert refused.value.description == message


def test_the_sdks_message_id_is_the_idempotency_key_within_its_conversation() -> None:
    body = chat_request(body_with(user_message(text("hi"), message_id="abc")))
    key = message_to_send(body, CONVERSATION).client_message_id
    assert key == str(uuid.uuid5(SDK_MESSAGE_IDS, f"{CONVERSATION}/abc")) == message_to_send(body, CONVERSATION).client_message_id
    assert message_to_send(body, str(uuid.uuid4())).client_message_id != key


# ----------------------------------------------------------------------------- writing the stream


def delta(offset: int, piece: str, attempt: int = 1) -> StreamEvent:
    return StreamEvent("delta", {"offset": offset, "delta": piece, "attempt": attempt})


def done(response: str, status: str = "done") -> StreamEvent:
    return StreamEvent("done", {"response": response, "conversation_id": "c", "message_id": "m",
                                "reply_id": "r" if response else None, "status": status})


def failed(message: str) -> StreamEvent:
    return StreamEvent("error", {"error": {"code": "reply_failed", "message": message}, "message_id": "m"})


START = {"type": "start", "messageMetadata": {"conversation_id": "c", "message_id": "m"}}
TEXT_START, TEXT_END = {"type": "text-start", "id": "text"}, {"type": "text-end", "id": "text"}


def piece(value: str) -> dict[str, Any]:
    return {"type": "text-delta", "id": "text", "delta": value}


def finish(status: str, reply_id: str | None = "r") -> dict[str, Any]:
    return {"type": "finish",
            "messageMetadata": {"conversation_id": "c", "message_id": "m", "reply_id": reply_id, "status": status}}


@pytest.mark.parametrize(
    ("events", "parts"),
    [
        pytest.param([delta(0, "Echo: "), delta(6, "hi"), done("Echo: hi")],
                     [START, TEXT_START, piece("Echo: "), piece("hi"), TEXT_END, finish("done")], id="a reply"),
        pytest.param([done("Echo: hi")], [START, TEXT_START, piece("Echo: hi"), TEXT_END, finish("done")],
                     id="answered at once (a request sent twice)"),
        pytest.param([delta(0, "Echo: "), done("Echo: hi")],
                     [START, TEXT_START, piece("Echo: "), piece("hi"), TEXT_END, finish("done")],
                     id="the text after the last checkpoint, at the end"),
        pytest.param([delta(0, "Echo: h"), delta(6, "hi"), done("Echo: hi")],
                     [START, TEXT_START, piece("Echo: h"), piece("i"), TEXT_END, finish("done")],
                     id="an overlapping piece: only its new text"),
        pytest.param([delta(0, "Ech"), done("Ech", "stopped")],
                     [START, TEXT_START, piece("Ech"), TEXT_END, finish("stopped")], id="stopped by its owner"),
        pytest.param([done("", "stopped")], [START, finish("stopped", None)], id="stopped before any text"),
        pytest.param([delta(0, "Ech"), failed("The model broke off.")],
                     [START, TEXT_START, piece("Ech"), TEXT_END, {"type": "error", "errorText": "The model broke off."}],
                     id="failed after some text: the text kept, then the error"),
        pytest.param([failed("rejected")], [START, {"type": "error", "errorText": "rejected"}], id="failed before any text"),
        pytest.param([delta(0, "Ech"), delta(0, "Another", attempt=2), done("Another")],
                     [START, TEXT_START, piece("Ech"), TEXT_END, {"type": "error", "errorText": RESTARTED}],
                     id="restarted by a new attempt: resume to read it"),
        pytest.param([delta(0, "Ech", attempt=2), done("Echo")],
                     [START, TEXT_START, piece("Ech"), piece("o"), TEXT_END, finish("done")],
                     id="a later attempt from the start"),
        pytest.param([StreamEvent("heartbeat", {}), done("")], [START, None, finish("done", None)],
                     id="a heartbeat: a comment line"),
    ],
)
def test_a_replys_events_as_ui_message_parts(events: list[StreamEvent], parts: list[Any]) -> None:
    assert list(ui_message_parts(events, {"conversation_id": "c", "message_id": "m"})) == parts


def test_parts_are_data_lines_and_a_heartbeat_a_comment() -> None:
    assert encode(piece("é")) == 'data: {"type":"text-delta","id":"text","delta":"\\u00e9"}\n\n'
    assert encode(None) == ": heartbeat\n\n"


# ----------------------------------------------------------------------------- the routes, on fakes


@pytest.fixture
def doors() -> Iterator[Doors]:
    running = Doors()
    yield running
    running.chat.service.close()


def streamed(response: Any) -> list[Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.mimetype == "text/event-stream"
    return ui_parts(response.get_data(as_text=True).splitlines())


def refusal(response: Any) -> tuple[int, str, str]:
    """(status, media type, body): what the SDK makes its error of."""
    return response.status_code, response.mimetype, response.get_data(as_text=True)


@pytest.mark.parametrize("route", ["/api/chat", "/api/chat/{conversation_id}"], ids=["chat id in the body", "in the path"])
def test_a_message_streams_its_reply(doors: Doors, route: str) -> None:
    response = doors.client.post(route.format(conversation_id=doors.conversation_id),
                                 json=sdk_body("hi", doors.conversation_id), headers=doors.auth)

    parts = streamed(response)
    [row] = doors.chat.database.messages.values()
    kinds = [part if isinstance(part, str) else part["type"] for part in parts]
    deltas = [part["delta"] for part in parts if isinstance(part, dict) and part["type"] == "text-delta"]
    # The reply streams (the fake model sends it word by word): one text-delta or more, in one text part.
    assert kinds == ["start", "text-start", *["text-delta"] * len(deltas), "text-end", "finish", "[DONE]"]
    assert "".join(deltas) == "Echo: hi" and row.content == "hi"
    assert parts[0]["messageMetadata"] == {"conversation_id": doors.conversation_id, "message_id": row.id}
    assert row.reply is not None and parts[-2]["messageMetadata"]["reply_id"] == row.reply.reply_id


def rate_limited(doors: Doors) -> None:
    doors.callers_store().fail_next("insert_message", RateLimited(9, "Too many messages: at most 1 per 60 s.", "x"))


def store_down(doors: Doors) -> None:
    doors.callers_store().fail_next("insert_message", StoreUnavailable("down"))


def store_refuses(doors: Doors) -> None:
    doors.callers_store().fail_next("insert_message", StoreRejected("no such function"))


def nothing(doors: Doors) -> None:
    pass


@pytest.mark.parametrize(
    ("route", "body", "arrange", "status", "message", "headers"),
    [
        pytest.param("/api/chat", sdk_body("hi"), nothing, 400, NO_CHAT_ID, {}, id="no chat id on /api/chat"),
        pytest.param("/api/chat", sdk_body("hi", "not-a-uuid"), nothing, 404, "No such conversation.", {},
                     id="a chat id not a UUID"),
        pytest.param("/api/chat", sdk_body("hi", str(uuid.uuid4())), nothing, 404, "No such conversation.", {},
                     id="unknown or someone else's conversation"),
        pytest.param("/api/chat/not-a-uuid", sdk_body("hi"), nothing, 404, "No such conversation.", {},
                     id="a path not a UUID"),
        pytest.param("/api/chat/{conversation_id}", sdk_body("hi", trigger="regenerate-message"), nothing,
                     400, REGENERATE_REFUSED, {}, id="regenerate"),
        pytest.param("/api/chat/{conversation_id}", {"messages": "all of them"}, nothing,
                     400, "Invalid request: messages: Input should be a valid list.", {}, id="not the SDK's shape"),
        pytest.param("/api/chat/{conversation_id}", sdk_body("hi"), rate_limited,
                     429, "Too many messages: at most 1 per 60 s.", {"Retry-After": "9"}, id="a usage limit"),
        pytest.param("/api/chat/{conversation_id}", sdk_body("hi"), store_down,
                     503, "Supabase is unreachable right now; try again shortly.", {"Retry-After": "5"},
                     id="Supabase unreachable"),
        pytest.param("/api/chat/{conversation_id}", sdk_body("hi"), store_refuses,
                     500, "Something went wrong on our side; it has been logged.", {}, id="Supabase refuses a request of ours"),
    ],
)
def test_refusals_keep_their_status_with_the_message_as_the_body_and_insert_nothing(
    doors: Doors, route: str, body: dict[str, Any], arrange: Callable[[Doors], None], status: int, message: str,
    headers: dict[str, str],
) -> None:
    arrange(doors)
    response = doors.client.post(route.format(conversation_id=doors.conversation_id), json=body, headers=doors.auth)
    assert refusal(response) == (status, "text/plain", message)
    assert {name: response.headers.get(name) for name in headers} == headers
    assert doors.chat.database.messages == {}


def test_a_model_failure_is_an_error_part_after_the_start(doors: Doors) -> None:
    doors.chat.model.script.append(ModelRejected("The AI model rejected this conversation (400): no."))
    parts = streamed(doors.client.post("/api/chat", json=sdk_body("hi", doors.conversation_id), headers=doors.auth))
    assert [part if isinstance(part, str) else part["type"] for part in parts] == ["start", "error", "[DONE]"]
    assert parts[1]["errorText"] == "The AI model rejected this conversation (400): no."


@pytest.mark.parametrize(
    ("request_kwargs", "expected"),
    [
        pytest.param({"json": sdk_body("hi"), "headers": {}}, (401, "invalid_token"), id="no token: 401, as everywhere"),
        pytest.param({"data": "messages=hi", "content_type": "text/plain"}, (415, "unsupported_media_type"),
                     id="not JSON: no SDK request to speak to"),
    ],
)
def test_what_is_refused_before_the_chat_keeps_its_status(
    doors: Doors, request_kwargs: dict[str, Any], expected: tuple[int, str]
) -> None:
    response = doors.client.post("/api/chat", **{"headers": doors.auth, **request_kwargs})
    assert (response.status_code, response.get_json()["error"]["code"]) == expected


def test_our_own_json_callers_are_answered_as_before(doors: Doors) -> None:
    response = doors.client.post(f"/api/chat/{doors.conversation_id}", json={"message": "hi", "messages": []},
                                 headers=doors.auth)
    assert response.mimetype == "application/json" and response.get_json()["response"] == "Echo: hi"


def test_resume_with_nothing_under_way_is_204(doors: Doors) -> None:
    resume = f"/api/chat/{doors.conversation_id}/stream"
    assert doors.client.get(resume, headers=doors.auth).status_code == 204  # no message yet
    streamed(doors.client.post("/api/chat", json=sdk_body("hi", doors.conversation_id), headers=doors.auth))
    assert doors.client.get(resume, headers=doors.auth).status_code == 204  # answered


def test_resume_follows_the_latest_message_until_its_reply_is_written(doors: Doors) -> None:
    message_id = doors.chat.database.add_message(doors.conversation_id, "later")  # pending: not delivered yet

    response = doors.client.get(f"/api/chat/{doors.conversation_id}/stream", headers=doors.auth)
    doors.chat.service.accept_delivery(message_id)

    parts = streamed(response)
    assert parts[0] == {"type": "start", "messageMetadata": {"conversation_id": doors.conversation_id, "message_id": message_id}}
    assert "".join(p["delta"] for p in parts if isinstance(p, dict) and p["type"] == "text-delta") == "Echo: later"
    assert parts[-2]["type"] == "finish" and parts[-2]["messageMetadata"]["status"] == "done"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/api/chat/{other}/stream", id="someone else's conversation"),
        pytest.param("/api/chat/not-a-uuid/stream", id="not a UUID"),
    ],
)
def test_resume_refusals_keep_their_status(doors: Doors, path: str) -> None:
    other = doors.chat.database.add_conversation("someone-else")
    doors.chat.database.add_message(other, "theirs")
    response = doors.client.get(path.format(other=other), headers=doors.auth)
    assert refusal(response) == (404, "text/plain", "No such conversation.")

