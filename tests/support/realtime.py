"""Realtime subscribers for the tests, each a real client: supabase-js under Node (a frontend),
the Python `realtime` package (what supabase-py uses), and a raw socket where the exact frame
is the point. All of them record what arrives and let a test wait for it with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from realtime import AsyncRealtimeChannel, AsyncRealtimeClient, RealtimeSubscribeStates
from websockets.sync.client import ClientConnection, connect

from devstack.stack import LocalStack

NODE_DIR = Path(__file__).resolve().parent / "realtime_js"
PASSWORD = "correct horse battery"
Event = dict[str, Any]


# ----------------------------------------------------------------------------- users and rows

@dataclass
class ChatUser:
    """A user signed up through the gateway's Auth, who owns one conversation."""

    user_id: str
    email: str
    access_token: str
    conversation_id: str


def chat_user(stack: LocalStack, db: psycopg.Connection) -> ChatUser:
    assert stack.keys is not None
    email = f"{uuid.uuid4()}@example.test"
    response = httpx.post(
        f"{stack.api_url}/auth/v1/signup", headers={"apikey": stack.keys.api_key("anon")},
        json={"email": email, "password": PASSWORD},
    )
    response.raise_for_status()
    session = response.json()
    user_id = session["user"]["id"]
    row = db.execute(
        "insert into public.conversations (user_id, title) values (%s, 'realtime') returning id", (user_id,)
    ).fetchone()
    assert row is not None
    return ChatUser(user_id, email, session["access_token"], str(row[0]))


def insert_message(db: psycopg.Connection, user: ChatUser, content: str = "hello") -> str:
    """A user message written straight in SQL, as from the SQL editor or psql."""
    row = db.execute(
        "insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s) returning id",
        (user.conversation_id, user.user_id, content),
    ).fetchone()
    assert row is not None
    return str(row[0])


def await_event(events: queue.Queue[Event], seen: list[Event], predicate: Callable[[Event], bool],
                deadline_seconds: float, what: str) -> Event:
    for event in seen:
        if predicate(event):
            return event
    deadline = time.monotonic() + deadline_seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {what} within {deadline_seconds} s; received: {json.dumps(seen, default=str)[-3000:]}")
        try:
            event = events.get(timeout=remaining)
        except queue.Empty:
            continue
        seen.append(event)
        if predicate(event):
            return event


def quiet_for(events: queue.Queue[Event], seen: list[Event], predicate: Callable[[Event], bool],
              marker: Callable[[Event], bool], deadline_seconds: float = 10.0) -> None:
    """Assert nothing matching `predicate` arrived before `marker` did. The marker is an event sent
    after the one that must not arrive, on the same path, so no fixed wait is needed."""
    await_event(events, seen, marker, deadline_seconds, "marker event")
    offending = [event for event in seen if predicate(event)]
    assert not offending, f"received what must not arrive: {offending}"


# ----------------------------------------------------------------------------- supabase-js (Node)

