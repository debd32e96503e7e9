"""The Vercel AI SDK's useChat against the running service, unchanged: its Chat and
DefaultChatTransport under Node (the pinned `ai`, and older versions for the main paths) with
`api` at /api/chat and the conversation as the chat id. The reply streams in the SDK's UI message
stream protocol and equals the stored row; a failure is its error part; a quota refusal keeps its
429 with the sentence the page shows; a dropped connection and a reloaded page resume from the
reply row; the SDK's stop ends only its own stream; regenerate is refused. The protocol's details
a frontend relies on (the parts each SDK reads, the ids in the metadata, exactly-once, the stop
route, the resume's choice of message) are checked over plain HTTP."""

from __future__ import annotations

import psycopg
import pytest

from api.ai_sdk import REGENERATE_REFUSED
from api.ui_message_stream import encode, ui_message_parts
from chat.waiting.direct_stream import StreamEvent
from devstack.service_process import ServiceProcess
from tests.support.ai_sdk import (
    OLDER_AI,
    PINNED_AI,
    assistant_text,
    chunk_types,
    parse_with_the_sdk,
    run_chat,
    sdk_body,
    ui_parts,
)
from tests.support.polling import wait_until
from tests.support.quotas import limit_user
from tests.support.stack import FakeModelControl
from tests.support.streaming import replies, reply_row, words
from tests.support.users import SignedUpUser


def new_conversation(user: SignedUpUser, service: ServiceProcess) -> str:
    response = user.api(service.url).post("/api/conversations", json={})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def user_messages(db: psycopg.Connection, conversation_id: str) -> list[tuple[str, str, str | None]]:
    """(id, status, error) of the conversation's user messages, in order."""
    return [(str(row[0]), row[1], row[2]) for row in db.execute(
        "select id, status, error from public.messages where conversation_id = %s and role = 'user' order by seq",
        (conversation_id,)).fetchall()]


EVERY_AI = pytest.mark.parametrize(
    "package", ["ai", *OLDER_AI], ids=[f"ai {PINNED_AI}", *(f"ai {version}" for version in OLDER_AI.values())]
)


@EVERY_AI
def test_use_chat_streams_the_reply_and_it_equals_the_stored_row(
    ai_sdk_node: str, live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser,
    db: psycopg.Connection, package: str,
) -> None:
    fake_model.set_pace(first_token_ms=20, tokens_per_second=200)
    conversation_id = new_conversation(alice, live_service)
    text = words(30, "sdk")

    report = run_chat(ai_sdk_node, live_service.url, alice, conversation_id, "send", text=text, package=package)

    assert (report["status"], report["error"]) == ("ready", None)
    assert chunk_types(report) == ["start", "text-start", "text-delta", "text-end", "finish"]
    [(message_id, status, _)] = user_messages(db, conversation_id)
    content, reply_status, _, _, reply_id = reply_row(db, message_id) or ("", "", None, None, "")
    assert assistant_text(report) == f"Echo: {text}" == content
    assert (status, reply_status) == ("done", "done")
    assert report["messages"][-1]["metadata"] == {
        "conversation_id": conversation_id, "message_id": message_id, "reply_id": reply_id, "status": "done",
    }
    assert [(r["method"], r["status"], r["contentType"], r["protocol"]) for r in report["requests"]] == [
        ("POST", 200, "text/event-stream; charset=utf-8", "v1"),
    ]


def test_a_model_failure_is_the_protocol_error_part(
    ai_sdk_node: str, live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser,
    db: psycopg.Connection,
) -> None:
    fake_model.queue_faults({"kind": "bad_request"}, match="refuse me")
    conversation_id = new_conversation(alice, live_service)

    report = run_chat(ai_sdk_node, live_service.url, alice, conversation_id, "send", text="refuse me")

    [(_, status, stored_error)] = user_messages(db, conversation_id)
    assert status == "failed" and stored_error is not None
    assert report["status"] == "error"
    assert report["error"] == {"message": stored_error, "statusCode": None}
    assert stored_error.startswith("The AI model rejected this conversation (400)")
    assert chunk_types(report) == ["start", "error"]


