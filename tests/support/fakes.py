"""In-memory implementations of the domain's ports (chat/ports.py), with the same rules as the SQL
functions they stand for, so the pipeline, the waiter and direct chat run in a unit test with no
server. The SQL itself is tested against Postgres in tests/integration/.

Faults are queued per method: `store.fail_next("claim_message_for_reply", StoreUnavailable("down"))`
makes the next call raise it, the way a gateway outage or a refused request would.

The answering flow's ports are async (they are awaited on the reply engine's loop), so their fakes
are too; the fake model streams as well as answering whole, so the unit layer runs the default,
streamed path."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from adapters.postgrest_errors import DATA_REFUSED_MESSAGE
from chat.answering.broadcasts import ReplyBroadcasts
from chat.answering.live_replies import LiveReplies
from chat.answering.streaming import ReplyStreaming
from chat.caller import Caller
from chat.errors import (
    BroadcastFailed,
    ClaimSuperseded,
    ConversationNotFound,
    CursorNotFound,
    DuplicateClientMessage,
    InvalidRequest,
    LeafNotFound,
    MessageNotFound,
    ModelError,
)
from chat.outcome import MessageOutcome
from chat.ports import (
    Broadcast,
    CallerStoreFactory,
    ClaimedMessage,
    FailedMessage,
    ModelReply,
    ReplyCheckpoint,
    ReplyProgress,
    StoredReply,
    StreamingReply,
    TickAnswer,
    TitleRequest,
    WaitingMessage,
)
from chat.reply_feed import ReplyFeed, feed_event_of


class Faults:
    """Exceptions queued per method name, raised by the next calls in order."""

    def __init__(self) -> None:
        self._queued: dict[str, deque[BaseException]] = defaultdict(deque)
        self._lock = threading.Lock()

    def fail_next(self, method: str, *errors: BaseException) -> None:
        with self._lock:
            self._queued[method].extend(errors)

    def check(self, method: str) -> None:
        with self._lock:
            error = self._queued[method].popleft() if self._queued[method] else None
        if error is not None:
            raise error


@dataclass
class Row:
    """One user message as public.messages holds it, with its reply if any."""

    id: str
    conversation_id: str
    user_id: str
    content: str
    created_at: float
    seq: int = 0  # the place in its conversation (messages_number_message): insert order
    status: str = "pending"
    attempts: int = 0
    lease_expires_at: float | None = None
    claim_token: str | None = None  # the current claim while processing
    error: str | None = None
    client_message_id: str | None = None
    reply: StoredReply | None = None  # the settled reply (done, or the partial text of a stopped/failed stream)
    streaming: StreamingRow | None = None  # the reply row while it streams (and after, as it ended)
    stop_requested: bool = False
    inserted_at: str = field(default_factory=lambda: _now_text())  # created_at as the API shows it
    parent_id: str | None = None  # the previous user message of its branch (place_message_in_tree)
    edit_of: str | None = None  # the first version of the message this one edits
    regenerates: str | None = None  # the message whose reply this one asks for again


@dataclass
class StreamingRow:
    """An assistant row made by begin_reply: its id stays across attempts, as reply_to is unique."""

    reply_id: str
    content: str
    attempt: int
    status: str = "streaming"
    error: str | None = None


CONVERSATION_FIELDS = ("title", "system_prompt", "model")  # what a caller may set (the insert grant)
USER_MESSAGE_LENGTH = range(1, 32001)  # messages_user_content_length


@dataclass
class Conversation:
    id: str
    user_id: str
    fields: dict[str, Any] = field(default_factory=dict)  # title, system_prompt, model as the caller set them
    created_at: str = field(default_factory=lambda: _now_text())
    title_requested_at: str | None = None  # set when claim_conversation_title took the title request

    def row(self) -> dict[str, Any]:
        """The conversation as public.conversations holds it: every column, unset ones null."""
        settable = {name: self.fields.get(name) for name in CONVERSATION_FIELDS}
        return {"id": self.id, "user_id": self.user_id, **settable,
                "created_at": self.created_at, "updated_at": self.created_at, "title_requested_at": self.title_requested_at}


def _now_text() -> str:
    return datetime.now(timezone.utc).isoformat()


class InMemoryDatabase:
    """The rows both fake stores share, as the service role and the callers share Postgres."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.messages: dict[str, Row] = {}
        self.conversations: dict[str, Conversation] = {}
        self.lock = threading.RLock()
        self._seq = itertools.count(2, 2)
        self.tokens_per_day = 100_000  # private.effective_quota's tokens_per_day, for every user
        self.tokens: dict[str, int] = defaultdict(int)  # chat_usage's tokens today, by user id
        # The insert trigger and pg_net: called with each user message a caller inserts.
        self.on_user_message: Callable[[str], object] | None = None

    def add_conversation(self, user_id: str, **fields: Any) -> str:
        conversation_id = str(uuid.uuid4())
        self.conversations[conversation_id] = Conversation(conversation_id, user_id, dict(fields))
        return conversation_id

    def add_message(self, conversation_id: str, content: str = "hello", **columns: Any) -> str:
        """A user message as the frontend inserts it (pending), or with the columns given."""
        conversation = self.conversations[conversation_id]
        message_id = columns.pop("id", None) or str(uuid.uuid4())
        if "parent_id" not in columns:  # continues the branch last written to, as the trigger does
            newest = max((r for r in self.messages.values() if r.conversation_id == conversation_id),
                         key=lambda r: r.seq, default=None)
            columns["parent_id"] = newest.id if newest else None
        self.messages[message_id] = Row(
            message_id, conversation_id, conversation.user_id, content, self.clock(), next(self._seq), **columns
        )
        return message_id

    def outcome(self, message_id: str) -> MessageOutcome | None:
        row = self.messages.get(message_id)
        if row is None:
            return None
        reply = row.reply
        return MessageOutcome(
            row.id, row.conversation_id, row.status, row.error,
            reply.reply_id if reply else None, reply.content if reply else None,
        )


