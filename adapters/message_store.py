"""The pipeline's store (chat.ports.MessageStore): its SQL functions, called through
supabase-py's .rpc() with the service role. One shared client is safe across threads because
its auth never changes."""

from __future__ import annotations

from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client

from adapters.postgrest_errors import store_error
from chat.errors import ChatError, ClaimSuperseded, StoreUnavailable
from chat.outcome import MessageOutcome
from chat.ports import ClaimedMessage, FailedMessage, ModelReply, StoredReply, StreamingReply, WaitingMessage

STORE_TIMEOUT_SECONDS = 10.0


def shared_http_client(max_connections: int) -> httpx.Client:
    """One pool of connections to Supabase per process, shared by every thread."""
    return httpx.Client(
        timeout=STORE_TIMEOUT_SECONDS,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
    )


def service_client(supabase_url: str, service_role_key: str, http: httpx.Client) -> Client:
    """The service-role client. Its auth never changes, so every thread may share it."""
    return create_client(
        supabase_url,
        service_role_key,
        options=ClientOptions(auto_refresh_token=False, persist_session=False, httpx_client=http),
    )


class SupabaseMessageStore:
    def __init__(self, client: Client) -> None:
        self.client = client

    def claim_message_for_reply(
        self,
        message_id: str,
        lease_seconds: int,
        max_attempts: int,
        token_budget: int,
        max_messages: int,
        claim_token: str | None = None,
    ) -> ClaimedMessage | WaitingMessage | None:
        """Claim the message under `claim_token` (chosen by the caller, so a claim whose answer
        never arrives can still be released by it) and read the context that fits `token_budget`
        (system prompt included), in one round trip."""
        row = self._rpc(
            "claim_message_for_reply",
            {
                "message_id": message_id,
                "token_budget": token_budget,
                "lease_seconds": lease_seconds,
                "max_attempts": max_attempts,
                "max_messages": max_messages,
                "claim_token": claim_token,
            },
        )
        if not row:
            return None
        if row.get("waiting"):
            return WaitingMessage(message_id=row["message_id"], waiting_for=row["waiting_for"])
        return ClaimedMessage(
            message_id=row["message_id"],
            conversation_id=row["conversation_id"],
            user_id=row["user_id"],
            attempt=row["attempt"],
            claim_token=row["claim_token"],
            lease_expires_at=row["lease_expires_at"],
            system_prompt=row.get("system_prompt"),
            model=row.get("model"),
            context=list(row.get("context") or []),
            system_prompt_trimmed=bool(row.get("system_prompt_trimmed")),
        )

    def complete_message_for_reply(self, claim: ClaimedMessage, reply: ModelReply) -> StoredReply | None:
        """Write the reply under this claim and return the reply as stored (if the message was
        already answered, that answer). None if the user message no longer exists (its
        conversation was deleted meanwhile). Raises ClaimSuperseded when the claim is stale and
        the message unanswered: the reply was dropped."""
        row = self._rpc(
            "complete_message_for_reply",
            {
                "message_id": claim.message_id,
                "claim_token": claim.claim_token,
                "content": reply.content,
                "model": reply.model,
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
            },
        )
        if not row:
            return None
        if row.get("reply_id") is None:
            raise ClaimSuperseded(f"message is {row.get('status')} under another claim")
        return StoredReply(
            reply_id=row["reply_id"],
            content=row["content"],
            conversation_id=row["conversation_id"],
            next_message_id=row.get("next_message_id"),
        )

    def begin_reply(self, claim: ClaimedMessage, content: str) -> StreamingReply:
        row = self._rpc("begin_reply", {"message_id": claim.message_id, "claim_token": claim.claim_token, "content": content})
        if not row:
            raise ClaimSuperseded("the message is no longer under this claim")
        return StreamingReply(reply_id=row["reply_id"], attempt=row["attempt"])

    def checkpoint_reply(self, claim: ClaimedMessage, content: str) -> bool:
        params = {"message_id": claim.message_id, "claim_token": claim.claim_token, "content": content}
        return bool(self._rpc("checkpoint_reply", params))

    def finish_reply(
        self, claim: ClaimedMessage, content: str, status: str, error: str | None, reply: ModelReply | None
    ) -> MessageOutcome | None:
        row = self._rpc(
            "finish_reply",
            {
                "message_id": claim.message_id,
                "claim_token": claim.claim_token,
                "content": content,
                "status": status,
                "error": error,
                "model": reply.model if reply else None,
                "prompt_tokens": reply.prompt_tokens if reply else None,
                "completion_tokens": reply.completion_tokens if reply else None,
            },
        )
        if not row:
            return None
        if row.get("superseded") or (status == "done" and row.get("reply_id") is None):
            raise ClaimSuperseded(f"message is {row.get('status')} under another claim")
        return MessageOutcome(
            claim.message_id,
            row["conversation_id"],
            row["status"],
            error,
            row.get("reply_id"),
            row.get("content"),
            row.get("next_message_id"),
        )

    def stop_requested_messages(self, message_ids: list[str]) -> list[str]:
        return [str(message_id) for message_id in self._rpc("stop_requested_messages", {"message_ids": message_ids}) or []]

    def fail_message(self, claim: ClaimedMessage, error: str) -> FailedMessage:
        """Mark the message failed under this claim (failed=False: the claim is stale, nothing
        changed), and learn which message of the conversation to answer next."""
        params = {"message_id": claim.message_id, "claim_token": claim.claim_token, "error": error}
        row = self._rpc("fail_message", params) or {}
        return FailedMessage(failed=bool(row.get("failed")), next_message_id=row.get("next_message_id"))

    def release_message(self, message_id: str, claim_token: str) -> bool:
        return bool(self._rpc("release_message", {"message_id": message_id, "claim_token": claim_token}))

    def list_stalled_messages(self, pending_grace_seconds: int, max_count: int) -> list[str]:
        rows = self._rpc(
            "list_stalled_messages", {"pending_grace_seconds": pending_grace_seconds, "max_count": max_count}
        )
        return [row["id"] for row in rows or []]

    def configure_chat_models(self, models: list[str]) -> None:
        """Publish the operator's model allowlist to the database, which refuses any other model
        when a conversation is written (on every path, not only ours)."""
        self._rpc("configure_chat_models", {"models": models})

    def ping(self) -> None:
        """One cheap request that needs Supabase, its database and our schema to all answer."""
        try:
            self.client.table("conversations").select("id").limit(1).execute()
        except (httpx.HTTPError, APIError) as error:
            # Not ready whatever the reason; the reason is in the message, for the operator.
            raise StoreUnavailable(str(store_error(error, "the readiness check"))) from error

    def settled_messages(self, message_ids: list[str]) -> list[str]:
        rows = self._rpc("settled_messages", {"message_ids": message_ids})
        return [row["id"] for row in rows or []]

    def _rpc(self, function: str, params: dict[str, Any]) -> Any:
        try:
            return self.client.rpc(function, params).execute().data
        except (httpx.HTTPError, APIError) as error:
            named: ChatError = store_error(error, function)
            raise named from error
