"""Settings in, the process's ChatService out: the one place the adapters are built (once per
process) and handed to the domain, each component given only the values it uses.

`assemble_chat_service` is the wiring without the adapters, so tests run the same assembly on
in-memory fakes."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from adapters.broadcaster import RealtimeBroadcaster
from adapters.caller_store import caller_store_factory
from adapters.http_session import LoopSession
from adapters.message_store import SupabaseMessageStore, service_client, shared_http_client
from adapters.model import OpenAIChatModel
from adapters.prometheus_metrics import PrometheusMetrics
from adapters.realtime_channels import RealtimeReplyChannels
from adapters.reply_store import PostgrestReplyStore
from adapters.sibling_notifier import SiblingNotifier
from chat.answering.broadcasts import ReplyBroadcasts
from chat.answering.engine import LoopHook, ReplyEngine
from chat.answering.live_replies import LiveReplies
from chat.answering.model_allowlist import ModelAllowlist
from chat.answering.pipeline import ReplyPipeline
from chat.answering.redrive import RedriveSweep
from chat.answering.streaming import ReplyStreaming
from chat.answering.titles import ConversationTitles
from chat.metrics import NO_METRICS, ServiceMetrics
from chat.ports import (
    CallerStoreFactory,
    ChatModel,
    MessageStore,
    ReplyBroadcaster,
    ReplyChannelsFactory,
    ReplyStore,
    RunSoon,
    SiblingProcesses,
    StreamingChatModel,
)
from chat.readiness import Probe, Readiness
from chat.reply_feed import ReplyFeed
from chat.service import ChatService
from chat.waiting.direct_chat import DirectChat
from chat.waiting.direct_stream import DirectStream
from chat.waiting.settled import NoSiblings, SettledMessages
from chat.waiting.waiter import ReplyWaiter
from server.settings import Settings

# Connections for the doors' threads (waiting /api requests, the sweep, the waiter's poll).
DOOR_CONNECTIONS = 128
READY_PROBE_TIMEOUT_SECONDS = 4.0
AsyncProbe = Callable[[], Awaitable[None]]


def build_chat_service(settings: Settings) -> ChatService:
    http = shared_http_client(DOOR_CONNECTIONS)
    service_role_key = settings.supabase_service_role_key.get_secret_value()
    store = SupabaseMessageStore(service_client(settings.supabase_url, service_role_key, http))
    metrics: ServiceMetrics = NO_METRICS  # nobody may scrape: count nothing
    if settings.metrics_token is not None or settings.metrics_port is not None:
        metrics = PrometheusMetrics(
            count_pending=store.count_pending_messages, multiprocess_dir=settings.prometheus_multiproc_dir
        )
    session = LoopSession(max_connections=settings.reply_concurrency + DOOR_CONNECTIONS)
    reply_store = PostgrestReplyStore(settings.supabase_url, service_role_key, session)
    model = OpenAIChatModel(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        timeout_seconds=settings.openai_timeout_seconds,
        session=session,
        max_attempts=settings.model_max_attempts,
        retry_initial_seconds=settings.model_retry_initial_seconds,
        retry_max_seconds=settings.model_retry_max_seconds,
        reply_max_tokens=settings.reply_max_tokens,
        stream_read_interval_seconds=settings.stream_read_interval_ms / 1000,
        metrics=metrics,
    )
    callers = caller_store_factory(settings.supabase_url, settings.supabase_anon_key.get_secret_value(), http)
    broadcaster = RealtimeBroadcaster(settings.supabase_url, service_role_key, session)

    channels: list[RealtimeReplyChannels] = []  # built by the assembly, once the feed and the engine exist

    def reply_channels(feed: ReplyFeed, call_soon: RunSoon) -> RealtimeReplyChannels:
        channels.append(RealtimeReplyChannels(settings.supabase_url, service_role_key, session, feed, call_soon))
        return channels[-1]

    async def close_channels() -> None:  # before the session its socket is on
        for each in channels:
            await each.close()

    return assemble_chat_service(
        settings, store, reply_store, callers, model, broadcaster, on_stop=[close_channels, session.close],
        reply_channels=reply_channels,
        new_loop=_fastest_event_loop(),
        metrics=metrics,
        probes={"model": model.ping, "realtime": broadcaster.ping},
        siblings=SiblingNotifier(),
    )


def _fastest_event_loop() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop (libuv, in C) where it is installed: the loop's own work per wake-up is a
    third of a streamed token's cost on asyncio's pure-Python loop. asyncio's elsewhere."""
    try:
        import uvloop
    except ImportError:  # not built for this platform
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def assemble_chat_service(
    settings: Settings,
    store: MessageStore,
    reply_store: ReplyStore,
    open_caller_store: CallerStoreFactory,
    model: ChatModel,
    broadcaster: ReplyBroadcaster | None = None,
    on_stop: list[LoopHook] | None = None,
    reply_channels: ReplyChannelsFactory | None = None,
    new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    metrics: ServiceMetrics = NO_METRICS,
    probes: Mapping[str, AsyncProbe] | None = None,
    siblings: SiblingProcesses | None = None,
) -> ChatService:
    """The domain around its ports: pipeline, reply engine, sweep, waiter, direct chat, siblings.
    With a broadcaster and a model that streams, replies are streamed, and SSE requests follow
    the reply channels (`reply_channels`, built on the process's feed and engine) as well as the
    in-process feed. `probes` are readiness checks run on the reply engine's loop (the model,
    Realtime), beside the database's."""
    waiter = ReplyWaiter(store, settings.chat_poll_interval_seconds)
    streaming = _streaming(settings, reply_store, model, broadcaster, metrics)
    settled = SettledMessages(waiter, siblings or NoSiblings())
    # The engine answers with the pipeline, which hands each settled message's successor in its
    # conversation back to the engine (ReplyPipeline's docstring): hence the late-bound call.
    engine = ReplyEngine(
        lambda message_id: pipeline.answer(message_id),
        settings.reply_concurrency,
        settings.reply_queue_size,
        [*([streaming.broadcasts.close] if streaming is not None else []), *(on_stop or [])],
        new_loop,
    )
    pipeline = ReplyPipeline(
        reply_store,
        model,
        default_model=settings.openai_model,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        context_token_budget=settings.context_token_budget,
        context_max_messages=settings.context_max_messages,
        offered_models=settings.offered_models,
        on_settled=settled,
        hand_on=engine.submit,
        streaming=streaming,
        metrics=metrics,
        titles=_titles(settings, reply_store, model),
    )
    direct_chat = DirectChat(waiter, reply_timeout_seconds=settings.chat_reply_timeout_seconds)
    feed = streaming.feed if streaming is not None else ReplyFeed()
    direct_stream = DirectStream(
        direct_chat,
        waiter,
        feed,
        generate_here=engine.submit,
        generating_here=pipeline.holds_claim,
        poll_interval_seconds=settings.chat_poll_interval_seconds,
        heartbeat_seconds=settings.stream_sse_heartbeat_seconds,
        idle_timeout_seconds=settings.chat_reply_timeout_seconds,
        # Whole answers are not broadcast: then there is no channel to follow, only the row.
        channels=reply_channels(feed, engine.call_soon) if streaming is not None and reply_channels is not None else None,
        # The row gains text once per checkpoint: read more often, it could not add to the channel.
        joined_poll_interval_seconds=max(settings.stream_checkpoint_seconds, settings.chat_poll_interval_seconds),
    )
    return ChatService(
        store=store,
        open_caller_store=open_caller_store,
        pipeline=pipeline,
        engine=engine,
        sweep=RedriveSweep(
            store,
            engine,
            interval_seconds=settings.redrive_interval_seconds,
            grace_seconds=settings.redrive_grace_seconds,
            metrics=metrics,
        ),
        waiter=waiter,
        direct_chat=direct_chat,
        settled=settled,
        direct_stream=direct_stream,
        models=ModelAllowlist(store, settings.offered_models),
        streaming=streaming,
        metrics=metrics,
        readiness=Readiness(
            {"database": store.ping, **{name: _on_loop(engine, probe) for name, probe in (probes or {}).items()}},
            ttl_seconds=settings.ready_cache_seconds,
        ),
    )


