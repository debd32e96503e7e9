"""The domain's ports: what the pipeline, the waiter and direct chat need from the database and
the model, as Protocols. The supabase-py and aiohttp adapters (adapters/) implement them in
production; tests/support/fakes.py implements them in memory, so the domain runs without servers.

Method names are the SQL functions they call, so a reader can go from a call to its migration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from chat.caller import Caller
from chat.outcome import MessageOutcome
from chat.reply_feed import ReplyFeed


@dataclass(frozen=True)
class ClaimedMessage:
    """A user message this worker holds the lease on, with the context that fits the budget."""

    message_id: str
    conversation_id: str
    user_id: str
    attempt: int
    claim_token: str  # names this claim in every write; refused once another claim is current
    lease_expires_at: str
    system_prompt: str | None  # cut to fit the token budget if it was longer (system_prompt_trimmed)
    model: str | None
    context: list[dict[str, str]]
    system_prompt_trimmed: bool = False


@dataclass(frozen=True)
class WaitingMessage:
    """Not claimed: an earlier message of its conversation is unanswered. Whoever settles that one
    is told to answer this one next (next_message_id), so nothing is lost by leaving it."""

    message_id: str
    waiting_for: str


@dataclass(frozen=True)
class StoredReply:
    """The reply row as stored: the first writer's, if two workers finished the same message."""

    reply_id: str
    content: str
    conversation_id: str
    next_message_id: str | None = None  # the conversation's message to answer now, if any


@dataclass(frozen=True)
class FailedMessage:
    failed: bool  # False: the claim was stale, nothing changed
    next_message_id: str | None = None  # the conversation's message to answer now, if any


@dataclass(frozen=True)
class TitleRequest:
    """A conversation the service may title now (claim_conversation_title): its owner, its model
    and its first answered turn (the user message and its reply, as {"role", "content"})."""

    user_id: str
    model: str | None
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class ModelReply:
    content: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None


class MessageStore(Protocol):
    """The service role's reads and settings outside a reply (the sweep, the waiter, the model
    allowlist, readiness), called from plain threads. Every failure to reach the database is
    StoreUnavailable; a request the database refuses is a named ChatError."""

    def configure_chat_models(self, models: list[str]) -> None:
        """Publish the operator's model allowlist, which the database enforces on every write."""

    def list_stalled_messages(self, pending_grace_seconds: int, max_count: int) -> list[str]: ...

    def settled_messages(self, message_ids: list[str]) -> list[str]: ...

    def ping(self) -> None:
        """Raise StoreUnavailable unless Supabase, its database and our schema all answer."""

    def count_pending_messages(self) -> int:
        """How many user messages wait for a reply (status pending), for the operator's gauge."""


@dataclass(frozen=True)
class StreamingReply:
    """The assistant row of a reply being streamed, as begin_reply made or reset it."""

    reply_id: str
    attempt: int


@dataclass(frozen=True)
class ReplyCheckpoint:
    """A streaming reply's text so far, to be stored under its claim."""

    message_id: str
    claim_token: str
    content: str


@dataclass(frozen=True)
class TickAnswer:
    """What one `reply_tick` learnt: the checkpoints refused because their claim is stale (stop
    generating: another attempt owns the message) and the streamed messages whose owners asked
    to stop."""

    superseded: list[str]
    stop_requested: list[str]