def test_a_quota_refusal_is_a_429_whose_sentence_the_sdk_shows(
    ai_sdk_node: str, live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser,
    db: psycopg.Connection,
) -> None:
    limit_user(db, alice.user_id, messages_per_window=1)
    conversation_id = new_conversation(alice, live_service)
    assert run_chat(ai_sdk_node, live_service.url, alice, conversation_id, "send", text="first")["status"] == "ready"

    report = run_chat(ai_sdk_node, live_service.url, alice, conversation_id, "send", text="second")

    assert report["status"] == "error" and report["error"]["statusCode"] == 429
    assert report["error"]["message"].startswith("Too many messages: at most 1 per 60 s. The limit resets at ")
    assert [(r["method"], r["status"], r["contentType"]) for r in report["requests"]] == [
        ("POST", 429, "text/plain; charset=utf-8")]
    assert report["chunks"] == []  # refused before any reply began: no stream
    assert [m["role"] for m in report["messages"]] == ["user"]
    assert len(user_messages(db, conversation_id)) == 1
    assert len(fake_model.requests(match="second")) == 0


# ai 5's Chat appends a resumed stream to the text it already shows, where 6 and later take it as the
# replay it is: on 5 only a reloaded page (holding what the history gives) resumes cleanly.
RESUMES = [
    *(pytest.param(package, "drop", id=f"the same page resumes-ai {version}")
      for package, version in [("ai", PINNED_AI), ("ai-v6", OLDER_AI["ai-v6"])]),
    *(pytest.param(package, "reload", id=f"a reloaded page resumes-ai {version}")
      for package, version in [("ai", PINNED_AI), *OLDER_AI.items()]),
]


@pytest.mark.parametrize(("package", "scenario"), RESUMES)
def test_a_dropped_connection_resumes_from_the_reply_row(
    ai_sdk_node: str, live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser,
    db: psycopg.Connection, scenario: str, package: str,
) -> None:
    fake_model.set_pace(first_token_ms=0, tokens_per_second=25)
    conversation_id = new_conversation(alice, live_service)
    text = words(50, "resume")

    report = run_chat(ai_sdk_node, live_service.url, alice, conversation_id, scenario, text=text, package=package)

    dropped = report["dropped"]
    assert (dropped["status"], dropped["error"]["message"]) == ("error", "network error")
    [(message_id, status, _)] = user_messages(db, conversation_id)
    content, reply_status, _, _, reply_id = reply_row(db, message_id) or ("", "", None, None, "")
    assert (report["status"], report["error"]) == ("ready", None)
    assert assistant_text(report) == f"Echo: {text}" == content and (status, reply_status) == ("done", "done")
    assert report["messages"][-1]["metadata"]["reply_id"] == reply_id
    resumed = report["requests"][-1]
    assert (resumed["method"], resumed["url"], resumed["status"]) == (
        "GET", f"{live_service.url}/api/chat/{conversation_id}/stream", 200,  # 200: the reply was still being written
    )
    assert replies(db, message_id) == 1 and len(fake_model.requests(match=text)) == 1


def test_resume_with_nothing_under_way_is_204(
    ai_sdk_node: str, live_service: ServiceProcess, alice: SignedUpUser,
) -> None:
    conversation_id = new_conversation(alice, live_service)
    answered = run_chat(ai_sdk_node, live_service.url, alice, conversation_id, "send", text="already answered")
    held = [{"id": m["id"], "role": m["role"], "parts": [{"type": "text", "text": m["text"]}]} for m in answered["messages"]]

    report = run_chat(ai_sdk_node, live_service.url, alice, conversation_id, "resume", messages=held)

    assert [(r["method"], r["status"]) for r in report["requests"]] == [("GET", 204)]
    assert (report["status"], report["error"]) == ("ready", None)
    assert [m["text"] for m in report["messages"]] == ["already answered", "Echo: already answered"]


def test_the_sdks_stop_ends_only_its_own_stream(
    ai_sdk_node: str, live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser,
    db: psycopg.Connection,
) -> None:
    fake_model.set_pace(first_token_ms=0, tokens_per_second=40)
    conversation_id = new_conversation(alice, live_service)
    text = words(40, "abort")

    report = run_chat(ai_sdk_node, live_service.url, alice, conversation_id, "stop", text=text)

    assert report["status"] == "ready" and report["finishes"][0]["isAbort"] is True
    assert len(assistant_text(report)) < len(f"Echo: {text}")
    [(message_id, _, _)] = user_messages(db, conversation_id)
    wait_until(lambda: (reply_row(db, message_id) or ("", ""))[1] == "done", deadline_seconds=15)
    assert (reply_row(db, message_id) or ("",))[0] == f"Echo: {text}"
    request = wait_until(lambda: next((r for r in fake_model.requests(match=text) if r["stream_end"]), None))
    assert request["stream_end"] == "complete"


def test_regenerate_is_refused_saying_so(
    ai_sdk_node: str, live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser,
    db: psycopg.Connection,
) -> None:
    conversation_id = new_conversation(alice, live_service)

    report = run_chat(ai_sdk_node, live_service.url, alice, conversation_id, "regenerate", text="once")

    assert report["answered"]["status"] == "ready"
    assert report["status"] == "error"
    assert report["error"] == {"message": REGENERATE_REFUSED, "statusCode": 400}
    assert len(user_messages(db, conversation_id)) == 1 and len(fake_model.requests(match="once")) == 1


