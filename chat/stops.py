"""How a generating worker learns that its reply was stopped, without a query per stream.

Every reply this process streams is registered here with what to do on a stop (close the
model's stream, so the provider stops generating and billing). One poller thread asks the
database, for all of them at once, which ones their owners asked to stop
(`stop_requested_messages`): one query per process per STREAM_STOP_POLL_SECONDS, however many
replies stream, and none while nothing streams. A stop that arrives through this process's own
REST door (`request_stop`) acts at once, without waiting for the poll."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chat.errors import StoreUnavailable
from chat.logging import get_logger
from chat.ports import StreamingMessageStore

logger = get_logger(__name__)


class StopSignal:
    """One streaming reply's stop: set once, by the poller or the REST door, read by the worker."""

    def __init__(self, on_stop: Callable[[], None]) -> None:
        self._on_stop = on_stop
        self._event = threading.Event()
        self._lock = threading.Lock()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def trigger(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
        try:
            self._on_stop()
        except Exception:
            logger.exception("closing a stopped reply's model stream failed")


class StopSignals:
    def __init__(self, store: StreamingMessageStore, poll_seconds: float) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self._signals: dict[str, StopSignal] = {}
        self._lock = threading.Lock()
        self._someone_streams = threading.Condition(self._lock)
        self._poller: threading.Thread | None = None
        self.polls = 0

    def register(self, message_id: str, on_stop: Callable[[], None]) -> StopSignal:
        signal = StopSignal(on_stop)
        with self._lock:
            self._signals[message_id] = signal
            if self._poller is None or not self._poller.is_alive():
                # Started by the first stream, so it is born in the worker process, not a master.
                self._poller = threading.Thread(target=self._poll_forever, name="stop-signals", daemon=True)
                self._poller.start()
            self._someone_streams.notify()
        return signal

    def unregister(self, message_id: str, signal: StopSignal) -> None:
        with self._lock:
            if self._signals.get(message_id) is signal:
                del self._signals[message_id]

    def request_stop(self, message_id: str) -> bool:
        """The in-process fast path: True if this process streams the reply and stopped it now."""
        with self._lock:
            signal = self._signals.get(message_id)
        if signal is None:
            return False
        signal.trigger()
        return True

    def streaming(self) -> list[str]:
        with self._lock:
            return list(self._signals)

    def _poll_forever(self) -> None:
        while True:
            with self._lock:
                while not self._signals:
                    self._someone_streams.wait()
                message_ids = list(self._signals)
            started = time.monotonic()
            try:
                self.polls += 1
                for message_id in self.store.stop_requested_messages(message_ids):
                    self.request_stop(message_id)
            except StoreUnavailable as error:
                logger.warning("stop poller could not reach the store", reason=str(error))
            except Exception:
                logger.exception("stop poller failed; will poll again")
            time.sleep(max(0.0, self.poll_seconds - (time.monotonic() - started)))