class ReplyStore(Protocol):
    """The answering flow's SQL functions, awaited on the reply engine's event loop; every write
    names the worker's claim (claim_token). Failures as MessageStore's."""

    async def claim_message_for_reply(
        self,
        message_id: str,
        lease_seconds: int,
        max_attempts: int,
        token_budget: int,
        max_messages: int,
        claim_token: str | None = None,
    ) -> ClaimedMessage | WaitingMessage | None:
        """The claim (under `claim_token`, chosen by the caller) plus its context; WaitingMessage
        while an earlier message of its conversation is unanswered; None if someone else holds it
        or it is settled."""

    async def complete_message_for_reply(self, claim: ClaimedMessage, reply: ModelReply) -> StoredReply | None:
        """Write the reply under `claim` and return the reply as stored (the first one, if the
        message was answered already); None if the user message is gone (conversation deleted).
        Raises ClaimSuperseded if `claim` is stale and the message unanswered: the reply is dropped."""

    async def fail_message(self, claim: ClaimedMessage, error: str) -> FailedMessage:
        """Mark the message failed under `claim`, with a reason its author reads (failed=False when
        the claim is stale: another attempt holds or settled the message, nothing changed)."""

    async def release_message(self, message_id: str, claim_token: str) -> bool:
        """Hand a claim back (shutdown, or a claim call whose answer was lost), so the next sweep
        need not wait for the lease; the interrupted attempt is not counted."""

    async def begin_reply(self, claim: ClaimedMessage, content: str) -> StreamingReply:
        """Create the reply row (status streaming) at the first piece of text, or reset the one
        an earlier attempt left. Raises ClaimSuperseded when the claim is stale."""

    async def reply_tick(
        self, checkpoints: list[ReplyCheckpoint], streaming: list[str], lease_seconds: int
    ) -> TickAnswer:
        """One round trip for every reply a process streams: store the checkpoints (each under
        its claim, extending its lease by `lease_seconds`) and ask which of the `streaming`
        messages their owners asked to stop."""

    async def finish_reply(
        self, claim: ClaimedMessage, content: str, status: str, error: str | None, reply: ModelReply | None
    ) -> MessageOutcome | None:
        """End the streamed reply as done, stopped or failed, with the user message, in one
        transaction; the outcome as stored (for done: the first reply, if two were written). None
        if the message is gone; raises ClaimSuperseded when the claim is stale."""

    async def claim_conversation_title(self, conversation_id: str) -> TitleRequest | None:
        """The conversation's turn to be titled, taken once: None unless it has no title, was never
        claimed for one, has a done reply and its owner has tokens left today."""

    async def set_conversation_title(self, conversation_id: str, title: str, tokens: int) -> bool:
        """Count `tokens` against the owner's quota and set the title where it is still unset (a
        title its owner set meanwhile is kept). Whether it was set."""


@dataclass(frozen=True)
class ReplyProgress:
    """A user message's status and its reply row as last checkpointed (reply_progress)."""

    status: str
    reply_id: str | None
    content: str | None
    attempt: int | None
    error: str | None


class CallerStore(Protocol):
    """The database as one signed-in caller sees it: every call runs under row-level security."""

    def insert_message(self, message_id: str, conversation_id: str, content: str, client_message_id: str | None) -> str:
        """Raise DuplicateClientMessage if `client_message_id` was used already, RateLimited if the
        database's usage limits refuse it (counted there, for every path and instance)."""

    def find_client_message(self, client_message_id: str) -> tuple[str, str] | None:
        """(message_id, conversation_id) of the caller's message with this client_message_id."""

    def message_outcome(self, message_id: str) -> MessageOutcome | None: ...

    def latest_user_message(self, conversation_id: str) -> tuple[str, str] | None:
        """(message_id, status) of the caller's last message in the conversation (by `seq`); None
        if it has none, or is not the caller's."""

    def reply_progress(self, message_id: str) -> ReplyProgress | None:
        """How far the caller's message's reply has got; None if it is not the caller's."""

    def stop_reply(self, message_id: str) -> str:
        """Ask to stop the caller's own reply (`stop_reply` under RLS); the message's status.
        Raises MessageNotFound for a message that is missing or someone else's."""

    def conversation_history(self, conversation_id: str, before: str | None, page_size: int) -> dict[str, Any]: ...

    def message_conversation(self, message_id: str) -> str | None:
        """The conversation of the caller's message or reply; None if it is missing or not theirs."""

    def regenerate_message(self, message_id: str) -> str:
        """Ask again for the reply to the caller's message (a reply's id stands for the message it
        answers): a new user message beside it, same content and place, answered like any other
        and counted by the quota as one. Its id. MessageNotFound, RateLimited as for an insert."""

    def edit_message(self, message_id: str, content: str) -> str:
        """A new version of the caller's user message with `content`: a sibling on a new branch,
        answered like any message. Its id. MessageNotFound, RateLimited as for an insert."""

    def conversation_branch(
        self, conversation_id: str, leaf: str | None, before: str | None, page_size: int
    ) -> dict[str, Any]:
        """A page of one branch (root to `leaf`, or to the newest message when None), as
        conversation_history pages, with each message's versions and the branch's `leaf`.
        ConversationNotFound, LeafNotFound, CursorNotFound."""

    def search_messages(self, query: str, max_results: int) -> list[dict[str, Any]]:
        """The caller's messages and replies matching `query` (web search syntax), best first."""

    def chat_quota(self) -> dict[str, Any]:
        """The caller's usage today against their limits."""

    def create_conversation(self, fields: dict[str, Any]) -> dict[str, Any]: ...

    def list_conversations(self, before: str | None, page_size: int) -> dict[str, Any]: ...

    def get_conversation(self, conversation_id: str) -> dict[str, Any]: ...

    def delete_conversation(self, conversation_id: str) -> None: ...


