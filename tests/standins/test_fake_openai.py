"""Tests for the fake OpenAI server, driven over real HTTP with the real ``openai`` SDK.

Why over HTTP: the fake is only useful if the SDK the service uses accepts its
responses and maps its faults to the same exceptions as the real API does.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.types import Receive, Scope, Send

from devstack.fake_openai import (
    FakeModelState,
    create_fake_openai,
    estimate_tokens,
    latency_ms_from_env,
)
from devstack.serving import RunningServer, serve_in_thread

USER_TEXT = "hello fake world"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """One fake server per module: starting uvicorn per test would dominate runtime."""
    running = serve_in_thread(create_fake_openai(FakeModelState(default_latency_ms=0)))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def _control_client(server: RunningServer) -> Iterator[httpx.Client]:
    """Control-API client shared by the module (building clients costs ~20 ms each)."""
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield client


@pytest.fixture(scope="module")
def _sdk_client(server: RunningServer) -> Iterator[openai.OpenAI]:
    """The real SDK pointed at the fake, without retries so faults surface directly."""
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="test", max_retries=0, timeout=5.0)
    yield sdk
    sdk.close()


@pytest.fixture
def control(_control_client: httpx.Client) -> httpx.Client:
    """Control-API client; resetting first isolates each test from the previous one."""
    _control_client.post("/_fake/reset").raise_for_status()
    return _control_client


@pytest.fixture
def client(_sdk_client: openai.OpenAI, control: httpx.Client) -> openai.OpenAI:
    """SDK client for a test that starts from a freshly reset fake."""
    return _sdk_client


def ask(client: openai.OpenAI, text: str = USER_TEXT, **kwargs: Any) -> Any:
    """Send a one-turn chat with a system prompt (so prompt usage covers two messages)."""
    return client.chat.completions.create(
        model=kwargs.pop("model", "gpt-4o-mini"),
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
        **kwargs,
    )


def add_faults(control: httpx.Client, *faults: dict[str, Any], match: str | None = None) -> None:
    """Queue faults through the control API."""
    body: dict[str, Any] = {"faults": list(faults)}
    if match is not None:
        body["match"] = match
    control.post("/_fake/faults", json=body).raise_for_status()


def recorded(control: httpx.Client, **params: str) -> list[dict[str, Any]]:
    """Recorded completion requests, in arrival order."""
    response = control.get("/_fake/requests", params=params)
    response.raise_for_status()
    return list(response.json()["requests"])


# --------------------------------------------------------------------------- happy path


def test_json_reply_echoes_last_user_message_with_usage(client: openai.OpenAI) -> None:
    completion = ask(client)

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == f"Echo: {USER_TEXT}"
    assert choice.finish_reason == "stop"
    prompt = estimate_tokens("be brief") + estimate_tokens(USER_TEXT)
    reply = estimate_tokens(f"Echo: {USER_TEXT}")
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt, reply)
    assert completion.usage.total_tokens == prompt + reply


def test_reply_uses_last_user_message_and_handles_none(client: openai.OpenAI) -> None:
    multi = client.chat.completions.create(
        model="fake-model",
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "Echo: first"},
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": "ignored"},
        ],
    )
    no_user = client.chat.completions.create(model="fake-model", messages=[{"role": "system", "content": "x"}])

    assert multi.choices[0].message.content == "Echo: second"
    assert no_user.choices[0].message.content == "Echo: "


def test_model_is_echoed(client: openai.OpenAI) -> None:
    assert ask(client, model="any-model-name-at-all").model == "any-model-name-at-all"


def test_streaming_assembles_to_same_text_with_usage(client: openai.OpenAI) -> None:
    expected = ask(client)
    chunks = list(ask(client, stream=True, stream_options={"include_usage": True}))

    content_chunks = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text == expected.choices[0].message.content
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    assert len(content_chunks) > 2  # role chunk, several content pieces, finish chunk
    assert content_chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == expected.usage


def test_streaming_without_include_usage_sends_no_usage(client: openai.OpenAI) -> None:
    chunks = list(ask(client, stream=True))

    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_models_lists_fake_model(client: openai.OpenAI) -> None:
    assert "fake-model" in [model.id for model in client.models.list()]


# --------------------------------------------------------------------------- faults


def test_rate_limit_fault_sets_retry_after(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "rate_limit", "retry_after": 0.1})

    with pytest.raises(openai.RateLimitError) as caught:
        ask(client)

    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.type == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "0.1"
    assert caught.value.response.headers["retry-after-ms"] == "100"


def test_server_error_fault(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "server_error"})

    with pytest.raises(openai.InternalServerError) as caught:
        ask(client)

    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"


def test_hang_fault_times_out_client(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "hang", "seconds": 30})

    with pytest.raises(openai.APITimeoutError):
        ask(client.with_options(timeout=0.3))

    assert [r["outcome"] for r in recorded(control)] == ["hang"]


def test_short_hang_then_answers_normally(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "hang", "seconds": 0.1})

    started = time.monotonic()
    completion = ask(client)

    assert time.monotonic() - started >= 0.1
    assert completion.choices[0].message.content == f"Echo: {USER_TEXT}"


def test_insufficient_quota_fault_has_no_retry_after(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "insufficient_quota"})

    with pytest.raises(openai.RateLimitError) as caught:
        ask(client)

    assert caught.value.code == "insufficient_quota"
    assert caught.value.type == "insufficient_quota"
    assert "retry-after" not in caught.value.response.headers
    assert "retry-after-ms" not in caught.value.response.headers


def test_bad_request_fault(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "bad_request"})

    with pytest.raises(openai.BadRequestError) as caught:
        ask(client)

    assert caught.value.type == "invalid_request_error"


def test_faults_are_consumed_once_in_fifo_order(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "server_error"}, {"kind": "bad_request"})

    with pytest.raises(openai.InternalServerError):
        ask(client)
    with pytest.raises(openai.BadRequestError):
        ask(client)
    assert ask(client).choices[0].message.content == f"Echo: {USER_TEXT}"
    assert [r["outcome"] for r in recorded(control)] == ["server_error", "bad_request", "ok"]


def test_fault_applies_to_streaming_requests(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "server_error"})

    with pytest.raises(openai.InternalServerError):
        ask(client, stream=True)


def test_match_targets_only_matching_requests(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "rate_limit", "retry_after": 1}, match="boom")

    assert ask(client, "innocent").choices[0].message.content == "Echo: innocent"
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, "please boom now")
    assert ask(client, "boom again").choices[0].message.content == "Echo: boom again"

    assert caught.value.response.headers["retry-after"] == "1"
    assert [r["outcome"] for r in recorded(control)] == ["ok", "rate_limit", "ok"]
    assert [r["outcome"] for r in recorded(control, match="boom")] == ["rate_limit", "ok"]


def test_unmatched_fault_waits_behind_matching_request(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "server_error", "match": "target"}, {"kind": "bad_request"})

    with pytest.raises(openai.BadRequestError):
        ask(client, "other")  # skips the targeted fault, consumes the untargeted one
    with pytest.raises(openai.InternalServerError):
        ask(client, "the target")

    assert control.get("/_fake/faults").json() == {"faults": []}


def test_unknown_fault_kind_is_rejected(control: httpx.Client) -> None:
    response = control.post("/_fake/faults", json={"faults": [{"kind": "meteor"}]})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# --------------------------------------------------------------------------- recording, latency, reset


def test_requests_are_recorded_in_order(client: openai.OpenAI, control: httpx.Client) -> None:
    ask(client, "one")
    ask(client, "two", stream=True)
    ask(client, "three", model="fake-model")

    entries = recorded(control)
    assert len(entries) == 3
    assert [e["messages"][-1]["content"] for e in entries] == ["one", "two", "three"]
    assert [e["stream"] for e in entries] == [False, True, False]
    assert [e["model"] for e in entries] == ["gpt-4o-mini", "gpt-4o-mini", "fake-model"]
    assert entries[0]["received_at"] <= entries[1]["received_at"] <= entries[2]["received_at"]
    assert [e["messages"][-1]["content"] for e in recorded(control, match="t")] == ["two", "three"]


def test_latency_is_applied(client: openai.OpenAI, control: httpx.Client) -> None:
    control.post("/_fake/config", json={"latency_ms": 200}).raise_for_status()

    started = time.monotonic()
    ask(client)
    elapsed = time.monotonic() - started

    assert elapsed >= 0.2
    assert control.get("/_fake/config").json()["latency_ms"] == 200


def test_reset_clears_faults_requests_and_latency(client: openai.OpenAI, control: httpx.Client) -> None:
    control.post("/_fake/config", json={"latency_ms": 5000}).raise_for_status()
    add_faults(control, {"kind": "server_error"})
    control.post("/_fake/reset").raise_for_status()

    assert recorded(control) == []
    assert ask(client).choices[0].message.content == f"Echo: {USER_TEXT}"
    assert control.get("/_fake/config").json()["latency_ms"] == 0


async def _raw_completion(port: int) -> bytes:
    """One bare HTTP/1.1 request over asyncio streams; returns the status code.

    Why not httpx: its connection pool is itself slow with hundreds of concurrent
    connections, which would measure the client instead of the fake server.
    """
    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + body)
    response = await reader.read()
    writer.close()
    return response.split(b" ", 2)[1]


def test_concurrent_requests_overlap_their_latency(server: RunningServer, control: httpx.Client) -> None:
    """500 requests x 300 ms must run concurrently (serially they would take 150 s)."""
    control.post("/_fake/config", json={"latency_ms": 300}).raise_for_status()

    async def burst() -> list[bytes]:
        return list(await asyncio.gather(*(_raw_completion(server.port) for _ in range(500))))

    started = time.monotonic()
    statuses = asyncio.run(burst())
    elapsed = time.monotonic() - started

    assert statuses == [b"200"] * 500
    assert 0.3 <= elapsed < 2.5
    assert len(recorded(control)) == 500


# --------------------------------------------------------------------------- validation and auth


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "fake-model"}, "messages"),
        ({"model": "fake-model", "messages": "hi"}, "messages"),
        ({"model": "fake-model", "messages": []}, "messages"),
        ({"model": "fake-model", "messages": [{"content": "no role"}]}, "messages.[0].role"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": 42, "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
    ],
)
def test_invalid_body_is_rejected_with_openai_error(
    server: RunningServer, control: httpx.Client, body: dict[str, Any], param: str
) -> None:
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer t"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}
    assert [r["outcome"] for r in recorded(control)] == ["invalid_request"]


def test_malformed_json_is_rejected(server: RunningServer, control: httpx.Client) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_missing_auth_is_401(server: RunningServer, control: httpx.Client) -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert [r["outcome"] for r in recorded(control)] == ["unauthorized"]


def test_sdk_maps_401_to_authentication_error(server: RunningServer, control: httpx.Client) -> None:
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="test", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"Authorization": ""},
        )
    sdk.close()


# --------------------------------------------------------------------------- state and helpers


def test_state_reset_restores_default_latency() -> None:
    state = FakeModelState(default_latency_ms=50)
    state.set_latency_ms(0)
    state.reset()

    assert state.latency_ms == 50


def test_latency_from_env() -> None:
    assert latency_ms_from_env({}) == 0
    assert latency_ms_from_env({"FAKE_OPENAI_LATENCY_MS": "250"}) == 250
    with pytest.raises(ValueError, match="FAKE_OPENAI_LATENCY_MS"):
        latency_ms_from_env({"FAKE_OPENAI_LATENCY_MS": "-1"})


async def _hello_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Minimal raw ASGI app, proving ``serve_in_thread`` is not tied to Starlette."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def test_serve_in_thread_runs_any_asgi_app_and_stops() -> None:
    running = serve_in_thread(_hello_app, lifespan="off")
    with running:
        assert running.port > 0
        assert httpx.get(running.url).text == "hello"

    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", running.port), timeout=1.0):
        pass


# --------------------------------------------------------------------------- streaming pace


LONG_TEXT = " ".join(f"word{index}" for index in range(20))


def test_stream_waits_for_the_first_token_then_keeps_its_pace(client: openai.OpenAI, control: httpx.Client) -> None:
    control.post("/_fake/config", json={"latency_ms": 150, "tokens_per_second": 100}).raise_for_status()

    started = time.monotonic()
    arrivals: list[float] = []
    text = ""
    for chunk in ask(client, LONG_TEXT, stream=True):
        piece = chunk.choices[0].delta.content if chunk.choices else None
        if piece:
            arrivals.append(time.monotonic() - started)
            text += piece

    pieces = len(arrivals)
    assert text == f"Echo: {LONG_TEXT}"
    assert pieces == 21  # "Echo: " and 20 words
    assert arrivals[0] >= 0.15  # never earlier than the time to first token
    # Never faster than the pace, counted from the start: a client that reads its first piece late
    # (a busy machine) finds the next ones already sent, so gaps between arrivals prove nothing.
    assert arrivals[-1] >= 0.15 + (pieces - 1) / 100 - 0.005
    entry = recorded(control)[0]
    assert (entry["tokens_sent"], entry["stream_end"]) == (21, "complete")
    assert control.get("/_fake/config").json()["tokens_per_second"] == 100


def test_a_client_that_closes_the_stream_is_counted_where_it_stopped(
    client: openai.OpenAI, control: httpx.Client
) -> None:
    control.post("/_fake/config", json={"tokens_per_second": 20}).raise_for_status()

    stream = ask(client, LONG_TEXT, stream=True)
    received = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
            if received == 3:
                break
    stream.close()
    closed_at = time.time()

    entry = wait_for_stream_end(control)
    assert entry["stream_end"] == "client_closed"
    assert 3 <= entry["tokens_sent"] < 21
    assert entry["stream_ended_at"] >= closed_at - 0.2  # ended when the client left, not at the end


def test_stream_error_fault_breaks_off_after_some_tokens(client: openai.OpenAI, control: httpx.Client) -> None:
    add_faults(control, {"kind": "stream_error", "after_tokens": 2})

    pieces: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in ask(client, LONG_TEXT, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)

    assert pieces == ["Echo: ", "word0 "]
    assert "server had an error" in caught.value.message
    entry = recorded(control)[0]
    assert (entry["outcome"], entry["tokens_sent"], entry["stream_end"]) == ("stream_error", 2, "error")


def test_tokens_per_second_from_env() -> None:
    state = FakeModelState.from_env({"FAKE_OPENAI_TOKENS_PER_SECOND": "50", "FAKE_OPENAI_LATENCY_MS": "1000"})

    assert (state.latency_ms, state.tokens_per_second) == (1000, 50)
    with pytest.raises(ValueError, match="FAKE_OPENAI_TOKENS_PER_SECOND"):
        FakeModelState.from_env({"FAKE_OPENAI_TOKENS_PER_SECOND": "-1"})


def wait_for_stream_end(control: httpx.Client, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = recorded(control)[0]
        if entry["stream_end"] is not None:
            return entry
        time.sleep(0.01)
    raise AssertionError("the fake never saw the stream end")
