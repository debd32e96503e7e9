"""The REST door's regenerate, edit, branch history, search and usage routes, in process on fakes:
one row per answer a caller can get, with the exact status and error code they would see."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chat.errors import RateLimited, StoreUnavailable
from chat.ports import ModelReply
from tests.support.doors import USER_ID, Doors, error

NOBODY = str(uuid.uuid4())


@pytest.fixture
def doors() -> Iterator[Doors]:
    running = Doors()
    yield running
    running.chat.service.close()


def sent(doors: Doors, text: str = "hi", conversation_id: str | None = None) -> dict[str, Any]:
    response = doors.client.post(f"/api/chat/{conversation_id or doors.conversation_id}", json={"message": text},
                                 headers=doors.auth)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def routes(doors: Doors, message_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    base = f"/api/chat/{doors.conversation_id}"
    return [
        ("post", f"{base}/messages/{message_id}/regenerate", None),
        ("post", f"{base}/messages/{message_id}/edit", {"message": "again"}),
        ("get", f"{base}/history?leaf={message_id}", None),
        ("get", "/api/search?q=hi", None),
        ("get", "/api/usage", None),
    ]


def call(doors: Doors, method: str, path: str, body: dict[str, Any] | None, **headers: str) -> Any:
    return getattr(doors.client, method)(path, json=body, headers=headers)


def test_every_new_route_refuses_without_a_token(doors: Doors) -> None:
    message_id = sent(doors)["message_id"]
    rows_before = len(doors.chat.database.messages)
    for method, path, body in routes(doors, message_id):
        response = call(doors, method, path, body)
        assert error(response) == (401, "invalid_token"), path
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert len(doors.chat.database.messages) == rows_before


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        pytest.param("/api/chat/{c}/messages/{m}/edit", {"message": ""}, (400, "bad_request"), id="edit: empty text"),
        pytest.param("/api/chat/{c}/messages/{m}/edit", {"message": 7}, (400, "bad_request"), id="edit: wrong type"),
        pytest.param("/api/chat/{c}/messages/{m}/edit", {"message": "a\x00b"}, (400, "bad_request"), id="edit: U+0000"),
        pytest.param("/api/chat/{c}/messages/{m}/edit", {"message": "x" * 32001}, (400, "bad_request"),
                     id="edit: over 32,000 characters"),
        pytest.param("/api/chat/{c}/messages/{m}/edit", {"message": "hi", "colour": "red"}, (400, "bad_request"),
                     id="edit: unknown field"),
        pytest.param("/api/chat/{c}/messages/{m}/edit", {}, (400, "bad_request"), id="edit: no text"),
        pytest.param("/api/chat/{c}/messages/not-a-uuid/edit", {"message": "hi"}, (404, "not_found"),
                     id="edit: message id not a UUID"),
        pytest.param("/api/chat/{c}/messages/not-a-uuid/regenerate", None, (404, "not_found"),
                     id="regenerate: message id not a UUID"),
        pytest.param("/api/chat/not-a-uuid/messages/{m}/regenerate", None, (404, "not_found"),
                     id="regenerate: conversation id not a UUID"),
        pytest.param(f"/api/chat/{{c}}/messages/{NOBODY}/regenerate", None, (404, "not_found"),
                     id="regenerate: no such message"),
        pytest.param(f"/api/chat/{{c}}/messages/{NOBODY}/edit", {"message": "hi"}, (404, "not_found"),
                     id="edit: no such message"),
    ],
)
def test_regenerate_and_edit_refuse_what_they_cannot_do(
    doors: Doors, path: str, body: dict[str, Any] | None, expected: tuple[int, str]
) -> None:
    message_id = sent(doors)["message_id"]
    rows_before = len(doors.chat.database.messages)
    response = doors.client.post(path.format(c=doors.conversation_id, m=message_id), json=body, headers=doors.auth)
    assert error(response) == expected
    assert len(doors.chat.database.messages) == rows_before


def test_an_edit_body_that_is_not_json_is_415(doors: Doors) -> None:
    message_id = sent(doors)["message_id"]
    response = doors.client.post(f"/api/chat/{doors.conversation_id}/messages/{message_id}/edit", data="message=hi",
                                 content_type="text/plain", headers=doors.auth)
    assert error(response) == (415, "unsupported_media_type")


def test_someone_elses_message_is_indistinguishable_from_none(doors: Doors) -> None:
    theirs = doors.chat.database.add_conversation("someone-else")
    their_message = doors.chat.database.add_message(theirs, "private", status="done")
    for action, body in (("regenerate", None), ("edit", {"message": "mine now"})):
        for conversation_id in (theirs, doors.conversation_id):
            response = doors.client.post(f"/api/chat/{conversation_id}/messages/{their_message}/{action}", json=body,
                                         headers=doors.auth)
            assert error(response) == (404, "not_found"), (action, conversation_id)
    assert [row.content for row in doors.chat.database.messages.values()] == ["private"]


def test_a_message_of_another_of_your_conversations_is_not_found_in_this_one(doors: Doors) -> None:
    other = doors.chat.database.add_conversation(USER_ID)
    message_id = sent(doors, conversation_id=other)["message_id"]
    response = doors.client.post(f"/api/chat/{doors.conversation_id}/messages/{message_id}/regenerate",
                                 headers=doors.auth)
    assert error(response) == (404, "not_found")
    assert len(doors.chat.database.messages) == 1


def test_regenerate_answers_like_a_sent_message_and_keeps_the_old_reply(doors: Doors) -> None:
    first = sent(doors)
    doors.chat.model.script.append(ModelReply("Another answer", "default-model", 3, 2))
    response = doors.client.post(f"/api/chat/{doors.conversation_id}/messages/{first['message_id']}/regenerate",
                                 headers=doors.auth)
    assert response.status_code == 200
    again = response.get_json()
    assert set(again) == set(first)  # the same answer as POST /api/chat/<conversation_id>
    assert (again["response"], again["status"], again["conversation_id"]) == ("Another answer", "done",
                                                                               doors.conversation_id)
    assert again["message_id"] != first["message_id"] and again["reply_id"] != first["reply_id"]
    old = doors.chat.database.messages[first["message_id"]]
    assert old.reply is not None and old.reply.content == "Echo: hi"
    assert doors.chat.database.messages[again["message_id"]].regenerates == first["message_id"]


def test_a_replys_id_stands_for_the_message_it_answers(doors: Doors) -> None:
    first = sent(doors)
    response = doors.client.post(f"/api/chat/{doors.conversation_id}/messages/{first['reply_id']}/regenerate",
                                 headers=doors.auth)
    assert response.status_code == 200
    assert doors.chat.database.messages[response.get_json()["message_id"]].regenerates == first["message_id"]


def test_regenerate_streams_with_accept_event_stream(doors: Doors) -> None:
    first = sent(doors)
    response = doors.client.post(f"/api/chat/{doors.conversation_id}/messages/{first['message_id']}/regenerate",
                                 headers={**doors.auth, "Accept": "text/event-stream"})
    assert (response.status_code, response.mimetype) == (200, "text/event-stream")
    events = [block for block in response.get_data(as_text=True).split("\n\n") if block.startswith("event:")]
    kinds = [block.split("\n")[0].removeprefix("event: ") for block in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) <= {"delta"}
    done = json.loads(events[-1].split("\n")[1].removeprefix("data: "))
    assert done["response"] == "Echo: hi" and done["message_id"] != first["message_id"]
    deltas = [json.loads(block.split("\n")[1].removeprefix("data: "))["delta"] for block in events[:-1]]
    assert "".join(deltas) == "Echo: hi"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param(RateLimited(9, "Too many messages: at most 1 per 60 s.", "messages_per_window"),
                     (429, "rate_limited"), id="a regeneration counts as a message: 429"),
        pytest.param(StoreUnavailable("down"), (503, "supabase_unavailable"), id="Supabase unreachable: 503"),
    ],
)
def test_regenerate_refused_by_the_database(doors: Doors, fault: Exception, expected: tuple[int, str]) -> None:
    first = sent(doors)
    doors.callers_store().fail_next("regenerate_message", fault)
    response = doors.client.post(f"/api/chat/{doors.conversation_id}/messages/{first['message_id']}/regenerate",
                                 headers=doors.auth)
    assert error(response) == expected


def test_edit_answers_on_a_new_branch_and_history_follows_either_leaf(doors: Doors) -> None:
    first, second = sent(doors, "one"), sent(doors, "two")
    response = doors.client.post(f"/api/chat/{doors.conversation_id}/messages/{first['message_id']}/edit",
                                 json={"message": "uno"}, headers=doors.auth)
    assert response.status_code == 200
    edited = response.get_json()
    assert edited["response"] == "Echo: uno"
    history = f"/api/chat/{doors.conversation_id}/history"

    new_branch = doors.client.get(f"{history}?leaf={edited['message_id']}", headers=doors.auth).get_json()
    assert [m["content"] for m in new_branch["messages"]] == ["uno", "Echo: uno"]
    assert new_branch["leaf"] == edited["message_id"]
    assert new_branch["messages"][0]["versions"] == {"index": 1, "count": 2,
                                                     "ids": [first["message_id"], edited["message_id"]]}
    newest = doors.client.get(f"{history}?leaf=newest", headers=doors.auth).get_json()
    assert newest["messages"] == new_branch["messages"]

    old_branch = doors.client.get(f"{history}?leaf={second['reply_id']}", headers=doors.auth).get_json()
    assert [m["content"] for m in old_branch["messages"]] == ["one", "Echo: one", "two", "Echo: two"]
    assert old_branch["leaf"] == second["message_id"]

    whole = doors.client.get(history, headers=doors.auth).get_json()  # no leaf: the whole log, as before
    assert "leaf" not in whole
    assert [m["content"] for m in whole["messages"]] == ["one", "Echo: one", "two", "Echo: two", "uno", "Echo: uno"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(f"leaf={NOBODY}", (404, "leaf_not_found"), id="a leaf that names nothing"),
        pytest.param("leaf=oldest", (400, "bad_request"), id="a leaf neither an id nor newest"),
        pytest.param("leaf=newest&limit=0", (400, "bad_request"), id="limit out of range"),
        pytest.param(f"leaf=newest&before={NOBODY}", (404, "cursor_not_found"), id="a cursor that names nothing"),
    ],
)
def test_branch_history_refuses_what_names_nothing(doors: Doors, query: str, expected: tuple[int, str]) -> None:
    sent(doors)
    response = doors.client.get(f"/api/chat/{doors.conversation_id}/history?{query}", headers=doors.auth)
    assert error(response) == expected


def test_someone_elses_branch_is_not_found(doors: Doors) -> None:
    theirs = doors.chat.database.add_conversation("someone-else")
    their_message = doors.chat.database.add_message(theirs, "private")
    response = doors.client.get(f"/api/chat/{theirs}/history?leaf={their_message}", headers=doors.auth)
    assert error(response) == (404, "not_found")
    mine = doors.client.get(f"/api/chat/{doors.conversation_id}/history?leaf={their_message}", headers=doors.auth)
    assert error(mine) == (404, "leaf_not_found")


def test_search_finds_your_own_text_and_not_someone_elses(doors: Doors) -> None:
    sent(doors, "the blue whale")
    theirs = doors.chat.database.add_conversation("someone-else")
    doors.chat.database.add_message(theirs, "a blue whale of their own")
    response = doors.client.get("/api/search?q=blue%20whale&limit=5", headers=doors.auth)
    assert response.status_code == 200
    body = response.get_json()
    assert body["query"] == "blue whale"
    assert [(r["role"], r["snippet"]) for r in body["results"]] == [
        ("user", "the blue whale"), ("assistant", "Echo: the blue whale")
    ]
    assert {r["conversation_id"] for r in body["results"]} == {doors.conversation_id}


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("", id="no q"),
        pytest.param("q=", id="empty q"),
        pytest.param("q=%20%20", id="blank q"),
        pytest.param(f"q={'x' * 201}", id="q over 200 characters"),
        pytest.param("q=hi&limit=0", id="limit under 1"),
        pytest.param("q=hi&limit=101", id="limit over 100"),
        pytest.param("q=hi&colour=red", id="unknown parameter"),
    ],
)
def test_search_refuses_a_blank_or_bad_query(doors: Doors, query: str) -> None:
    response = doors.client.get(f"/api/search?{query}", headers=doors.auth)
    assert error(response) == (400, "bad_request")
    assert response.get_json()["error"]["message"].startswith("Invalid request: ")


def test_usage_counts_your_messages_today(doors: Doors) -> None:
    first = sent(doors)
    doors.client.post(f"/api/chat/{doors.conversation_id}/messages/{first['message_id']}/regenerate",
                      headers=doors.auth)
    response = doors.client.get("/api/usage", headers=doors.auth)
    assert response.status_code == 200
    assert response.get_json()["messages_today"] == 2