class InMemoryMessageStore(Faults):
    """chat.ports.MessageStore and chat.ports.ReplyStore over an InMemoryDatabase, with the
    migrations' rules."""

    def __init__(self, database: InMemoryDatabase | None = None) -> None:
        super().__init__()
        self.db = database or InMemoryDatabase()
        self.calls: list[str] = []
        self.chat_models: list[str] = []

    async def claim_message_for_reply(
        self,
        message_id: str,
        lease_seconds: int,
        max_attempts: int,
        token_budget: int,
        max_messages: int,
        claim_token: str | None = None,
    ) -> ClaimedMessage | WaitingMessage | None:
        self._enter("claim_message_for_reply")
        with self.db.lock:
            row = self.db.messages.get(message_id)
            now = self.db.clock()
            if row is None or not self._claimable(row, now):
                return None
            earlier = self._earliest_unanswered(row.conversation_id)
            if earlier is not None and earlier.id != row.id:
                return WaitingMessage(row.id, earlier.id)
            if row.attempts >= max_attempts:
                row.status, row.lease_expires_at, row.claim_token = "failed", None, None
                row.error = f"No reply could be generated after {row.attempts} attempts. Please send the message again."
                return None
            row.status, row.attempts, row.error = "processing", row.attempts + 1, None
            row.lease_expires_at, row.claim_token = now + lease_seconds, claim_token or str(uuid.uuid4())
            conversation = self.db.conversations[row.conversation_id]
            return ClaimedMessage(
                message_id=row.id,
                conversation_id=row.conversation_id,
                user_id=row.user_id,
                attempt=row.attempts,
                claim_token=row.claim_token,
                lease_expires_at=repr(row.lease_expires_at),
                system_prompt=conversation.fields.get("system_prompt"),
                model=conversation.fields.get("model"),
                context=self._context(row, token_budget, max_messages),
            )

    async def complete_message_for_reply(self, claim: ClaimedMessage, reply: ModelReply) -> StoredReply | None:
        self._enter("complete_message_for_reply")
        with self.db.lock:
            row = self.db.messages.get(claim.message_id)
            if row is None:
                return None
            if self._holds(row, claim):
                if row.reply is None:  # reply_to is unique: the first writer's reply stays
                    row.reply = StoredReply(str(uuid.uuid4()), reply.content, row.conversation_id)
                row.status, row.error, row.lease_expires_at, row.claim_token = "done", None, None, None
            if row.reply is None:
                raise ClaimSuperseded(f"message is {row.status} under another claim")
            return dataclasses.replace(row.reply, next_message_id=self._next_to_answer(row.conversation_id))

    async def fail_message(self, claim: ClaimedMessage, error: str) -> FailedMessage:
        self._enter("fail_message")
        with self.db.lock:
            row = self.db.messages.get(claim.message_id)
            if row is None:
                return FailedMessage(False)
            failed = self._holds(row, claim)
            if failed:
                row.status, row.error, row.lease_expires_at, row.claim_token = "failed", error, None, None
            return FailedMessage(failed, self._next_to_answer(row.conversation_id))

    async def begin_reply(self, claim: ClaimedMessage, content: str) -> StreamingReply:
        self._enter("begin_reply")
        with self.db.lock:
            row = self.db.messages.get(claim.message_id)
            if row is None or not self._holds(row, claim):
                raise ClaimSuperseded("the message is no longer under this claim")
            reply_id = row.streaming.reply_id if row.streaming else str(uuid.uuid4())
            row.streaming = StreamingRow(reply_id, content, row.attempts)
            return StreamingReply(reply_id, row.attempts)

    async def reply_tick(self, checkpoints: list[ReplyCheckpoint], streaming: list[str], lease_seconds: int) -> TickAnswer:
        self._enter("reply_tick")
        superseded = []
        with self.db.lock:
            for checkpoint in checkpoints:
                row = self.db.messages.get(checkpoint.message_id)
                if (row is None or row.status != "processing" or row.claim_token != checkpoint.claim_token
                        or row.streaming is None or row.streaming.status != "streaming"):
                    superseded.append(checkpoint.message_id)
                    continue
                row.streaming.content = checkpoint.content
                row.lease_expires_at = self.db.clock() + lease_seconds
            stops = [m for m in streaming if m in self.db.messages and self.db.messages[m].stop_requested]
        return TickAnswer(superseded=sorted(superseded), stop_requested=sorted(stops))

    async def finish_reply(
        self, claim: ClaimedMessage, content: str, status: str, error: str | None, reply: ModelReply | None
    ) -> MessageOutcome | None:
        self._enter("finish_reply")
        with self.db.lock:
            row = self.db.messages.get(claim.message_id)
            if row is None:
                return None
            if not self._holds(row, claim):
                raise ClaimSuperseded(f"message is {row.status} under another claim")
            reply_id = row.streaming.reply_id if row.streaming else str(uuid.uuid4())
            row.streaming = StreamingRow(reply_id, content, row.attempts, status, error)
            row.reply = StoredReply(reply_id, content, row.conversation_id) if content or status == "done" else None
            row.status, row.error, row.lease_expires_at, row.claim_token = status, error, None, None
            outcome = self.db.outcome(row.id)
            assert outcome is not None
            return dataclasses.replace(outcome, next_message_id=self._next_to_answer(row.conversation_id))

    async def claim_conversation_title(self, conversation_id: str) -> TitleRequest | None:
        self._enter("claim_conversation_title")
        with self.db.lock:
            conversation = self.db.conversations.get(conversation_id)
            if (conversation is None or conversation.fields.get("title") is not None
                    or conversation.title_requested_at is not None
                    or self.db.tokens[conversation.user_id] >= self.db.tokens_per_day):
                return None
            turns = sorted((row for row in self.db.messages.values()
                            if row.conversation_id == conversation_id and row.status == "done" and row.reply),
                           key=lambda row: row.seq)
            if not turns:
                return None
            conversation.title_requested_at = _now_text()
            first = turns[0]
            assert first.reply is not None
            return TitleRequest(
                conversation.user_id,
                conversation.fields.get("model"),
                [{"role": "user", "content": first.content}, {"role": "assistant", "content": first.reply.content}],
            )

    async def set_conversation_title(self, conversation_id: str, title: str, tokens: int) -> bool:
        """As the SQL: the tokens count whatever happens; the title (one line, at most 80
        characters, without quotes) only where none is set."""
        self._enter("set_conversation_title")
        with self.db.lock:
            conversation = self.db.conversations.get(conversation_id)
            if conversation is None:
                return False
            self.db.tokens[conversation.user_id] += tokens
            cleaned = " ".join(title.split()).strip(" \"'`")[:80].rstrip()
            if not cleaned or conversation.fields.get("title") is not None:
                return False
            conversation.fields["title"] = cleaned
            return True

    def configure_chat_models(self, models: list[str]) -> None:
        self._enter("configure_chat_models")
        self.chat_models = list(models)

    async def release_message(self, message_id: str, claim_token: str) -> bool:
        self._enter("release_message")
        with self.db.lock:
            row = self.db.messages.get(message_id)
            if row is None or row.status != "processing" or row.claim_token != claim_token:
                return False
            row.lease_expires_at, row.claim_token = self.db.clock() - 0.001, None
            row.attempts = max(row.attempts - 1, 0)
            return True

    def list_stalled_messages(self, pending_grace_seconds: int, max_count: int) -> list[str]:
        self._enter("list_stalled_messages")
        with self.db.lock:
            now = self.db.clock()
            heads = {row.conversation_id: self._earliest_unanswered(row.conversation_id) for row in self.db.messages.values()}
            stalled = [
                row for row in self.db.messages.values()
                if ((row.status == "pending" and row.created_at < now - pending_grace_seconds)
                    or (row.status == "processing" and row.lease_expires_at is not None and row.lease_expires_at < now))
                and heads[row.conversation_id] is row  # later ones wait, and are handed on
            ]
            return [row.id for row in sorted(stalled, key=lambda row: row.created_at)[:max_count]]

    def settled_messages(self, message_ids: list[str]) -> list[str]:
        self._enter("settled_messages")
        with self.db.lock:
            settled = ("done", "failed", "stopped")
            return [i for i in message_ids if i in self.db.messages and self.db.messages[i].status in settled]

    def ping(self) -> None:
        self._enter("ping")

    def count_pending_messages(self) -> int:
        self._enter("count_pending_messages")
        with self.db.lock:
            return sum(1 for row in self.db.messages.values() if row.status == "pending")

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        self.check(method)

    @staticmethod
    def _holds(row: Row, claim: ClaimedMessage) -> bool:
        """Fencing: only the message's current claim may settle it."""
        return row.status == "processing" and row.claim_token == claim.claim_token

    @staticmethod
    def _claimable(row: Row, now: float) -> bool:
        if row.status == "pending":
            return True
        return row.status == "processing" and row.lease_expires_at is not None and row.lease_expires_at < now

    def _earliest_unanswered(self, conversation_id: str) -> Row | None:
        unanswered = [
            row for row in self.db.messages.values()
            if row.conversation_id == conversation_id and row.status in ("pending", "processing")
        ]
        return min(unanswered, key=lambda row: row.seq, default=None)

    def _next_to_answer(self, conversation_id: str) -> str | None:
        """next_message_to_answer: the earliest unanswered message, if nobody holds it."""
        earliest = self._earliest_unanswered(conversation_id)
        return earliest.id if earliest is not None and earliest.status == "pending" else None

    def _context(self, target: Row, token_budget: int, max_messages: int) -> list[dict[str, str]]:
        """fetch_message_context's rule: the newest messages that fit the budget, oldest first,
        in the conversation's order (seq; a reply right after its message)."""
        history: list[tuple[float, str, str]] = []
        for row in self.db.messages.values():
            if row.conversation_id != target.conversation_id or row.seq > target.seq:
                continue
            if row.status != "failed" or row.id == target.id:
                history.append((row.seq, "user", row.content))
            if row.reply is not None and row.id != target.id:
                history.append((row.seq + 1, "assistant", row.reply.content))
        history.sort(key=lambda item: item[0])
        kept: list[dict[str, str]] = []
        tokens = 0
        for _, role, content in reversed(history[-max_messages:]):
            tokens += len(content) // 4 + 4
            if tokens > token_budget and kept:
                break
            kept.append({"role": role, "content": content})
        return list(reversed(kept))


