"""One client's WebSocket: heartbeats, joins, leaves, token updates, broadcasts and presence.

A Phoenix socket multiplexes channels by topic. Replies answer a push's `ref`; frames that
belong to a channel carry its `join_ref`, and clients drop frames whose join_ref is not the one
they joined with. Everything the client sends is answered or dropped, never allowed to break
the socket: a malformed frame is ignored, as Phoenix ignores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from devstack.keys import JwtKeys
from devstack.realtime.authorization import Authorizer
from devstack.realtime.bindings import BindingError, parse_bindings
from devstack.realtime.capture import ChangeCapture
from devstack.realtime.channels import Channel, Hub
from devstack.realtime.frames import Encoded, Frame, FrameError, Serializer
from devstack.realtime.tokens import Identity, TokenRejected, identity_of

TOPIC_PREFIX = "realtime:"
OUTBOX_LIMIT = 10_000  # frames waiting for a socket that stopped reading; beyond this it is closed
CLOSE_TRY_AGAIN_LATER = 1013
logger = logging.getLogger("devstack.realtime")


class Connection:
    def __init__(
        self, websocket: WebSocket, serializer: Serializer, identity: Identity, hub: Hub, keys: JwtKeys,
        capture: ChangeCapture, outbox_limit: int = OUTBOX_LIMIT,
    ) -> None:
        self.websocket = websocket
        self.serializer = serializer
        self.identity = identity
        self.hub = hub
        self.authorizer: Authorizer = hub.authorizer
        self.keys = keys
        self.capture = capture
        self.channels: dict[str, Channel] = {}
        self._outbox: asyncio.Queue[Encoded] = asyncio.Queue()
        self.outbox_limit = outbox_limit
        self._overflowed = False
        self._closing: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ the socket
    def push(self, message: Encoded) -> None:
        if self._overflowed:
            return
        if self._outbox.qsize() >= self.outbox_limit:
            # A client that stopped reading: close it rather than hold its backlog forever.
            self._overflowed = True
            logger.warning("realtime closed a socket %s frames behind", self.outbox_limit)
            self._closing = asyncio.ensure_future(self.websocket.close(code=CLOSE_TRY_AGAIN_LATER))
            return
        self._outbox.put_nowait(message)

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            while not self._overflowed:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text") if message.get("text") is not None else message.get("bytes")
                if raw is None:
                    continue
                try:
                    frame = self.serializer.decode(raw)
                except FrameError as error:
                    logger.info("realtime ignored a malformed frame: %s", error)
                    continue
                await self.handle(frame)
        except WebSocketDisconnect:
            pass
        finally:
            for channel in self.channels.values():
                self.hub.remove(channel)
            self.channels.clear()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write(self) -> None:
        while True:
            message = await self._outbox.get()
            try:
                if isinstance(message, bytes):
                    await self.websocket.send_bytes(message)
                else:
                    await self.websocket.send_text(message)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return

    def reply(self, frame: Frame, status: str, response: dict[str, Any]) -> None:
        self.push(self.serializer.encode(
            Frame(frame.topic, "phx_reply", {"status": status, "response": response}, frame.ref, frame.join_ref)
        ))

    # ------------------------------------------------------------------ dispatch
    async def handle(self, frame: Frame) -> None:
        if frame.topic == "phoenix":
            if frame.event == "heartbeat":
                self.reply(frame, "ok", {})
            return
        if frame.event == "phx_join":
            await self.join(frame)
            return
        channel = self.channels.get(frame.topic)
        if channel is None:
            self.reply(frame, "error", {"reason": "unmatched topic"})
            return
        if frame.event == "phx_leave":
            self.leave(channel)
            self.reply(frame, "ok", {})
            channel.send("phx_close", {}, ref=channel.join_ref)
        elif frame.event == "access_token":
            await self.refresh_token(channel, frame.payload.get("access_token"))
        elif frame.event == "broadcast":
            await self.client_broadcast(channel, frame)
        elif frame.event == "presence":
            self.presence(channel, frame)

    async def join(self, frame: Frame) -> None:
        if not frame.topic.startswith(TOPIC_PREFIX):
            self.reply(frame, "error", {"reason": "unmatched topic"})
            return
        sub_topic = frame.topic[len(TOPIC_PREFIX):]
        config = _object(frame.payload.get("config"))
        try:
            identity = identity_of(self.keys, frame.payload.get("access_token") or self.identity.token)
            bindings = parse_bindings(config.get("postgres_changes"))
        except (TokenRejected, BindingError) as error:
            self.reply(frame, "error", {"reason": str(error)})
            return
        previous = self.channels.pop(frame.topic, None)
        if previous is not None:  # Phoenix closes a channel joined again on the same socket
            self.leave(previous)
            previous.send("phx_close", {}, ref=previous.join_ref)
        private = config.get("private") is True
        if private and not await self._may_read(identity, sub_topic):
            self.reply(frame, "error", {
                "reason": f"Unauthorized: You do not have permissions to read from this Channel topic: {sub_topic}"
            })
            return
        broadcast = _object(config.get("broadcast"))
        presence = _object(config.get("presence"))
        channel = Channel(
            outbox=self, topic=frame.topic, sub_topic=sub_topic, join_ref=frame.join_ref or frame.ref,
            identity=identity, private=private, broadcast_self=broadcast.get("self") is True,
            broadcast_ack=broadcast.get("ack") is True, presence_key=str(presence.get("key") or uuid.uuid4()),
            presence_enabled=presence.get("enabled", True) is not False,
        )
        failure = await self._check_bindings(bindings, identity)
        channel.bindings = [] if failure else bindings
        self.channels[frame.topic] = channel
        self.hub.add(channel)
        self._close_at_expiry(channel)
        self.capture.wake()
        self.reply(frame, "ok", {"postgres_changes": [binding.reply() for binding in bindings]})
        if channel.presence_enabled:
            channel.send("presence_state", self.hub.presence_state(sub_topic, private))
        if bindings:
            status, message = ("error", failure) if failure else ("ok", "Subscribed to PostgreSQL")
            channel.send("system", {"extension": "postgres_changes", "status": status, "message": message,
                                    "channel": sub_topic})

    async def _may_read(self, identity: Identity, sub_topic: str) -> bool:
        try:
            return await self.authorizer.can_read_topic(identity, sub_topic)
        except Exception:  # a policy that raises refuses the join, as Realtime's RLS error does
            logger.exception("realtime read policy check failed for topic %s", sub_topic)
            return False

    async def _check_bindings(self, bindings: list[Any], identity: Identity) -> str | None:
        if bindings and (problem := await self.capture.problem()):
            return f"Unable to subscribe to changes: {problem}"
        for binding in bindings:
            try:
                await self.authorizer.check_binding(binding, identity)
            except BindingError as error:
                return str(error)
        return None

    def leave(self, channel: Channel) -> None:
        self.hub.remove(channel)
        if self.channels.get(channel.topic) is channel:
            del self.channels[channel.topic]

    async def refresh_token(self, channel: Channel, token: Any) -> None:
        """A new token for a joined channel: verified, then every permission is decided again."""
        try:
            identity = identity_of(self.keys, token)
        except TokenRejected as error:
            self._shut_down(channel, str(error))
            return
        if channel.private and not await self._may_read(identity, channel.sub_topic):
            self._shut_down(channel, "You do not have permissions to read from this Channel topic: "
                                     f"{channel.sub_topic}")
            return
        if channel.bindings and (failure := await self._check_bindings(channel.bindings, identity)):
            channel.bindings = []
            channel.send("system", {"extension": "postgres_changes", "status": "error", "message": failure,
                                    "channel": channel.sub_topic})
        channel.identity = identity
        channel.can_write = None
        self._close_at_expiry(channel)

    def _close_at_expiry(self, channel: Channel) -> None:
        """Realtime closes a channel whose token runs out before the client sends a new one."""
        if channel.expiry is not None:
            channel.expiry.cancel()
        delay = max(0.0, channel.identity.expires_at - time.time())
        channel.expiry = asyncio.get_running_loop().call_later(delay, self._expired, channel)

    def _expired(self, channel: Channel) -> None:
        if self.channels.get(channel.topic) is channel:
            seconds = max(0, int(time.time() - channel.identity.expires_at))
            self._shut_down(channel, f"Token has expired {seconds} seconds ago")

    def _shut_down(self, channel: Channel, message: str) -> None:
        channel.send("system", {"extension": "system", "status": "error", "message": message,
                                "channel": channel.sub_topic})
        self.leave(channel)
        channel.send("phx_close", {}, ref=channel.join_ref)

    async def client_broadcast(self, channel: Channel, frame: Frame) -> None:
        payload = frame.payload
        event = payload.get("event")
        if isinstance(event, str) and (not channel.private or await self._may_write(channel)):
            self.hub.broadcast(channel.sub_topic, channel.private, event, payload.get("payload", {}), sender=channel)
        if channel.broadcast_ack:
            self.reply(frame, "ok", {})

    async def _may_write(self, channel: Channel) -> bool:
        if channel.can_write is None:
            try:
                channel.can_write = await self.authorizer.can_write_topic(channel.identity, channel.sub_topic)
            except Exception:
                logger.exception("realtime write policy check failed for topic %s", channel.sub_topic)
                return False
        return channel.can_write

    def presence(self, channel: Channel, frame: Frame) -> None:
        event = frame.payload.get("event")
        if event == "track":
            payload = frame.payload.get("payload")
            self.hub.track(channel, payload if isinstance(payload, dict) else {})
        elif event == "untrack":
            self.hub.untrack(channel)
        self.reply(frame, "ok", {})


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
