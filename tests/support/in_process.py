"""The ChatService and the app, assembled exactly as production does (server/wiring.py,
server.create_app) but on the in-memory fakes: for tests that need no server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask

from chat.metrics import NO_METRICS, ServiceMetrics
from chat.service import ChatService
from server import create_app
from server.settings import Settings, load_settings
from server.wiring import assemble_chat_service
from tests.support.fakes import (
    InMemoryCallerStore,
    InMemoryDatabase,
    InMemoryMessageStore,
    InMemoryReplyChannels,
    RecordingBroadcaster,
    ScriptedModel,
    caller_stores,
)

LEGACY_JWT_SECRET = "unit-test-legacy-jwt-secret-of-32-bytes!"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SUPABASE_URL = "http://127.0.0.1:9"  # nothing listens: a test that reached a server would fail


def unit_settings(**overrides: Any) -> Settings:
    """Valid settings pointing nowhere, with fast timings; tokens are HS256 under the legacy secret."""
    return load_settings({
        "app_env": "test",
        "log_level": "ERROR",
        "supabase_url": SUPABASE_URL,
        "supabase_service_role_key": "service-role-key",
        "supabase_anon_key": "anon-key",
        "supabase_jwt_secret": LEGACY_JWT_SECRET,
        "webhook_secret": WEBHOOK_SECRET,
        "openai_api_key": "sk-unused",
        "openai_model": "default-model",
        "openai_timeout_seconds": 1,
        "model_retry_max_seconds": 0,
        "lease_seconds": 5,
        "chat_reply_timeout_seconds": 2,
        "chat_poll_interval_seconds": 0.01,
        "redrive_interval_seconds": 0,
        "ready_cache_seconds": 0,
        # Off unless a test turns them on (tests/unit/test_titles.py): each title is one more model
        # call, which would take a step of a test's script or wait at its gate.
        "generate_titles": False,
        **overrides,
    })


@dataclass
class FakeChat:
    """One process's domain on fakes, and the handles a test arranges and inspects through."""

    database: InMemoryDatabase
    store: InMemoryMessageStore
    model: ScriptedModel
    callers: dict[str, InMemoryCallerStore]
    service: ChatService
    broadcaster: RecordingBroadcaster

    def app(self, settings: Settings) -> Flask:
        return create_app(settings, start_background=False, service=self.service)


def fake_chat(
    settings: Settings | None = None, *, deliver_on_insert: bool = True, metrics: ServiceMetrics = NO_METRICS
) -> FakeChat:
    """`deliver_on_insert`: a caller's insert reaches the webhook door's verb at once, as the
    trigger and pg_net do; False leaves it pending, as a lost delivery would. `metrics` counts
    what the service does (adapters/prometheus_metrics.py, to read it as a scrape would)."""
    database = InMemoryDatabase()
    store = InMemoryMessageStore(database)
    model = ScriptedModel()
    open_caller_store, opened = caller_stores(database)
    broadcaster = RecordingBroadcaster()
    service = assemble_chat_service(
        settings or unit_settings(), store, store, open_caller_store, model, broadcaster,
        reply_channels=lambda feed, _call_soon: InMemoryReplyChannels(broadcaster, feed),
        metrics=metrics,
        probes={"model": model.ping, "realtime": broadcaster.ping},
    )
    if deliver_on_insert:
        database.on_user_message = service.accept_delivery
    return FakeChat(database, store, model, opened, service, broadcaster)