class InMemoryCallerStore(Faults):
    """chat.ports.CallerStore for one caller: row-level security as "only your own rows", and the
    database's refusals as the adapter names them (a malformed id or content is InvalidRequest)."""

    def __init__(self, database: InMemoryDatabase, caller: Caller) -> None:
        super().__init__()
        self.db = database
        self.caller = caller

    def insert_message(self, message_id: str, conversation_id: str, content: str, client_message_id: str | None) -> str:
        self.check("insert_message")
        _ids(message_id, conversation_id, client_message_id)
        if len(content) not in USER_MESSAGE_LENGTH:
            raise InvalidRequest(DATA_REFUSED_MESSAGE)
        with self.db.lock:
            self._own_conversation(conversation_id)
            if client_message_id and any(
                row.client_message_id == client_message_id and row.user_id == self.caller.user_id
                for row in self.db.messages.values()
            ):
                raise DuplicateClientMessage(client_message_id)
            self.db.add_message(conversation_id, content, id=message_id, client_message_id=client_message_id)
        if self.db.on_user_message is not None:
            self.db.on_user_message(message_id)
        return message_id

    def find_client_message(self, client_message_id: str) -> tuple[str, str] | None:
        self.check("find_client_message")
        _ids(client_message_id)
        with self.db.lock:
            for row in self.db.messages.values():
                if row.client_message_id == client_message_id and row.user_id == self.caller.user_id:
                    return row.id, row.conversation_id
        return None

    def message_outcome(self, message_id: str) -> MessageOutcome | None:
        """As message_outcome's join: the reply row whatever its state (a streaming one's text so far)."""
        self.check("message_outcome")
        _ids(message_id)
        with self.db.lock:
            row = self._own_message(message_id)
            outcome = self.db.outcome(message_id) if row else None
            if row is None or outcome is None or row.streaming is None:
                return outcome
            return dataclasses.replace(outcome, reply_id=row.streaming.reply_id, reply=row.streaming.content)

    def latest_user_message(self, conversation_id: str) -> tuple[str, str] | None:
        self.check("latest_user_message")
        _ids(conversation_id)
        with self.db.lock:
            rows = [r for r in self.db.messages.values()
                    if r.conversation_id == conversation_id and r.user_id == self.caller.user_id]
            latest = max(rows, key=lambda r: r.seq, default=None)
            return (latest.id, latest.status) if latest else None

    def reply_progress(self, message_id: str) -> ReplyProgress | None:
        """The message's status and its reply row as last written (begun, checkpointed or ended)."""
        outcome = self.message_outcome(message_id)
        if outcome is None:
            return None
        with self.db.lock:
            streamed = self.db.messages[message_id].streaming
        if streamed is not None:
            return ReplyProgress(outcome.status, streamed.reply_id, streamed.content, streamed.attempt, outcome.error)
        # A reply written whole (complete_message_for_reply) has no attempt: the column is the streamed rows'.
        return ReplyProgress(outcome.status, outcome.reply_id, outcome.reply, None, outcome.error)

    def stop_reply(self, message_id: str) -> str:
        """As the SQL: a message nobody generates (pending, or its worker's lease ran out) is
        stopped at once with its partial reply; a live one is asked; a settled one left as it is."""
        self.check("stop_reply")
        _ids(message_id)
        with self.db.lock:
            row = self._own_message(message_id)
            if row is None:
                raise MessageNotFound(message_id)
            if row.status in ("done", "failed", "stopped"):
                return row.status
            row.stop_requested = True  # a generating worker learns it from its next reply tick
            expired = row.lease_expires_at is not None and row.lease_expires_at < self.db.clock()
            if row.status == "pending" or expired:
                row.status, row.lease_expires_at, row.claim_token = "stopped", None, None
                if row.streaming is not None and row.streaming.status == "streaming":
                    row.streaming.status = "stopped"
                    row.reply = StoredReply(row.streaming.reply_id, row.streaming.content, row.conversation_id)
            return row.status

    def conversation_history(self, conversation_id: str, before: str | None, page_size: int) -> dict[str, Any]:
        """A page of the conversation's rows in order (each message, then its reply), newest page first."""
        self.check("conversation_history")
        _ids(conversation_id, before)
        with self.db.lock:
            self._own_conversation(conversation_id)
            rows = sorted((r for r in self.db.messages.values() if r.conversation_id == conversation_id),
                          key=lambda r: r.seq)
            items = [item for row in rows for item in _history_rows(row)]
        end = len(items)
        if before is not None:
            end = next((index for index, item in enumerate(items) if item["id"] == before), -1)
            if end < 0:
                raise CursorNotFound(before)
        page = items[max(end - page_size, 0):end]
        return {"messages": page, "next_before": page[0]["id"] if page and end > page_size else None}

    def message_conversation(self, message_id: str) -> str | None:
        self.check("message_conversation")
        with self.db.lock:
            row = self._own_message_or_its_replys(message_id)
            return row.conversation_id if row else None

    def regenerate_message(self, message_id: str) -> str:
        """As the SQL: a new user row with the message's content and place, `regenerates` naming
        the first of its kind; a reply's id stands for the message it answers."""
        self.check("regenerate_message")
        with self.db.lock:
            target = self._own_message_or_its_replys(message_id)
            if target is None:
                raise MessageNotFound(message_id)
            created = self.db.add_message(
                target.conversation_id, target.content, parent_id=target.parent_id,
                regenerates=target.regenerates or target.id, edit_of=target.edit_of,
            )
        return self._delivered(created)

    def edit_message(self, message_id: str, content: str) -> str:
        """As the SQL: a sibling of the version shown (a regeneration shows what it regenerates)."""
        self.check("edit_message")
        with self.db.lock:
            target = self.db.messages.get(message_id)
            if target is None or target.user_id != self.caller.user_id:
                raise MessageNotFound(message_id)
            shown = self.db.messages[target.regenerates] if target.regenerates else target
            created = self.db.add_message(
                target.conversation_id, content, parent_id=shown.parent_id, edit_of=shown.edit_of or shown.id
            )
        return self._delivered(created)

    def conversation_branch(
        self, conversation_id: str, leaf: str | None, before: str | None, page_size: int
    ) -> dict[str, Any]:
        """conversation_branch's rule: root to the newest message below `leaf` (or the newest
        message), a regeneration shown as the message it regenerates, with the versions of each."""
        self.check("conversation_branch")
        with self.db.lock:
            self._own_conversation(conversation_id)
            rows = [r for r in self.db.messages.values() if r.conversation_id == conversation_id]
            if leaf is not None:
                tip = self._own_message_or_its_replys(leaf)
                if tip is None or tip.conversation_id != conversation_id:
                    raise LeafNotFound(leaf)
                tip = max((r for r in rows if tip.id in self._ancestry(r)), key=lambda r: r.seq)
            else:
                tip = max(rows, key=lambda r: r.seq, default=None)
            path = list(reversed(self._ancestry(tip))) if tip else []
            items = [item for row_id in path for item in self._turn(self.db.messages[row_id], rows)]
            if before is not None:
                ids = [item["id"] for item in items]
                if before not in ids:
                    raise CursorNotFound(before)
                items = items[: ids.index(before)]
            page = items[-page_size:]
            return {"messages": page, "next_before": page[0]["id"] if len(items) > page_size else None,
                    "leaf": tip.id if tip else None}

    def search_messages(self, query: str, max_results: int) -> list[dict[str, Any]]:
        """Every word of `query` in the text (the SQL ranks with full-text search; here, all words match)."""
        self.check("search_messages")
        words = query.lower().split()
        with self.db.lock:
            found = []
            for row in sorted(self.db.messages.values(), key=lambda r: -r.seq):
                if row.user_id != self.caller.user_id or not words:
                    continue
                texts = [(row.id, "user", row.content)] + ([(row.reply.reply_id, "assistant", row.reply.content)]
                                                           if row.reply else [])
                for found_id, role, text in texts:
                    if all(word in text.lower() for word in words):
                        conversation = self.db.conversations[row.conversation_id]
                        found.append({"message_id": found_id, "conversation_id": row.conversation_id,
                                      "conversation_title": conversation.fields.get("title"), "role": role,
                                      "snippet": text[:200], "created_at": row.created_at, "rank": 0.1})
            return found[:max_results]

    def chat_quota(self) -> dict[str, Any]:
        self.check("chat_quota")
        with self.db.lock:
            sent = sum(1 for row in self.db.messages.values() if row.user_id == self.caller.user_id)
            used = self.db.tokens[self.caller.user_id]
            return {"messages_per_day": 1000, "messages_today": sent, "messages_left_today": max(1000 - sent, 0),
                    "tokens_per_day": self.db.tokens_per_day, "tokens_today": used,
                    "tokens_left_today": max(self.db.tokens_per_day - used, 0)}

    def _own_message_or_its_replys(self, message_id: str) -> Row | None:
        """The caller's user message by its id or its reply's id (a reply stands for its message)."""
        for row in self.db.messages.values():
            if (row.id == message_id or (row.reply and row.reply.reply_id == message_id)) \
                    and row.user_id == self.caller.user_id:
                return row
        return None

    def _ancestry(self, row: Row) -> list[str]:
        """The row's id and its parents' up to the root."""
        chain = [row.id]
        while (parent := self.db.messages[chain[-1]].parent_id) is not None:
            chain.append(parent)
        return chain

    def _turn(self, row: Row, rows: list[Row]) -> list[dict[str, Any]]:
        """One user message of a branch as conversation_branch shows it, then its reply if any."""
        shown = self.db.messages[row.regenerates] if row.regenerates else row
        first = shown.edit_of or shown.id
        versions = sorted((r for r in rows if (r.id == first or r.edit_of == first) and r.regenerates is None),
                          key=lambda r: r.seq)
        replies = sorted((r for r in rows if r.id == shown.id or r.regenerates == shown.id), key=lambda r: r.seq)
        user = {
            "id": shown.id, "role": "user", "content": shown.content, "status": shown.status, "error": shown.error,
            "reply_to": None, "parent_id": shown.parent_id, "edit_of": shown.edit_of, "regenerates": shown.regenerates,
            "versions": {"index": versions.index(shown), "count": len(versions), "ids": [r.id for r in versions]},
            "reply_versions": {"index": replies.index(row), "count": len(replies), "ids": [r.id for r in replies],
                               "status": row.status, "error": row.error},
        }
        if row.reply is None:
            return [user]
        return [user, {"id": row.reply.reply_id, "role": "assistant", "content": row.reply.content,
                       "status": row.status, "error": row.error, "reply_to": row.id, "parent_id": row.id}]

    def _delivered(self, message_id: str) -> str:
        if self.db.on_user_message is not None:
            self.db.on_user_message(message_id)
        return message_id

    def create_conversation(self, fields: dict[str, Any]) -> dict[str, Any]:
        self.check("create_conversation")
        with self.db.lock:
            conversation_id = self.db.add_conversation(self.caller.user_id, **fields)
            return self.db.conversations[conversation_id].row()

    def list_conversations(self, before: str | None, page_size: int) -> dict[str, Any]:
        """The caller's conversations newest first, a page at a time (`before`: the last one seen)."""
        self.check("list_conversations")
        _ids(before)
        with self.db.lock:
            own = [c for c in reversed(self.db.conversations.values()) if c.user_id == self.caller.user_id]
        start = 0
        if before is not None:
            start = next((index + 1 for index, c in enumerate(own) if c.id == before), -1)
            if start < 0:
                raise CursorNotFound(before)
        page = [{name: value for name, value in c.row().items() if name not in ("user_id", "title_requested_at")}
                for c in own[start:start + page_size]]
        more = len(own) > start + page_size
        return {"conversations": page, "next_before": page[-1]["id"] if page and more else None}

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        self.check("get_conversation")
        _ids(conversation_id)
        with self.db.lock:
            return self._own_conversation(conversation_id).row()

    def delete_conversation(self, conversation_id: str) -> None:
        self.check("delete_conversation")
        _ids(conversation_id)
        with self.db.lock:
            self._own_conversation(conversation_id)
            del self.db.conversations[conversation_id]
            for message_id in [i for i, r in self.db.messages.items() if r.conversation_id == conversation_id]:
                del self.db.messages[message_id]

    def _own_conversation(self, conversation_id: str) -> Conversation:
        conversation = self.db.conversations.get(conversation_id)
        if conversation is None or conversation.user_id != self.caller.user_id:
            raise ConversationNotFound(conversation_id)  # someone else's is indistinguishable from none
        return conversation

    def _own_message(self, message_id: str) -> Row | None:
        row = self.db.messages.get(message_id)
        return row if row is not None and row.user_id == self.caller.user_id else None