def _on_loop(engine: ReplyEngine, probe: AsyncProbe) -> Probe:
    """An async readiness probe, run on the reply engine's loop (where the adapters' session lives)."""

    def run() -> None:
        try:
            engine.run(_awaited(probe), READY_PROBE_TIMEOUT_SECONDS)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no answer within {READY_PROBE_TIMEOUT_SECONDS:.0f} s") from None

    return run


async def _awaited(probe: AsyncProbe) -> None:
    await probe()


def _titles(settings: Settings, store: ReplyStore, model: ChatModel) -> ConversationTitles | None:
    if not settings.generate_titles:
        return None
    return ConversationTitles(store, model, title_model=settings.title_model, max_tokens=settings.title_max_tokens)


def _streaming(
    settings: Settings, store: ReplyStore, model: ChatModel, broadcaster: ReplyBroadcaster | None, metrics: ServiceMetrics
) -> ReplyStreaming | None:
    if not settings.stream_replies or broadcaster is None or not hasattr(model, "stream"):
        return None
    return ReplyStreaming(
        model=cast(StreamingChatModel, model),
        broadcasts=ReplyBroadcasts(broadcaster, settings.stream_broadcast_interval_ms / 1000, metrics=metrics),
        live=LiveReplies(
            store,
            tick_seconds=settings.stream_stop_poll_seconds,
            checkpoint_seconds=settings.stream_checkpoint_seconds,
            lease_seconds=settings.lease_seconds,
        ),
        feed=ReplyFeed(),
        metrics=metrics,
    )
