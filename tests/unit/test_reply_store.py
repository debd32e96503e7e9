"""The aiohttp reply store's edges, with no socket: a scripted session answers each request (or
fails it as aiohttp would). Every way of not getting an answer is StoreUnavailable, worded as the
httpx adapters word it; a refusal is what the one error table names for its code; a stale claim
is ClaimSuperseded; and the request is the one supabase-py's `.rpc()` sends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import httpx
import pytest

from adapters.message_store import service_client
from adapters.postgrest_errors import store_error
from adapters.reply_store import PostgrestReplyStore
from chat.errors import ClaimSuperseded, StoreRejected, StoreUnavailable
from chat.ports import ClaimedMessage, ModelReply, TitleRequest

URL, KEY = "http://supabase.test", "service-role-key"
CLAIM = ClaimedMessage("m-1", "c-1", "u-1", 1, "t-1", "2026-12-06T00:00:00Z", None, None, [])
REPLY = ModelReply("Echo: hi", "fake-model", 3, 2)
Answer = tuple[int, bytes] | BaseException


class ScriptedSession:
    """Stands in for LoopSession and its aiohttp session: each post gets the next answer."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    def get(self) -> ScriptedSession:
        return self

    def post(self, url: str, **options: Any) -> ScriptedResponse:
        self.requests.append({"url": url, **options})
        return ScriptedResponse(self.answers.pop(0))


class ScriptedResponse:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    async def __aenter__(self) -> ScriptedResponse:
        if isinstance(self.answer, BaseException):
            raise self.answer
        self.status = self.answer[0]
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self) -> bytes:
        assert not isinstance(self.answer, BaseException)
        return self.answer[1]


def store(*answers: Answer) -> tuple[PostgrestReplyStore, ScriptedSession]:
    session = ScriptedSession(*answers)
    return PostgrestReplyStore(URL, KEY, session), session  # type: ignore[arg-type]


def refusal(status: int, code: str, message: str = "refused") -> tuple[int, bytes]:
    return status, json.dumps({"code": code, "message": message, "details": None, "hint": None}).encode()


@pytest.mark.parametrize(
    ("answer", "reads"),
    [
        pytest.param(refusal(503, "PGRST000"), r"Supabase failed during claim_message_for_reply \(PGRST000\)", id="PGRST000"),
        pytest.param(refusal(503, "PGRST001"), r"\(PGRST001\)", id="PGRST001"),
        pytest.param(refusal(504, "PGRST003"), r"\(PGRST003\)", id="PGRST003 pool timeout"),
        pytest.param(refusal(500, "40P01"), r"\(40P01\)", id="deadlock"),
        pytest.param(refusal(503, "57P01"), r"\(57P01\)", id="admin shutdown"),
        pytest.param((502, b"<html>Bad Gateway</html>"), r"\(502\)", id="502 page"),
        pytest.param((503, b""), r"\(503\)", id="503 empty"),
        pytest.param((504, b"upstream timed out"), r"\(504\)", id="504 page"),
        pytest.param(asyncio.TimeoutError(), r"unreachable during claim_message_for_reply: TimeoutError", id="timeout"),
        pytest.param(aiohttp.ConnectionTimeoutError(), r"unreachable .*: ConnectionTimeoutError", id="connect timeout"),
        pytest.param(aiohttp.ClientConnectionError("refused"), r"unreachable .*: ClientConnectionError", id="refused"),
        pytest.param(aiohttp.ServerDisconnectedError(), r"unreachable .*: ServerDisconnectedError", id="disconnected"),
        pytest.param(aiohttp.ClientPayloadError("cut"), r"unreachable .*: ClientPayloadError", id="body cut short"),
    ],
)
def test_no_answer_or_an_overloaded_store_is_store_unavailable(answer: Answer, reads: str) -> None:
    replies, _ = store(answer)
    with pytest.raises(StoreUnavailable, match=reads):
        asyncio.run(replies.claim_message_for_reply("m-1", 60, 5, 6000, 200, "t-1"))


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(httpx.ConnectError("refused"), id="httpx"),
        pytest.param(aiohttp.ClientConnectionError("refused"), id="aiohttp"),
        pytest.param(asyncio.TimeoutError(), id="asyncio timeout"),
    ],
)
def test_a_lost_answer_reads_alike_whichever_client_lost_it(error: Exception) -> None:
    named = store_error(error, "reply_tick")  # type: ignore[arg-type]
    assert isinstance(named, StoreUnavailable)
    assert str(named) == f"Supabase unreachable during reply_tick: {type(error).__name__}"