def _ids(*ids: str | None) -> None:
    """Postgres refuses a uuid column's value that is not one (22P02): InvalidRequest."""
    for each in ids:
        try:
            if each is not None:
                uuid.UUID(each)
        except ValueError:
            raise InvalidRequest(DATA_REFUSED_MESSAGE) from None


def _history_rows(row: Row) -> list[dict[str, Any]]:
    """A user message as conversation_history shows it, then its reply row if it has one."""
    items = [{"id": row.id, "role": "user", "content": row.content, "status": row.status, "error": row.error,
              "reply_to": None, "created_at": row.inserted_at, "seq": row.seq}]
    streamed, reply = row.streaming, row.reply
    if streamed is not None:
        items.append({"id": streamed.reply_id, "role": "assistant", "content": streamed.content,
                      "status": streamed.status, "error": streamed.error})
    elif reply is not None:
        items.append({"id": reply.reply_id, "role": "assistant", "content": reply.content, "status": "done", "error": None})
    for item in items[1:]:
        item.update(reply_to=row.id, created_at=row.inserted_at, seq=row.seq + 1)
    return items


def caller_stores(database: InMemoryDatabase) -> tuple[CallerStoreFactory, dict[str, InMemoryCallerStore]]:
    """A CallerStoreFactory over `database`, and the stores it opened by user id (one per user)."""
    opened: dict[str, InMemoryCallerStore] = {}

    def open_for(caller: Caller) -> InMemoryCallerStore:
        return opened.setdefault(caller.user_id, InMemoryCallerStore(database, caller))

    return open_for, opened


