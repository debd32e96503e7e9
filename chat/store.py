"""The store adapter: the pipeline's SQL functions, called through supabase-py's .rpc() with
the service role. One shared client is safe across threads because its auth never changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client

from chat.errors import ClaimSuperseded, StoreUnavailable
from chat.settings import Settings

STORE_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ClaimedMessage:
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
    reply_id: str
    content: str
    conversation_id: str
    next_message_id: str | None = None  # the conversation's message to answer now, if any


@dataclass(frozen=True)
class FailedMessage:
    failed: bool  # False: the claim was stale, nothing changed
    next_message_id: str | None = None


def shared_http_client(settings: Settings) -> httpx.Client:
    """One pool of connections to Supabase per process, shared by every thread."""
    return httpx.Client(
        timeout=STORE_TIMEOUT_SECONDS,
        limits=httpx.Limits(max_connections=settings.worker_threads + 128, max_keepalive_connections=64),
    )


def service_client(settings: Settings, http: httpx.Client) -> Client:
    """The service-role client. Its auth never changes, so every thread may share it."""
    return create_client(
        settings.supabase_url,
        settings.supabase_service_role_key.get_secret_value(),
        options=ClientOptions(auto_refresh_token=False, persist_session=False, httpx_client=http),
    )


class MessageStore:
    def __init__(self, client: Client) -> None:
        self.client = client

    def claim_message(
        self,
        message_id: str,
        lease_seconds: int,
        max_attempts: int,
        token_budget: int,
        max_messages: int,
        claim_token: str,
    ) -> ClaimedMessage | WaitingMessage | None:
        """Claim the message under `claim_token` (chosen here, so a claim whose answer never
        arrives can still be released by it) and read the context that fits `token_budget`
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

    def fetch_context(self, message_id: str, token_budget: int, max_messages: int) -> list[dict[str, str]]:
        rows = self._rpc(
            "fetch_message_context",
            {"message_id": message_id, "token_budget": token_budget, "max_messages": max_messages},
        )
        return list(rows or [])

    def complete_message(
        self,
        message_id: str,
        claim_token: str,
        content: str,
        model: str,
        prompt_tokens: int | None,
        completion_tokens: int | None,
    ) -> StoredReply | None:
        """Write the reply under this claim and return the reply as stored (if the message was
        already answered, that answer). None if the user message no longer exists (its
        conversation was deleted meanwhile). Raises ClaimSuperseded when the claim is stale and
        the message unanswered: the reply was dropped."""
        row = self._rpc(
            "complete_message_for_reply",
            {
                "message_id": message_id,
                "claim_token": claim_token,
                "content": content,
                "model": model,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
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

    def fail_message(self, message_id: str, claim_token: str, error: str) -> FailedMessage:
        """Mark the message failed under this claim (failed=False: the claim is stale, nothing
        changed), and learn which message of the conversation to answer next."""
        row = self._rpc("fail_message", {"message_id": message_id, "claim_token": claim_token, "error": error})
        return FailedMessage(failed=bool(row and row.get("failed")), next_message_id=(row or {}).get("next_message_id"))

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
        except httpx.HTTPError as error:
            raise StoreUnavailable(f"Supabase unreachable: {type(error).__name__}") from error
        except APIError as error:
            raise StoreUnavailable(f"Supabase answered with an error: {error.code} {error.message}") from error

    def settled_messages(self, message_ids: list[str]) -> list[str]:
        rows = self._rpc("settled_messages", {"message_ids": message_ids})
        return [row["id"] for row in rows or []]

    def _rpc(self, function: str, params: dict[str, Any]) -> Any:
        try:
            return self.client.rpc(function, params).execute().data
        except httpx.HTTPError as error:
            raise StoreUnavailable(f"Supabase unreachable during {function}: {type(error).__name__}") from error
        except APIError as error:
            if _is_server_side(error):
                raise StoreUnavailable(f"Supabase failed during {function}: {error.message}") from error
            raise


def _is_server_side(error: APIError) -> bool:
    """PostgREST gateway or database trouble, as opposed to a request we got wrong."""
    code = str(error.code or "")
    return code.startswith(("08", "53", "57", "PGRST0")) or code in {"503", "502", "504", "40001", "40P01"}