@pytest.mark.parametrize(
    ("answer", "reads"),
    [
        pytest.param(refusal(404, "PGRST202", "no such function"), r"Supabase refused reply_tick \(PGRST202\)", id="PGRST202"),
        pytest.param((200, b"<html>hello</html>"), r"Supabase refused reply_tick \(200\)", id="not JSON"),
        pytest.param((500, b"oops"), r"Supabase refused reply_tick \(500\)", id="500 without a body"),
    ],
)
def test_a_refusal_no_retry_fixes_is_store_rejected(answer: Answer, reads: str) -> None:
    replies, _ = store(answer)
    with pytest.raises(StoreRejected, match=reads):
        asyncio.run(replies.reply_tick([], [], 60))


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        pytest.param(
            lambda s: s.complete_message_for_reply(CLAIM, REPLY),
            {"status": "processing", "reply_id": None, "conversation_id": "c-1", "next_message_id": None},
            id="complete: another attempt holds it",
        ),
        pytest.param(
            lambda s: s.complete_message_for_reply(CLAIM, REPLY),
            {"status": "failed", "reply_id": None, "conversation_id": "c-1", "next_message_id": None},
            id="complete: it failed",
        ),
        pytest.param(lambda s: s.begin_reply(CLAIM, "E"), None, id="begin"),
        pytest.param(
            lambda s: s.finish_reply(CLAIM, "Echo", "stopped", None, None),
            {"status": "processing", "reply_id": "r-1", "content": "B", "conversation_id": "c-1", "superseded": True},
            id="finish",
        ),
        pytest.param(
            lambda s: s.finish_reply(CLAIM, "Echo", "done", None, REPLY),
            {"status": "failed", "reply_id": None, "conversation_id": "c-1", "next_message_id": None},
            id="finish done: no reply stored",
        ),
    ],
)
def test_a_stale_claim_is_claim_superseded(call: Any, answer: Any) -> None:
    replies, _ = store((200, json.dumps(answer).encode()))
    with pytest.raises(ClaimSuperseded):
        asyncio.run(call(replies))


def test_an_empty_answer_is_none() -> None:
    replies, _ = store((204, b""), (200, b"null"))
    assert asyncio.run(replies.complete_message_for_reply(CLAIM, REPLY)) is None
    assert asyncio.run(replies.claim_message_for_reply("m-1", 60, 5, 6000, 200)) is None


def test_the_request_is_the_one_supabase_py_sends() -> None:
    """Same URL, the same headers that matter to PostgREST and Supabase's gateway, the same body."""
    params = {"message_ids": ["m-1"]}
    sent: list[httpx.Request] = []

    def supabase(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=[])

    service_client(URL, KEY, httpx.Client(transport=httpx.MockTransport(supabase))).rpc("settled_messages", params).execute()
    replies, session = store((200, b"[]"))

    asyncio.run(replies._rpc("settled_messages", params))

    [theirs], [ours] = sent, session.requests
    assert ours["url"] == str(theirs.url)
    assert ours["json"] == json.loads(theirs.content) and theirs.headers["content-type"] == "application/json"
    wanted = {name: theirs.headers[name] for name in ("apikey", "authorization", "accept-profile", "content-profile")}
    assert {name.lower(): value for name, value in ours["headers"].items()} == wanted
    assert ours["timeout"] == aiohttp.ClientTimeout(total=10.0)


def test_title_calls_send_the_sql_functions_arguments_and_read_their_answers() -> None:
    claimed = {"user_id": "u-1", "model": None, "messages": [{"role": "user", "content": "hi"}]}
    replies, session = store((200, json.dumps(claimed).encode()), (200, b"null"), (200, b"true"))
    request = asyncio.run(replies.claim_conversation_title("c-1"))
    assert request == TitleRequest("u-1", None, [{"role": "user", "content": "hi"}])
    assert asyncio.run(replies.claim_conversation_title("c-1")) is None  # nothing to title
    assert asyncio.run(replies.set_conversation_title("c-1", "Greetings", 42)) is True
    assert [(r["url"].rsplit("/", 1)[1], r["json"]) for r in session.requests] == [
        ("claim_conversation_title", {"conversation_id": "c-1"}),
        ("claim_conversation_title", {"conversation_id": "c-1"}),
        ("set_conversation_title", {"conversation_id": "c-1", "title": "Greetings", "tokens": 42}),
    ]