@dataclass(frozen=True)
class BrokeOff:
    """A scripted step: the provider breaks off with `error` after the reply's first piece
    (streamed); a whole answer raises it at once."""

    error: ModelError
    text: str = "Partial answer"


class ScriptedModel:
    """chat.ports.StreamingChatModel answering "Echo: <last message>", or raising what the test
    queued. Streamed, the reply comes word by word (each word with the space before it).
    `gate`, when set, holds every call until the test releases it (a generation in progress);
    `gate_between_pieces` holds each piece after the first (a reply mid-stream); `gates` holds
    the calls for one model only. `calls` records each call's (model, max_tokens)."""

    def __init__(self) -> None:
        self.script: deque[ModelReply | BrokeOff | BaseException] = deque()
        self.prompts: list[list[dict[str, str]]] = []
        self.calls: list[tuple[str, int | None]] = []
        self.gate: threading.Event | None = None
        self.gates: dict[str, threading.Event] = {}
        self.gate_between_pieces: threading.Event | None = None
        self.streams: list[ScriptedStream] = []
        self.down: Exception | None = None  # what the readiness probe raises while set

    async def ping(self) -> None:
        if self.down is not None:
            raise self.down

    async def complete(self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None) -> ModelReply:
        step = await self._next(messages, model, max_tokens)
        if isinstance(step, BrokeOff):
            raise step.error
        return step

    async def stream(self, messages: list[dict[str, str]], model: str) -> ScriptedStream:
        step = await self._next(messages, model)
        if isinstance(step, BrokeOff):
            stream = ScriptedStream(ModelReply(step.text, model, 3, 2), step.error, self.gate_between_pieces)
        else:
            stream = ScriptedStream(step, None, self.gate_between_pieces)
        self.streams.append(stream)
        return stream

    async def _next(self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None) -> ModelReply | BrokeOff:
        self.prompts.append(messages)
        self.calls.append((model, max_tokens))
        for gate in (self.gate, self.gates.get(model)):
            if gate is not None:
                await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        step = self.script.popleft() if self.script else None
        if isinstance(step, BaseException):
            raise step
        return step or ModelReply(f"Echo: {messages[-1]['content']}", model, 3, 2)