CallerStoreFactory = Callable[[Caller], CallerStore]
"""Opens the caller's store for one verified caller (one light client per request)."""


class ChatModel(Protocol):
    """An OpenAI-compatible chat model, awaited on the reply engine's loop. Raises
    ModelUnavailable (transient, retries spent) or ModelRejected (retrying cannot help), each with
    a message the user may read."""

    async def complete(self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None) -> ModelReply:
        """The whole answer, at most `max_tokens` long (None: a reply's, REPLY_MAX_TOKENS)."""


class ModelStream(Protocol):
    """A reply being generated. Iterating (async) yields its pieces of text as the provider sends
    them; once exhausted, `reply` has the whole text and the provider's usage. Raises ModelError
    if the provider breaks off. `close` (on the engine's loop) ends the provider's generation and
    its billing, after which iteration simply ends."""

    closed: bool

    def __aiter__(self) -> AsyncIterator[str]: ...

    def close(self) -> None: ...

    @property
    def reply(self) -> ModelReply: ...


class StreamingChatModel(ChatModel, Protocol):
    async def stream(self, messages: list[dict[str, str]], model: str) -> ModelStream:
        """Open a streamed reply, retried as `complete` is until its first piece of text arrives
        (that piece is the first the iterator yields). Raises ModelError like `complete`."""


@dataclass(frozen=True)
class Broadcast:
    """One Realtime Broadcast message: `event` with `payload` on the private channel `topic`."""

    topic: str
    event: str
    payload: dict[str, Any]


class ReplyBroadcaster(Protocol):
    """Realtime Broadcast as the service role: only it may send on a conversation's channel."""

    async def send(self, messages: list[Broadcast]) -> None:
        """Send all of them in one request. Raises BroadcastFailed; a lost broadcast loses no
        text (the row has it: clients re-read it), so callers log and go on."""


class ChannelFollowing(Protocol):
    """One follower's hold on a conversation's channel."""

    @property
    def joined(self) -> bool:
        """Realtime has admitted the join and the socket is up: from here on the channel brings
        every reply event of the conversation. Before (and after a dropped socket, until the
        join is made again) the reply row is the only complete source."""


class ReplyChannels(Protocol):
    """Realtime Broadcast received: the reply events of `chat:<conversation_id>`, so that an SSE
    request hears a reply generated in another process or instance as soon as a browser does."""

    def follow(self, conversation_id: str) -> AbstractContextManager[ChannelFollowing]:
        """While held, the conversation's reply events reach the process's ReplyFeed as FeedEvents,
        under their message_id. Called from a door's thread; never waits on the network (the join
        goes out in the background, and what was broadcast before it lands is in the row)."""


RunSoon = Callable[[Callable[[], object]], None]
ReplyChannelsFactory = Callable[[ReplyFeed, RunSoon], ReplyChannels]
"""Builds the process's ReplyChannels once its feed and reply engine exist: events go into the
feed, and the socket work runs on the engine's loop, reached through `call_soon` (RunSoon)."""


class SiblingProcesses(Protocol):
    """The other worker processes of this instance (adapters/sibling_notifier.py): told when a
    message settles here, so a request waiting for it in another process wakes at once."""

    def start(self, on_settled: Callable[[str], None]) -> None:
        """Listen after the fork; `on_settled` hears each message id a sibling settled."""

    def broadcast(self, message_id: str) -> None: ...

    def stop(self) -> None: ...
