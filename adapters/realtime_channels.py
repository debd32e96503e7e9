"""Realtime Broadcast received (chat.ports.ReplyChannels): one WebSocket per process to Realtime,
as the service role, on the reply engine's loop, joined to the private channel `chat:<id>` of
each conversation an SSE request of this process follows. The request then hears a reply that
another process or instance generates as a browser does, instead of at the row's checkpoints.

Realtime's Phoenix protocol as its Python client speaks it (vsn 1.0.0, JSON object frames): a
`phx_join` per topic with the service-role key as access token (the service role bypasses the
channel's RLS policy, on Supabase as locally), `phx_leave` when a topic's last follower goes, a
`phoenix` heartbeat every 25 s (one unanswered by the next tick means a dead socket). A dropped
socket is opened again after a backoff (1, 2, 5, 10 s) and the followed topics joined again;
before a join is admitted, and while the socket is down, followers read the reply row instead,
so nothing is lost, only later.

The socket opens with the first follow, stays open while the process lives, and is not opened
again after a drop while nobody follows."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp

from adapters.http_session import LoopSession
from chat.logging import get_logger
from chat.ports import RunSoon
from chat.reply_feed import ReplyFeed, feed_event_of

logger = get_logger(__name__)

JOIN_CONFIG = {
    "broadcast": {"ack": False, "self": False},
    "presence": {"key": "", "enabled": False},
    "postgres_changes": [],
    "private": True,
}
HEARTBEAT_SECONDS = 25.0
BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0)
CONNECT_SECONDS = 10.0
CLOSE_TIMEOUT = aiohttp.ClientWSTimeout(ws_close=5.0)

Frame = dict[str, Any]


class _Topic:
    """A conversation's channel: its followers (counted under the lock, from door threads) and
    its join on the current socket (changed on the loop only)."""

    def __init__(self) -> None:
        self.followers = 0
        self.join_ref: str | None = None  # the join sent on the current socket, answered or not
        self.joined = False  # Realtime admitted that join (read by the followers' threads)


class RealtimeReplyChannels:
    def __init__(
        self,
        supabase_url: str,
        service_role_key: str,
        session: LoopSession,
        feed: ReplyFeed,
        call_soon: RunSoon,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        backoff_seconds: tuple[float, ...] = BACKOFF_SECONDS,
    ) -> None:
        base = supabase_url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        self.url = f"{base}/realtime/v1/websocket"
        self._params = {"apikey": service_role_key, "vsn": "1.0.0"}
        self._access_token = service_role_key
        self.session = session
        self.feed = feed
        self._call_soon = call_soon
        self.heartbeat_seconds = heartbeat_seconds
        self.backoff_seconds = backoff_seconds
        self._topics: dict[str, _Topic] = {}  # by Realtime topic, realtime:chat:<conversation_id>
        self._lock = threading.Lock()
        self._refs = itertools.count(1)
        # On the loop only:
        self._runner: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[Frame] | None = None  # frames for the socket that is up, if one is
        self._heartbeat_ref: str | None = None
        self._stopped = False
        self.connections = 0  # sockets opened so far

    # --- from the doors' threads ---------------------------------------------------------------

    @contextlib.contextmanager
    def follow(self, conversation_id: str) -> Iterator[_Topic]:
        name = f"realtime:chat:{conversation_id}"
        with self._lock:
            topic = self._topics.setdefault(name, _Topic())
            topic.followers += 1
        self._soon()
        try:
            yield topic
        finally:
            with self._lock:
                topic.followers -= 1
            self._soon()

    def _soon(self) -> None:
        with contextlib.suppress(RuntimeError):  # the engine's loop has closed: the process is ending
            self._call_soon(self._reconcile)

    # --- on the loop ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the socket and open no other (the engine's stop hook, before the session goes)."""
        self._stopped = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    def _reconcile(self) -> None:
        """Make the socket's joins match the followers: join what is followed, leave what is no
        longer; open the socket if something is followed and none is open."""
        if self._stopped:
            return
        with self._lock:
            for name, topic in list(self._topics.items()):
                if topic.followers and topic.join_ref is None:
                    self._join(name, topic)
                elif not topic.followers:
                    if topic.join_ref is not None:
                        self._send(name, "phx_leave", {}, join_ref=topic.join_ref)
                    del self._topics[name]
            followed = bool(self._topics)
        if followed and (self._runner is None or self._runner.done()):
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="reply-channels")

    def _join(self, name: str, topic: _Topic) -> None:
        if self._outbox is None:
            return  # joined when the socket opens
        ref = str(next(self._refs))
        topic.join_ref, topic.joined = ref, False
        payload = {"config": JOIN_CONFIG, "access_token": self._access_token}
        self._send(name, "phx_join", payload, join_ref=ref, ref=ref)

    def _send(self, topic: str, event: str, payload: dict[str, Any], join_ref: str | None = None, ref: str | None = None) -> str:
        ref = ref or str(next(self._refs))
        if self._outbox is not None:
            self._outbox.put_nowait({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref})
        return ref

    def _followed(self) -> bool:
        with self._lock:
            return any(topic.followers for topic in self._topics.values())

    async def _run(self) -> None:
        failures = 0
        while not self._stopped and self._followed():
            if await self._connect_and_serve():
                failures = 0
            if self._stopped or not self._followed():
                return
            await asyncio.sleep(self.backoff_seconds[min(failures, len(self.backoff_seconds) - 1)])
            failures += 1

    async def _connect_and_serve(self) -> bool:
        """One socket's life; False if it could not be opened."""
        try:
            ws = await asyncio.wait_for(
                self.session.get().ws_connect(self.url, params=self._params, timeout=CLOSE_TIMEOUT), CONNECT_SECONDS
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            # Not str(error): the handshake error names the URL, and the URL carries the key.
            logger.warning(
                "could not open the Realtime socket; SSE followers read the reply rows meanwhile",
                reason=type(error).__name__,
                status=getattr(error, "status", None),
            )
            return False
        self.connections += 1
        try:
            await self._serve(ws)
        finally:
            self._dropped()
            await ws.close()
        if not self._stopped:
            logger.warning("the Realtime socket closed; opening it again", close_code=ws.close_code)
        return True

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self._outbox = outbox = asyncio.Queue[Frame]()
        self._heartbeat_ref = None
        self._reconcile()  # every followed topic, joined on this socket
        helpers = [asyncio.create_task(self._write(ws, outbox)), asyncio.create_task(self._beat(ws))]
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._receive(message.data)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    break
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def _dropped(self) -> None:
        """The socket is gone and every join with it: followers fall back to the row until the
        topics are joined again on the next socket."""
        self._outbox = None
        with self._lock:
            for topic in self._topics.values():
                topic.join_ref, topic.joined = None, False

    async def _write(self, ws: aiohttp.ClientWebSocketResponse[bool], outbox: asyncio.Queue[Frame]) -> None:
        while True:
            frame = await outbox.get()
            try:
                await ws.send_str(json.dumps(frame, separators=(",", ":")))
            except (aiohttp.ClientError, ConnectionError):
                await ws.close()  # ends the reading loop: the socket is opened again
                return

    async def _beat(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            if self._heartbeat_ref is not None:
                logger.warning("Realtime did not answer a heartbeat; opening the socket again")
                await ws.close()
                return
            self._heartbeat_ref = self._send("phoenix", "heartbeat", {})

    def _receive(self, raw: str) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        topic, event, payload = frame.get("topic"), frame.get("event"), frame.get("payload")
        if event == "broadcast" and isinstance(payload, dict):
            routed = feed_event_of(payload.get("event"), payload.get("payload"))
            if routed is not None:
                self.feed.publish(*routed)
        elif event == "phx_reply" and isinstance(payload, dict):
            self._replied(topic, frame.get("ref"), payload)
        elif event in ("phx_close", "phx_error"):
            self._closed_by_server(topic, frame.get("join_ref"))

    def _replied(self, topic: object, ref: object, payload: dict[str, Any]) -> None:
        if topic == "phoenix":
            if ref == self._heartbeat_ref:
                self._heartbeat_ref = None
            return
        with self._lock:
            state = self._topics.get(topic) if isinstance(topic, str) else None
            if state is None or ref is None or ref != state.join_ref:
                return  # a leave's answer, or a join of a socket or follow that has gone
            if payload.get("status") == "ok":
                state.joined = True
                return
        # Not joined again until the topic is followed anew or the socket reopens: a refusal
        # would repeat. Its followers keep reading the row.
        logger.warning("Realtime refused to join a conversation's channel", topic=topic, response=payload.get("response"))

    def _closed_by_server(self, topic: object, join_ref: object) -> None:
        with self._lock:
            state = self._topics.get(topic) if isinstance(topic, str) else None
            if state is None or join_ref is None or join_ref != state.join_ref:
                return  # the end of a channel we left
            state.join_ref, state.joined = None, False
        logger.warning("Realtime closed a conversation's channel; joining it again", topic=topic)
        asyncio.get_running_loop().call_later(self.backoff_seconds[0], self._reconcile)