class ScriptedStream:
    """chat.ports.ModelStream of a scripted reply: its words, then the scripted error if any."""

    def __init__(self, reply: ModelReply, error: BaseException | None, gate: threading.Event | None) -> None:
        words = reply.content.split(" ")
        self.pieces = [words[0]] + [f" {word}" for word in words[1:]]
        self._reply = reply
        self._error = error
        self._gate = gate
        self.closed = False
        self.sent: list[str] = []

    async def _pieces(self) -> AsyncIterator[str]:
        for index, piece in enumerate(self.pieces):
            if index and self._gate is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._gate.wait, 10)
            if self.closed:
                return
            self.sent.append(piece)
            yield piece
            if self._error is not None:
                raise self._error

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces()

    def close(self) -> None:
        self.closed = True

    @property
    def reply(self) -> ModelReply:
        return dataclasses.replace(self._reply, content="".join(self.sent))


class RecordingBroadcaster:
    """chat.ports.ReplyBroadcaster that keeps every request; `fail_next` loses the next one."""

    def __init__(self) -> None:
        self.requests: list[list[Broadcast]] = []
        self.fail_next = False
        self.subscribers: list[Callable[[list[Broadcast]], None]] = []  # Realtime's receivers (InMemoryReplyChannels)
        self.down: Exception | None = None  # what the readiness probe raises while set

    async def ping(self) -> None:
        if self.down is not None:
            raise self.down

    async def send(self, messages: list[Broadcast]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise BroadcastFailed("down")
        self.requests.append(messages)
        for deliver in self.subscribers:
            deliver(messages)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(m.event, m.payload) for request in self.requests for m in request]