def node_or_skip(package_dir: Path = NODE_DIR, what: str = "supabase-js") -> str:
    """The node binary, with `package_dir`'s packages (supabase-js and ws by default) installed
    from its lockfile. Without node the test skips, except on CI (CI is set), where it must run."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        message = f"node and npm are needed to drive {what} (install Node 20 or newer)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run these tests")
        pytest.skip(message)
    installed = package_dir / "node_modules" / ".package-lock.json"
    lockfile = package_dir / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lockfile.stat().st_mtime:
        installed_now = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=package_dir,
                                       capture_output=True, text=True, timeout=300, check=False)
        if installed_now.returncode != 0:
            pytest.fail(f"`npm ci` in {package_dir} failed (is the npm registry reachable?): {installed_now.stderr[-2000:]}")
    return node


class NodeFrontend:
    """tests/realtime_js/frontend.mjs: supabase-js signed in (or given a token) and subscribed."""

    def __init__(self, node: str, plan: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [node, "frontend.mjs", json.dumps(plan)], cwd=NODE_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self.events: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def expect(self, predicate: Callable[[Event], bool], what: str, deadline_seconds: float = 15.0) -> Event:
        try:
            return await_event(self.events, self.seen, predicate, deadline_seconds, what)
        except AssertionError:
            if self.process.poll() is not None and self.process.stderr is not None:
                raise AssertionError(f"node exited: {self.process.stderr.read()[-2000:]}") from None
            raise

    def subscribed(self, channel: str) -> Event:
        return self.expect(lambda e: e["type"] == "status" and e["channel"] == channel and e["status"] == "SUBSCRIBED",
                           f"SUBSCRIBED on {channel}")

    def command(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.command(cmd="exit")
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def frontend_plan(stack: LocalStack, user: ChatUser | None, channels: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    assert stack.keys is not None
    plan: dict[str, Any] = {"url": stack.api_url, "anonKey": stack.keys.api_key("anon"), "channels": channels, **extra}
    if user is not None:
        plan.update(email=user.email, password=PASSWORD)
    return plan


# ----------------------------------------------------------------------------- the Python client

class PythonSubscriber:
    """The `realtime` package's AsyncRealtimeClient on its own event loop thread, so tests stay
    synchronous; every callback lands in `events`."""

    def __init__(self, realtime_url: str, api_key: str, access_token: str | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.events: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []
        self.channels: dict[str, AsyncRealtimeChannel] = {}
        self.client: AsyncRealtimeClient = self.run(self._connect(realtime_url, api_key, access_token))

    async def _connect(self, url: str, api_key: str, access_token: str | None) -> AsyncRealtimeClient:
        client = AsyncRealtimeClient(url, token=api_key, initial_backoff=0.2, max_retries=50)
        await client.connect()
        if access_token:
            await client.set_auth(access_token)
        return client

    def run(self, coroutine: Any, timeout: float = 20.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def subscribe(self, name: str, *, postgres: list[dict[str, Any]] = (), broadcast: list[str] = (),  # type: ignore[assignment]
                  config: dict[str, Any] | None = None, presence: bool = False) -> None:
        async def go() -> None:
            channel = self.client.channel(name, {"config": config or {}})
            for binding in postgres:
                channel.on_postgres_changes(
                    binding["event"], table=binding.get("table"), schema=binding.get("schema"),
                    filter=binding.get("filter"),
                    callback=lambda p, n=name: self.events.put({"type": "postgres", "channel": n, "payload": p}),
                )
            for event in broadcast:
                channel.on_broadcast(event, lambda p, n=name: self.events.put({"type": "broadcast", "channel": n, "payload": p}))
            if presence:
                channel.on_presence_sync(lambda n=name, c=channel: self.events.put(
                    {"type": "presence_sync", "channel": n, "state": c.presence_state()}))
            channel.on_system(lambda p, n=name: self.events.put({"type": "system", "channel": n, "payload": dict(p)}))
            self.channels[name] = channel
            await channel.subscribe(lambda status, error, n=name: self.events.put(
                {"type": "status", "channel": n, "error": str(error) if error else None,
                 "status": status.value if isinstance(status, RealtimeSubscribeStates) else status}))
        self.run(go())

    def expect(self, predicate: Callable[[Event], bool], what: str, deadline_seconds: float = 15.0) -> Event:
        return await_event(self.events, self.seen, predicate, deadline_seconds, what)

    def subscribed(self, channel: str) -> Event:
        return self.expect(lambda e: e["type"] == "status" and e["channel"] == channel and e["status"] == "SUBSCRIBED",
                           f"SUBSCRIBED on {channel}")

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the server may have dropped the socket already
            self.run(self.client.close(), timeout=5)
        self.run(_cancel_other_tasks(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def _cancel_other_tasks() -> None:
    """The client leaves push timeouts pending; end them so the loop stops cleanly."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


# ----------------------------------------------------------------------------- a raw socket

