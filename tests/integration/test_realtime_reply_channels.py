"""adapters/realtime_channels.py against the local Realtime: one socket as the service role,
admitted to conversations' private channels; the reply events broadcast there (through the REST
endpoint the service's broadcaster posts to) reach the feed under their message id; a channel
is left when its last follower goes, not before; after Realtime drops the socket, the followed
channels are joined again on a new one."""

from __future__ import annotations

import contextlib
import queue
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.realtime_channels import RealtimeReplyChannels
from chat.reply_feed import FeedEvent, ReplyFeed
from devstack.keys import JwtKeys
from devstack.stack import LocalStack
from tests.support.engine_loop import EngineLoop, engine_loop
from tests.support.gateway import RestartableGateway
from tests.support.polling import wait_until

WAIT_SECONDS = 5.0


class Realtime:
    """One process's reply channels on a Realtime, and the service role's REST broadcast to it."""

    def __init__(self, loop: EngineLoop, url: str, keys: JwtKeys) -> None:
        self.url = url
        self.key = keys.api_key("service_role")
        self.feed = ReplyFeed()
        self.channels = RealtimeReplyChannels(
            url, self.key, loop.session(), self.feed, loop.call_soon, backoff_seconds=(0.05, 0.2)
        )

    def broadcast(self, *messages: dict[str, Any]) -> None:
        response = httpx.post(
            f"{self.url}/realtime/v1/api/broadcast", headers={"Authorization": f"Bearer {self.key}"},
            json={"messages": [{**message, "private": True} for message in messages]},
        )
        assert response.status_code == 202, response.text

    def still_hears(self, conversation_id: str, inbox: queue.SimpleQueue[FeedEvent]) -> bool:
        """Whether a broadcast on `conversation_id` still reaches `inbox`'s message. Realtime
        admits a later join only after what the socket sent before it (a leave), and delivers a
        marker sent after the probe after the probe: once the marker is here, so is the probe,
        or it never will be."""
        marker_conversation, marker_message = str(uuid.uuid4()), str(uuid.uuid4())
        with self.feed.subscribe(marker_message) as markers, self.channels.follow(marker_conversation) as marker:
            wait_until(lambda: marker.joined)
            self.broadcast(delta(conversation_id, PROBE, 0, "probe"), delta(marker_conversation, marker_message, 0, "marker"))
            markers.get(timeout=WAIT_SECONDS)
        try:
            inbox.get_nowait()
        except queue.Empty:
            return False
        return True


PROBE = str(uuid.uuid4())


def delta(conversation_id: str, message_id: str, offset: int, text: str, attempt: int = 1) -> dict[str, Any]:
    payload = {"message_id": message_id, "reply_id": "r", "attempt": attempt, "offset": offset, "delta": text}
    return {"topic": f"chat:{conversation_id}", "event": "reply_delta", "payload": payload}


def end(conversation_id: str, message_id: str, event: str, **extra: Any) -> dict[str, Any]:
    payload = {"message_id": message_id, "reply_id": "r", "attempt": 1, **extra}
    return {"topic": f"chat:{conversation_id}", "event": event, "payload": payload}


@contextlib.contextmanager
def realtime_at(url: str, keys: JwtKeys) -> Iterator[Realtime]:
    with engine_loop() as loop:
        realtime = Realtime(loop, url, keys)
        try:
            yield realtime
        finally:
            loop.run(realtime.channels.close())


@pytest.fixture
def realtime(stack: LocalStack, jwt_keys: JwtKeys) -> Iterator[Realtime]:
    with realtime_at(stack.api_url, jwt_keys) as running:
        yield running


def test_a_followed_conversations_reply_events_reach_the_feed_under_their_message(realtime: Realtime) -> None:
    conversation, elsewhere = str(uuid.uuid4()), str(uuid.uuid4())
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with realtime.feed.subscribe(first) as first_inbox, realtime.feed.subscribe(second) as second_inbox, \
            realtime.channels.follow(conversation) as following:
        wait_until(lambda: following.joined)  # the service role is admitted to a private chat channel
        realtime.broadcast(
            delta(elsewhere, first, 0, "a conversation nobody follows"),
            delta(conversation, first, 0, "Echo"),
            delta(conversation, second, 0, "Other"),
            end(conversation, first, "reply_failed", error="The model broke off."),
            end(conversation, second, "reply_stopped"),
        )

        assert first_inbox.get(timeout=WAIT_SECONDS) == FeedEvent("delta", 1, 0, "Echo")
        assert first_inbox.get(timeout=WAIT_SECONDS) == FeedEvent("failed", 1, error="The model broke off.")
        assert second_inbox.get(timeout=WAIT_SECONDS) == FeedEvent("delta", 1, 0, "Other")
        assert second_inbox.get(timeout=WAIT_SECONDS) == FeedEvent("stopped", 1)
    assert realtime.channels.connections == 1


def test_a_channel_is_left_when_its_last_follower_goes(realtime: Realtime) -> None:
    conversation = str(uuid.uuid4())
    with realtime.feed.subscribe(PROBE) as probes, contextlib.ExitStack() as first_follower:
        first = first_follower.enter_context(realtime.channels.follow(conversation))
        with realtime.channels.follow(conversation):
            wait_until(lambda: first.joined)
        assert realtime.still_hears(conversation, probes)  # one follower left: still joined

        first_follower.close()
        assert not realtime.still_hears(conversation, probes)

        with realtime.channels.follow(conversation) as again:  # followed anew: joined anew
            wait_until(lambda: again.joined)
            assert realtime.still_hears(conversation, probes)
    assert realtime.channels.connections == 1


@pytest.fixture
def gateway(database_url: str, jwt_keys: JwtKeys) -> Iterator[RestartableGateway]:
    running = RestartableGateway(database_url, jwt_keys)
    yield running
    running.stop()


def test_after_realtime_drops_the_socket_the_followed_channels_are_joined_again(
    gateway: RestartableGateway, jwt_keys: JwtKeys
) -> None:
    conversation, message = str(uuid.uuid4()), str(uuid.uuid4())
    with realtime_at(gateway.url, jwt_keys) as realtime, realtime.feed.subscribe(message) as inbox, \
            realtime.channels.follow(conversation) as following:
        wait_until(lambda: following.joined)
        realtime.broadcast(delta(conversation, message, 0, "before "))
        assert inbox.get(timeout=WAIT_SECONDS) == FeedEvent("delta", 1, 0, "before ")

        gateway.restart()  # every socket drops
        wait_until(lambda: realtime.channels.connections == 2 and following.joined)
        realtime.broadcast(delta(conversation, message, 7, "after"))

        assert inbox.get(timeout=WAIT_SECONDS) == FeedEvent("delta", 1, 7, "after")
