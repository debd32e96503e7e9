"""Whether this process can answer messages, dependency by dependency: the database (through
Supabase's REST API), the model and Realtime. Each is asked with one cheap request; the answer is
kept for `ttl_seconds`, so a storm of probes or scrapers costs the dependencies one round of
requests per interval, and concurrent probes wait for the same round rather than each making one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from chat.logging import get_logger

logger = get_logger(__name__)
Probe = Callable[[], None]  # returns if the dependency answers; raises with the reason otherwise
UP = "ok"


class Readiness:
    def __init__(self, probes: Mapping[str, Probe], ttl_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.probes = dict(probes)
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._answer: dict[str, str] = {}

    def check(self) -> dict[str, str]:
        """Each dependency's state: "ok", or "down: <reason>"."""
        with self._lock:
            now = self.clock()
            if self._checked_at is None or now - self._checked_at >= self.ttl_seconds:
                self._answer = {name: _probe(name, probe) for name, probe in self.probes.items()}
                self._checked_at = self.clock()
            return dict(self._answer)


def _probe(name: str, probe: Probe) -> str:
    try:
        probe()
    except Exception as error:
        reason = str(error) or type(error).__name__
        logger.warning("readiness: dependency down", dependency=name, reason=reason)
        return f"down: {reason}"
    return UP
