"""The reply engine: one asyncio event loop per process, in a thread of its own, generating every
reply of the process as a task.

A reply spends nearly all its life waiting on the network (the model's next token, a database
round trip), so it is a coroutine, not a thread: a few kilobytes each and no thread switches
per token, where a thread per reply made a streamed token cost ~100 us of CPU under load. The
doors stay synchronous Flask under gunicorn and hand message ids in with `submit`, which never
blocks: the webhook must answer in milliseconds. The number of replies in progress is bounded
(running plus queued); past that `submit` says no, the door answers 503 and the re-drive sweep
catches up later, rather than queueing without limit and losing everything on a restart.

The loop starts with the first `submit` (or `start`), so it is born in gunicorn's worker
process, after the fork, never in the master."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog

from chat.logging import get_logger

logger = get_logger(__name__)
T = TypeVar("T")
LoopHook = Callable[[], Awaitable[None]]


class ReplyEngine:
    def __init__(
        self,
        answer: Callable[[str], Awaitable[object]],
        concurrency: int,
        queue_size: int,
        on_stop: list[LoopHook] | None = None,
        new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    ) -> None:
        self._answer = answer
        self._new_loop = new_loop  # the wiring passes uvloop's where it is installed
        self._concurrency = concurrency
        self._capacity = concurrency + queue_size
        self._on_stop = on_stop or []  # awaited on the loop when the engine stops (close sessions)
        self._in_flight: dict[str, asyncio.Task[None] | None] = {}  # None: accepted, task not made yet
        self._lock = threading.Lock()
        self._accepting = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: asyncio.Semaphore | None = None
        self._started: set[str] = set()  # holding a running slot (so possibly a claim); loop only
        self._again: set[str] = set()  # submitted again while in flight: run once more

    # --- from any thread -------------------------------------------------------------------

    def start(self) -> asyncio.AbstractEventLoop:
        """The engine's loop, started once (idempotent)."""
        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = self._new_loop()
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run_loop, args=(loop, ready), name="reply-engine", daemon=True)
            self._thread.start()
            ready.wait()
            self._loop = loop
            return loop

    def submit(self, message_id: str) -> bool:
        """Take the message if there is room. A message already in flight here counts as taken,
        and is answered once more when its run ends: the run may be past the point where it could
        see what this submit announces (an earlier message of its conversation settled and handed
        it on just as its own claim answered "waiting"). Answering again is harmless: a settled or
        held message is not claimed twice."""
        loop = self.start()
        with self._lock:
            if not self._accepting:
                return False
            if message_id in self._in_flight:
                self._again.add(message_id)
                return True
            if len(self._in_flight) >= self._capacity:
                return False
            self._in_flight[message_id] = None
        context = structlog.contextvars.get_contextvars()
        try:
            loop.call_soon_threadsafe(self._spawn, message_id, context)
        except RuntimeError:  # the loop closed between the check and the call
            with self._lock:
                if self._in_flight.get(message_id) is None:
                    self._in_flight.pop(message_id, None)
            return False
        return True

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the engine's loop from a plain thread and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.start())
        return future.result(timeout)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the engine's loop (for state only the loop may touch)."""
        self.start().call_soon_threadsafe(callback)

    @property
    def accepting(self) -> bool:
        return self._accepting

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def stop_accepting(self) -> None:
        with self._lock:
            self._accepting = False

    def drain(self, timeout_seconds: float) -> bool:
        """Stop taking work, drop what has not started (it was never claimed, so it stays pending
        for the sweep) and wait up to the timeout for what is running. True if all done."""
        self.stop_accepting()
        if self._loop is None:
            return True
        try:
            self.run(self._cancel_queued(), timeout_seconds)
        except (concurrent.futures.TimeoutError, RuntimeError):
            return False
        deadline = time.monotonic() + timeout_seconds
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.in_flight() == 0

    def close(self, timeout_seconds: float = 5.0) -> None:
        """Cancel what still runs, run the stop hooks, stop the loop (tests and shutdown)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            self.run(self._shutdown(), timeout_seconds)
        except (concurrent.futures.TimeoutError, RuntimeError):
            logger.warning("reply engine did not stop in time")
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    # --- on the loop -------------------------------------------------------------------------

    def _run_loop(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._running = asyncio.Semaphore(self._concurrency)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _spawn(self, message_id: str, context: dict[str, Any]) -> None:
        # Each task runs in a copy of the submitter's log context (request id and the like).
        task_context = contextvars.copy_context()
        task_context.run(structlog.contextvars.bind_contextvars, **context)
        # (Created inside the copied context, the task keeps it: `create_task(context=)` is 3.11+.)
        task = task_context.run(asyncio.get_running_loop().create_task, self._answer_one(message_id))
        with self._lock:
            if message_id in self._in_flight:
                self._in_flight[message_id] = task
        task.add_done_callback(lambda _: self._release(message_id, task))

    async def _answer_one(self, message_id: str) -> None:
        assert self._running is not None
        async with self._running:
            self._started.add(message_id)
            while True:
                try:
                    await self._answer(message_id)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("reply task crashed", message_id=message_id)
                with self._lock:  # the check and the release at once: a submit lands before or after both
                    if message_id in self._again:
                        self._again.discard(message_id)
                        continue
                    self._in_flight.pop(message_id, None)
                    self._started.discard(message_id)
                    return

    async def _cancel_queued(self) -> None:
        """Cancel the tasks still waiting for a running slot: none of them has claimed anything."""
        with self._lock:
            queued = [
                task for message_id, task in self._in_flight.items() if task is not None and message_id not in self._started
            ]
        for task in queued:
            task.cancel()

    async def _shutdown(self) -> None:
        with self._lock:
            tasks = [task for task in self._in_flight.values() if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for hook in self._on_stop:
            try:
                await hook()
            except Exception:
                logger.exception("reply engine stop hook failed")
        background = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in background:  # the reply tick and the broadcast sender
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    def _release(self, message_id: str, task: asyncio.Task[None]) -> None:
        """A task that did not end by itself (cancelled): free its slot, unless a newer submit of
        the same message holds it already."""
        with self._lock:
            if self._in_flight.get(message_id) is task:
                del self._in_flight[message_id]
                self._started.discard(message_id)
                self._again.discard(message_id)

