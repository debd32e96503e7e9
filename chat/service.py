"""The domain assembled for one process: store, model, pipeline, workers and sweep, built from
settings once and shared by both doors."""

from __future__ import annotations

from dataclasses import dataclass

from chat.model import ChatModel
from chat.pipeline import ReplyPipeline
from chat.redrive import RedriveSweep
from chat.settings import Settings
from chat.store import MessageStore, service_client
from chat.workers import ReplyWorkers


@dataclass
class ChatService:
    settings: Settings
    store: MessageStore
    pipeline: ReplyPipeline
    workers: ReplyWorkers
    sweep: RedriveSweep

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatService:
        store = MessageStore(service_client(settings))
        pipeline = ReplyPipeline(settings, store, ChatModel(settings))
        workers = ReplyWorkers(pipeline.answer, settings.worker_threads, settings.worker_queue_size)
        return cls(settings, store, pipeline, workers, RedriveSweep(settings, store, workers))

    def start(self) -> None:
        self.sweep.start()

    def shutdown(self, wait: bool = True) -> None:
        self.sweep.stop()
        self.workers.shutdown(wait=wait)
