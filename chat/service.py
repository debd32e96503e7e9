"""The domain assembled for one process: store, model, pipeline, workers, sweep and the reply
waiter, built from settings once and shared by both doors."""

from __future__ import annotations

from dataclasses import dataclass

from chat.caller_store import CallerStore
from chat.direct_chat import DirectChat
from chat.model import ChatModel
from chat.pipeline import ReplyPipeline
from chat.redrive import RedriveSweep
from chat.settings import Settings
from chat.store import MessageStore, service_client, shared_http_client
from chat.waiter import ReplyWaiter
from chat.workers import ReplyWorkers


@dataclass
class ChatService:
    settings: Settings
    store: MessageStore
    callers: CallerStore
    pipeline: ReplyPipeline
    workers: ReplyWorkers
    sweep: RedriveSweep
    waiter: ReplyWaiter
    direct_chat: DirectChat

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatService:
        http = shared_http_client(settings)
        store = MessageStore(service_client(settings, http))
        waiter = ReplyWaiter(store, settings.chat_poll_interval_seconds)
        pipeline = ReplyPipeline(settings, store, ChatModel(settings), on_settled=waiter.notify)
        workers = ReplyWorkers(pipeline.answer, settings.worker_threads, settings.worker_queue_size)
        return cls(
            settings=settings,
            store=store,
            callers=CallerStore(settings, http),
            pipeline=pipeline,
            workers=workers,
            sweep=RedriveSweep(settings, store, workers),
            waiter=waiter,
            direct_chat=DirectChat(settings, waiter),
        )

    def start(self) -> None:
        self.sweep.start()

    def shutdown(self, wait: bool = True) -> None:
        self.sweep.stop()
        self.workers.shutdown(wait=wait)
