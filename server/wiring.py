"""Settings in, the process's ChatService out: the one place the adapters are built (once per
process) and handed to the domain, each component given only the values it uses.

`assemble_chat_service` is the wiring without the adapters, so tests run the same assembly on
in-memory fakes."""

from __future__ import annotations

from adapters.caller_store import caller_store_factory
from adapters.message_store import SupabaseMessageStore, service_client, shared_http_client
from adapters.model import OpenAIChatModel, openai_client
from chat.direct_chat import DirectChat
from chat.model_allowlist import ModelAllowlist
from chat.outcome import MessageOutcome
from chat.pipeline import ReplyPipeline
from chat.ports import CallerStoreFactory, ChatModel, MessageStore
from chat.redrive import RedriveSweep
from chat.service import ChatService
from chat.settings import Settings
from chat.siblings import SiblingNotifier
from chat.waiter import ReplyWaiter
from chat.workers import ReplyWorkers

# Connections beyond one per reply thread, for waiting /api requests and the poller.
EXTRA_CONNECTIONS = 128


def build_chat_service(settings: Settings) -> ChatService:
    http = shared_http_client(settings.worker_threads + EXTRA_CONNECTIONS)
    store = SupabaseMessageStore(
        service_client(settings.supabase_url, settings.supabase_service_role_key.get_secret_value(), http)
    )
    model = OpenAIChatModel(
        openai_client(settings.openai_api_key.get_secret_value(), settings.openai_base_url, settings.openai_timeout_seconds),
        max_attempts=settings.model_max_attempts,
        retry_initial_seconds=settings.model_retry_initial_seconds,
        retry_max_seconds=settings.model_retry_max_seconds,
        reply_max_tokens=settings.reply_max_tokens,
    )
    callers = caller_store_factory(settings.supabase_url, settings.supabase_anon_key.get_secret_value(), http)
    return assemble_chat_service(settings, store, callers, model)


def assemble_chat_service(
    settings: Settings, store: MessageStore, open_caller_store: CallerStoreFactory, model: ChatModel
) -> ChatService:
    """The domain around its ports: pipeline, workers, sweep, waiter, direct chat, siblings."""
    waiter = ReplyWaiter(store, settings.chat_poll_interval_seconds)
    siblings = SiblingNotifier(on_settled=waiter.notify)

    def settled(message_id: str, outcome: MessageOutcome | None) -> None:
        waiter.notify(message_id, outcome)
        siblings.broadcast(message_id)

    pipeline = ReplyPipeline(
        store,
        model,
        default_model=settings.openai_model,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        context_token_budget=settings.context_token_budget,
        context_max_messages=settings.context_max_messages,
        offered_models=settings.offered_models,
        on_settled=settled,
    )
    workers = ReplyWorkers(pipeline.answer, settings.worker_threads, settings.worker_queue_size)
    pipeline.hand_on = workers.submit  # a settled message's successor in its conversation goes next
    return ChatService(
        store=store,
        open_caller_store=open_caller_store,
        pipeline=pipeline,
        workers=workers,
        sweep=RedriveSweep(
            store, workers, interval_seconds=settings.redrive_interval_seconds, grace_seconds=settings.redrive_grace_seconds
        ),
        waiter=waiter,
        direct_chat=DirectChat(waiter, reply_timeout_seconds=settings.chat_reply_timeout_seconds),
        siblings=siblings,
        models=ModelAllowlist(store, settings.offered_models),
    )
