"""Waiting for something another thread or process does, with a deadline instead of a sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], deadline_seconds: float = 10.0, interval: float = 0.02) -> T:
    """Poll until `predicate` returns something truthy; fail with its last value at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"condition not met within {deadline_seconds} s (last value: {value!r})"
            return value
        time.sleep(interval)