@EVERY_AI
def test_every_part_the_service_writes_is_one_the_sdk_reads(ai_sdk_node: str, package: str) -> None:
    meta = {"conversation_id": "c", "message_id": "m"}
    reply = [StreamEvent("heartbeat", {}), StreamEvent("delta", {"offset": 0, "delta": "Échø ", "attempt": 1}),
             StreamEvent("done", {"response": "Échø 你好", "conversation_id": "c", "message_id": "m", "reply_id": "r",
                                  "status": "done"})]
    failed = [StreamEvent("error", {"error": {"code": "reply_failed", "message": "The model broke off."}, "message_id": "m"})]
    for events in (reply, failed):
        parts = list(ui_message_parts(events, meta))
        body = "".join(encode(part) for part in parts) + "data: [DONE]\n\n"

        parsed = parse_with_the_sdk(ai_sdk_node, body, package)

        assert parsed == {"chunks": [part for part in parts if part is not None], "error": None}


# ----------------------------------------------------------------------------- the protocol over HTTP


def test_the_stream_names_the_message_so_the_stop_route_can_end_the_reply(
    live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser, db: psycopg.Connection,
) -> None:
    fake_model.set_pace(first_token_ms=0, tokens_per_second=20)
    api = alice.api(live_service.url)
    conversation_id = new_conversation(alice, live_service)
    text = words(100, "halt")
    with api.stream("POST", "/api/chat", json=sdk_body(text, conversation_id)) as response:
        lines = response.iter_lines()
        start = ui_parts([next(lines)])[0]
        message_id = start["messageMetadata"]["message_id"]
        assert start == {"type": "start", "messageMetadata": {"conversation_id": conversation_id, "message_id": message_id}}
        assert api.post(f"/api/chat/{conversation_id}/messages/{message_id}/stop").status_code == 200
        parts = ui_parts(lines)

    finish = parts[-2]
    assert parts[-1] == "[DONE]" and finish["type"] == "finish"
    assert finish["messageMetadata"]["status"] == "stopped"
    streamed = "".join(part["delta"] for part in parts if isinstance(part, dict) and part["type"] == "text-delta")
    assert streamed == (reply_row(db, message_id) or ("",))[0] and len(streamed) < len(f"Echo: {text}")


def test_the_same_sdk_message_sent_twice_is_answered_once(
    live_service: ServiceProcess, fake_model: FakeModelControl, alice: SignedUpUser, db: psycopg.Connection,
) -> None:
    api = alice.api(live_service.url)
    conversation_id = new_conversation(alice, live_service)
    body = sdk_body("only once", message_id="sdk-message-7")

    answers = [ui_parts(api.post(f"/api/chat/{conversation_id}", json=body).iter_lines()) for _ in range(2)]

    finishes = [answer[-2]["messageMetadata"] for answer in answers]
    assert finishes[0] == finishes[1] and finishes[0]["status"] == "done"
    assert len(user_messages(db, conversation_id)) == 1 and len(fake_model.requests(match="only once")) == 1


def test_resume_follows_the_latest_message_and_only_while_it_is_unanswered(
    service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection,
) -> None:
    api = alice.api(service.url)  # nobody answers here: the webhook points nowhere
    conversation_id = new_conversation(alice, service)
    _earlier, latest = (str(db.execute(
        "insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s) returning id",
        (conversation_id, alice.user_id, content)).fetchone()[0]) for content in ("earlier", "latest"))  # type: ignore[index]

    with api.stream("GET", f"/api/chat/{conversation_id}/stream") as response:
        start = ui_parts([next(response.iter_lines())])[0]
    db.execute("update public.messages set status = 'failed', error = 'gone' where id = %s", (latest,))
    settled = api.get(f"/api/chat/{conversation_id}/stream")

    assert start["messageMetadata"] == {"conversation_id": conversation_id, "message_id": latest}
    assert settled.status_code == 204


def test_resume_refusals(live_service: ServiceProcess, alice: SignedUpUser, bob: SignedUpUser) -> None:
    conversation_id = new_conversation(alice, live_service)

    strangers = bob.api(live_service.url).get(f"/api/chat/{conversation_id}/stream")
    unsigned = alice.api(live_service.url).get(f"/api/chat/{conversation_id}/stream", headers={"Authorization": ""})

    assert (strangers.status_code, strangers.text) == (404, "No such conversation.")
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "invalid_token")