class RawSocket:
    """The protocol itself, for what the clients hide: exact frames, binary kinds, refusals."""

    def __init__(self, realtime_url: str, api_key: str, vsn: str = "2.0.0") -> None:
        self.vsn = vsn
        self.ws: ClientConnection = connect(f"{realtime_url}/websocket?apikey={api_key}&vsn={vsn}", open_timeout=10)
        self.received: list[Any] = []
        self._ref = 0

    def next_ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    def push(self, topic: str, event: str, payload: dict[str, Any], join_ref: str | None = None) -> str:
        ref = self.next_ref()
        if self.vsn == "2.0.0":
            self.ws.send(json.dumps([join_ref, ref, topic, event, payload]))
        else:
            self.ws.send(json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}))
        return ref

    def send_raw(self, data: str | bytes) -> None:
        self.ws.send(data)

    def expect(self, predicate: Callable[[Any], bool], what: str, deadline_seconds: float = 10.0) -> Any:
        for frame in self.received:
            if predicate(frame):
                return frame
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            try:
                raw = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            frame = raw if isinstance(raw, bytes) else json.loads(raw)
            self.received.append(frame)
            if predicate(frame):
                return frame
        raise AssertionError(f"no {what} within {deadline_seconds} s; received {self.received[-20:]!r}")

    def join(self, topic: str, config: dict[str, Any], access_token: str | None = None) -> tuple[str, Any]:
        payload: dict[str, Any] = {"config": config}
        if access_token:
            payload["access_token"] = access_token
        join_ref = self.next_ref()
        ref = join_ref
        self.ws.send(json.dumps([join_ref, ref, f"realtime:{topic}", "phx_join", payload]) if self.vsn == "2.0.0" else
                     json.dumps({"topic": f"realtime:{topic}", "event": "phx_join", "payload": payload, "ref": ref,
                                 "join_ref": join_ref}))
        reply = self.expect(lambda f: _field(f, "event") == "phx_reply" and _field(f, "ref") == ref, "join reply")
        return join_ref, reply

    def close(self) -> None:
        self.ws.close()


def _field(frame: Any, name: str) -> Any:
    if isinstance(frame, bytes):
        return None
    if isinstance(frame, list):
        return dict(zip(("join_ref", "ref", "topic", "event", "payload"), frame, strict=True))[name]
    return frame.get(name)


field_of = _field


@dataclass
class Subscribers:
    """Every subscriber a test opened, closed at its end."""

    opened: list[Any]

    def add(self, subscriber: Any) -> Any:
        self.opened.append(subscriber)
        return subscriber


def closing() -> Iterator[Subscribers]:
    subscribers = Subscribers([])
    try:
        yield subscribers
    finally:
        for subscriber in reversed(subscribers.opened):
            subscriber.close()


# ----------------------------------------------------------------------------- shorthands the tests share

def python_subscriber(stack: LocalStack, clients: Subscribers, token: str | None) -> PythonSubscriber:
    """A Python client on the stack's Realtime, closed at the end of the test."""
    assert stack.keys is not None
    return clients.add(PythonSubscriber(stack.realtime_url, stack.keys.api_key("anon"), token))


def node_frontend(node: str, clients: Subscribers, plan: dict[str, Any]) -> NodeFrontend:
    """A supabase-js frontend, closed at the end of the test."""
    return clients.add(NodeFrontend(node, plan))


def python_change(event: Event, type_: str | None = None) -> dict[str, Any] | None:
    """The `data` of a postgres_changes event the Python client delivered, of that type."""
    if event["type"] != "postgres" or (type_ and event["payload"]["data"]["type"] != type_):
        return None
    return dict(event["payload"]["data"])


def js_change(event: Event, type_: str, **record: Any) -> bool:
    """Whether supabase-js delivered a change of that type whose row has these values."""
    if event["type"] != "postgres" or event["payload"]["eventType"] != type_:
        return False
    row = event["payload"]["new"] if type_ != "DELETE" else event["payload"]["old"]
    return all(row.get(key) == value for key, value in record.items())
