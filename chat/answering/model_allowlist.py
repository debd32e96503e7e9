"""Publishing the operator's model allowlist (OPENAI_MODEL + OPENAI_MODELS) to the database.

The database is what refuses a conversation whose model is not offered, because frontends write
conversations straight through /rest/v1 where this service is not asked. So the list must be in
the database before users choose models: each process publishes it once at start-up, and keeps
trying in the background while Supabase is unreachable. Every instance publishes the same list;
run instances with different lists and the last one to start wins.
"""

from __future__ import annotations

import threading
from typing import Protocol

from chat.errors import StoreUnavailable
from chat.logging import get_logger

logger = get_logger(__name__)
RETRY_SECONDS = 5.0


class AllowlistStore(Protocol):
    def configure_chat_models(self, models: list[str]) -> None: ...


class ModelAllowlist:
    def __init__(self, store: AllowlistStore, models: list[str], retry_seconds: float = RETRY_SECONDS) -> None:
        self.store = store
        self.models = models
        self.retry_seconds = retry_seconds
        self.published = threading.Event()
        self._stop = threading.Event()

    def publish(self) -> bool:
        """One attempt; True once the database has the list."""
        try:
            self.store.configure_chat_models(self.models)
        except StoreUnavailable as error:
            logger.warning("could not publish the model allowlist; retrying", reason=str(error))
            return False
        logger.info("model allowlist published", models=self.models)
        self.published.set()
        return True

    def start(self) -> None:
        """Publish now; if Supabase is unreachable, keep trying in the background until it answers."""
        if self.publish():
            return
        threading.Thread(target=self._retry, name="model-allowlist", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _retry(self) -> None:
        while not self._stop.wait(self.retry_seconds):
            if self.publish():
                return
