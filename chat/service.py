"""The domain assembled for one process: store, model, pipeline, workers, sweep and the reply
waiter, built from settings once and shared by both doors."""

from __future__ import annotations

from dataclasses import dataclass

from chat.caller_store import CallerStore
from chat.direct_chat import DirectChat
from chat.errors import StoreUnavailable
from chat.logging import get_logger
from chat.model import ChatModel
from chat.model_allowlist import ModelAllowlist
from chat.outcome import MessageOutcome
from chat.pipeline import ReplyPipeline
from chat.redrive import RedriveSweep
from chat.settings import Settings
from chat.siblings import SiblingNotifier
from chat.store import MessageStore, service_client, shared_http_client
from chat.waiter import ReplyWaiter
from chat.workers import ReplyWorkers

logger = get_logger(__name__)


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
    siblings: SiblingNotifier
    models: ModelAllowlist

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatService:
        http = shared_http_client(settings)
        store = MessageStore(service_client(settings, http))
        waiter = ReplyWaiter(store, settings.chat_poll_interval_seconds)
        siblings = SiblingNotifier(on_settled=waiter.notify)

        def settled(message_id: str, outcome: MessageOutcome | None) -> None:
            waiter.notify(message_id, outcome)
            siblings.broadcast(message_id)

        pipeline = ReplyPipeline(settings, store, ChatModel(settings), on_settled=settled)
        workers = ReplyWorkers(pipeline.answer, settings.worker_threads, settings.worker_queue_size)
        pipeline.hand_on = workers.submit
        return cls(
            settings=settings,
            store=store,
            callers=CallerStore(settings, http),
            pipeline=pipeline,
            workers=workers,
            sweep=RedriveSweep(settings, store, workers),
            waiter=waiter,
            direct_chat=DirectChat(settings, waiter),
            siblings=siblings,
            models=ModelAllowlist(store, settings.offered_models),
        )

    def start(self) -> None:
        """Start the background work; gunicorn calls this once per worker process, after the fork."""
        self.models.start()
        self.sweep.start()
        self.siblings.start()

    def begin_shutdown(self) -> None:
        """SIGTERM: take no new webhooks (they get 503 and are re-driven elsewhere), stop sweeping."""
        self.workers.stop_accepting()
        self.sweep.stop(wait=False)
        self.siblings.stop()
        self.models.stop()

    def finish_shutdown(self, drain_seconds: float) -> list[str]:
        """Let running generations finish for up to `drain_seconds`, then hand back the claims
        that could not finish, so another instance answers them now rather than after the lease.
        Returns the released message ids."""
        self.begin_shutdown()
        if self.workers.drain(drain_seconds):
            return []
        released = []
        for message_id, claim_token in self.pipeline.active_claims().items():
            try:
                if self.store.release_message(message_id, claim_token):
                    released.append(message_id)
            except StoreUnavailable:
                logger.warning("could not release a claim; its lease will expire", message_id=message_id)
        logger.info("shutdown released unfinished claims", count=len(released))
        return released
