"""Worker processes of one instance wake each other's waiters over loopback UDP (real sockets:
the integration layer)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from adapters.sibling_notifier import SiblingNotifier
from tests.support.polling import wait_until


@pytest.fixture
def pair() -> Iterator[tuple[SiblingNotifier, SiblingNotifier, list[str], list[str]]]:
    group = f"test-{uuid.uuid4().hex}"
    heard_by_first: list[str] = []
    heard_by_second: list[str] = []
    first = SiblingNotifier(group=group)
    second = SiblingNotifier(group=group)
    # Two notifiers in one process share a pid; give the second its own registration name.
    first.start(heard_by_first.append)
    assert first._registration is not None
    first._registration.rename(first._registration.with_name("1"))
    first._registration = first._registration.with_name("1")
    second.start(heard_by_second.append)
    yield first, second, heard_by_first, heard_by_second
    first.stop()
    second.stop()


def test_a_settled_message_reaches_the_sibling_and_not_the_sender(pair: tuple) -> None:
    first, _, heard_by_first, heard_by_second = pair
    message_id = str(uuid.uuid4())
    first.broadcast(message_id)
    wait_until(lambda: heard_by_second == [message_id])
    assert heard_by_first == []


def test_garbage_datagrams_are_ignored(pair: tuple) -> None:
    first, second, _, heard_by_second = pair
    assert first._socket is not None and second._socket is not None
    first._socket.sendto(b"not a uuid \xff", second._socket.getsockname())
    message_id = str(uuid.uuid4())
    first.broadcast(message_id)
    wait_until(lambda: heard_by_second == [message_id])