class InMemoryReplyChannels:
    """chat.ports.ReplyChannels on a RecordingBroadcaster, as Realtime would relay it: what is
    sent on a followed conversation's channel reaches the feed, joined at once. Several processes'
    channels may share one broadcaster (a reply generated in another process)."""

    def __init__(self, broadcaster: RecordingBroadcaster, feed: ReplyFeed) -> None:
        self.feed = feed
        self.followers: dict[str, int] = defaultdict(int)  # by topic, chat:<conversation_id>
        self.joined = True
        broadcaster.subscribers.append(self.deliver)

    @contextlib.contextmanager
    def follow(self, conversation_id: str) -> Iterator[InMemoryReplyChannels]:
        topic = f"chat:{conversation_id}"
        self.followers[topic] += 1
        try:
            yield self
        finally:
            self.followers[topic] -= 1

    def deliver(self, messages: list[Broadcast]) -> None:
        for message in messages:
            routed = feed_event_of(message.event, message.payload) if self.followers[message.topic] else None
            if routed is not None:
                self.feed.publish(*routed)


def reply_streaming(store: InMemoryMessageStore, model: ScriptedModel, broadcaster: RecordingBroadcaster) -> ReplyStreaming:
    """Streaming on fakes with fast ticks, as server/wiring.py assembles it."""
    return ReplyStreaming(
        model=model,
        broadcasts=ReplyBroadcasts(broadcaster, interval_seconds=0.01),
        live=LiveReplies(store, tick_seconds=0.01, checkpoint_seconds=0.02, lease_seconds=30),
        feed=ReplyFeed(),
    )
