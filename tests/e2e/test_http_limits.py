"""HTTP-level limits of the service under gunicorn, seen from a raw socket: a refused body closes
the connection and says so, a chunked body over the limit is 413 like a declared one, a body
that trickles in is cut with 408, and the 32,000-character contract fits in any script."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.service_process import ServiceProcess
from devstack.stack import LocalStack
from tests.support.processes import start_service
from tests.support.users import SignedUpUser

BODY_TIMEOUT_SECONDS = 1.0
READ_DEADLINE_SECONDS = 4.0  # well under gunicorn's own 5 s drain, so a drained close cannot pass


@pytest.fixture(scope="module")
def guarded_service(stack: LocalStack, state_dir: Path) -> Iterator[ServiceProcess]:
    running = start_service(stack, state_dir, REQUEST_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_SECONDS))
    yield running
    running.stop()


def exchange(url: str, head: bytes, body_parts: list[bytes], pause: float = 0.0) -> tuple[bytes, bool]:
    """Send the request (pausing between body parts, as a slow client would), read until the
    server closes. Returns what came back and whether the server closed within the deadline."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.settimeout(READ_DEADLINE_SECONDS)

        def send() -> None:
            try:
                conn.sendall(head)
                for part in body_parts:
                    conn.sendall(part)
                    time.sleep(pause)  # the slow client itself, not a wait for the server
            except OSError:
                pass  # the server closed on us: what some tests expect

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            pass
        return received, True


def request_head(path: str, token: str, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


def chunked(body: bytes, size: int = 8192) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)] + [b"0\r\n\r\n"]


def status_and_headers(received: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body else {}


def test_declared_oversize_body_is_413_and_the_connection_closes(
    guarded_service: ServiceProcess, alice: SignedUpUser
) -> None:
    head = request_head(f"/api/chat/{uuid.uuid4()}", alice.access_token, "Content-Length: 2000000\r\n")
    received, closed = exchange(guarded_service.url, head, [b'{"message": "' + b"x" * 1000])
    status, headers, body = status_and_headers(received)
    assert (status, headers["connection"], body["error"]["code"]) == (413, "close", "request_entity_too_large")
    assert closed


@pytest.mark.parametrize("path", ["/api/chat/{id}", "/webhooks/messages"])
def test_chunked_oversize_body_is_413_not_400(guarded_service: ServiceProcess, alice: SignedUpUser, path: str) -> None:
    head = request_head(path.format(id=uuid.uuid4()), alice.access_token, "Transfer-Encoding: chunked\r\n")
    body = b'{"message": "' + b"x" * 600_000 + b'"}'
    received, closed = exchange(guarded_service.url, head, chunked(body))
    status, headers, answer = status_and_headers(received)
    assert (status, headers["connection"], answer["error"]["code"]) == (413, "close", "request_entity_too_large")
    assert closed


def test_chunked_body_within_the_limit_is_read_whole(guarded_service: ServiceProcess, alice: SignedUpUser) -> None:
    head = request_head(f"/api/chat/{uuid.uuid4()}", alice.access_token, "Transfer-Encoding: chunked\r\n")
    received, _ = exchange(guarded_service.url, head, chunked(json.dumps({"message": "hi"}).encode(), size=3))
    status, _, answer = status_and_headers(received)
    assert (status, answer["error"]["code"]) == (404, "not_found")  # parsed, then: no such conversation


def test_a_trickling_body_is_cut_with_408(guarded_service: ServiceProcess, alice: SignedUpUser) -> None:
    body = b'{"message": "slow"}'
    head = request_head(f"/api/chat/{uuid.uuid4()}", alice.access_token, f"Content-Length: {len(body)}\r\n")
    started = time.monotonic()
    received, closed = exchange(guarded_service.url, head, [bytes([b]) for b in body], pause=0.3)
    status, headers, answer = status_and_headers(received)
    assert (status, headers["connection"], answer["error"]["code"]) == (408, "close", "request_timeout")
    assert closed and time.monotonic() - started < READ_DEADLINE_SECONDS


def test_the_largest_message_the_contract_allows_is_accepted(live_service: ServiceProcess, alice: SignedUpUser) -> None:
    """The largest body: 32,000 emoji, JSON-escaped as surrogate pairs, through gunicorn and into a
    row; 32,000 CJK characters, escaped or UTF-8, fit the door's body limit in unit/test_doors.py
    (test_the_largest_message_the_contract_allows_fits_the_body_limit, which runs the emoji too)."""
    text = "\U0001F600" * 32000
    api = alice.api(live_service.url)
    conversation = api.post("/api/conversations", json={}).json()["id"]
    body = json.dumps({"message": text}, ensure_ascii=True).encode()
    response = api.post(f"/api/chat/{conversation}", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["response"] == f"Echo: {text}"
