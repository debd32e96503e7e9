"""The answering flow's store (chat.ports.ReplyStore): its SQL functions through PostgREST's
`/rpc`, as the service role, awaited on the reply engine's loop.

aiohttp rather than supabase-py (httpx): one event loop per process serves every reply being
answered, so a store call must never block it, and aiohttp parses answers in C, so each call
costs the loop little CPU. The request is the one supabase-py's `.rpc()` sends (its headers, the
named arguments as a JSON object), and a refusal goes through the same one table
(adapters/postgrest_errors.py) as every other Supabase call."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from postgrest.exceptions import APIError

from adapters.http_session import STORE_TIMEOUT_SECONDS, LoopSession
from adapters.postgrest_errors import TRANSPORT_ERRORS, store_error
from chat.errors import ClaimSuperseded
from chat.outcome import MessageOutcome
from chat.ports import (
    ClaimedMessage,
    FailedMessage,
    ModelReply,
    ReplyCheckpoint,
    StoredReply,
    StreamingReply,
    TickAnswer,
    TitleRequest,
    WaitingMessage,
)


class PostgrestReplyStore:
    def __init__(self, supabase_url: str, service_role_key: str, session: LoopSession) -> None:
        self.url = f"{supabase_url.rstrip('/')}/rest/v1/rpc/"
        self.headers = {
            "apikey": service_role_key,
            "Authorization": f"Bearer {service_role_key}",
            "Accept-Profile": "public",
            "Content-Profile": "public",
        }
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=STORE_TIMEOUT_SECONDS)

    async def claim_message_for_reply(
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
        row = await self._rpc(
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

    async def complete_message_for_reply(self, claim: ClaimedMessage, reply: ModelReply) -> StoredReply | None:
        """The reply as stored (the first one, if the message was answered already); None if the
        message is gone. ClaimSuperseded: the claim is stale and the message unanswered."""
        row = await self._rpc(
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

    async def fail_message(self, claim: ClaimedMessage, error: str) -> FailedMessage:
        params = {"message_id": claim.message_id, "claim_token": claim.claim_token, "error": error}
        row = await self._rpc("fail_message", params) or {}
        return FailedMessage(failed=bool(row.get("failed")), next_message_id=row.get("next_message_id"))

    async def release_message(self, message_id: str, claim_token: str) -> bool:
        return bool(await self._rpc("release_message", {"message_id": message_id, "claim_token": claim_token}))

    async def begin_reply(self, claim: ClaimedMessage, content: str) -> StreamingReply:
        params = {"message_id": claim.message_id, "claim_token": claim.claim_token, "content": content}
        row = await self._rpc("begin_reply", params)
        if not row:
            raise ClaimSuperseded("the message is no longer under this claim")
        return StreamingReply(reply_id=row["reply_id"], attempt=row["attempt"])

    async def reply_tick(
        self, checkpoints: list[ReplyCheckpoint], streaming: list[str], lease_seconds: int
    ) -> TickAnswer:
        items = [
            {"message_id": item.message_id, "claim_token": item.claim_token, "content": item.content}
            for item in checkpoints
        ]
        answer = await self._rpc("reply_tick", {"checkpoints": items, "streaming": streaming, "lease_seconds": lease_seconds})
        return TickAnswer(superseded=list(answer["superseded"]), stop_requested=list(answer["stop_requested"]))

    async def finish_reply(
        self, claim: ClaimedMessage, content: str, status: str, error: str | None, reply: ModelReply | None
    ) -> MessageOutcome | None:
        row = await self._rpc(
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

    async def claim_conversation_title(self, conversation_id: str) -> TitleRequest | None:
        row = await self._rpc("claim_conversation_title", {"conversation_id": conversation_id})
        if not row:
            return None
        return TitleRequest(user_id=row["user_id"], model=row.get("model"), messages=list(row.get("messages") or []))

    async def set_conversation_title(self, conversation_id: str, title: str, tokens: int) -> bool:
        params = {"conversation_id": conversation_id, "title": title, "tokens": tokens}
        return bool(await self._rpc("set_conversation_title", params))

    async def _rpc(self, function: str, params: dict[str, Any]) -> Any:
        """The function's JSON answer (None for an empty one). No answer at all is
        StoreUnavailable; a refusal is the error the one table names for its code."""
        try:
            async with self.session.get().post(
                self.url + function, json=params, headers=self.headers, timeout=self.timeout
            ) as response:
                status, body = response.status, await response.read()
        except TRANSPORT_ERRORS as error:
            raise store_error(error, function) from error
        if not 200 <= status < 300:
            raise store_error(refusal(status, body), function)
        try:
            return json.loads(body) if body else None
        except ValueError:  # not PostgREST answering (a proxy's page): our setup's fault, not an outage
            raise store_error(APIError({"code": str(status), "message": "the answer is not JSON"}), function) from None


def refusal(status: int, body: bytes) -> APIError:
    """PostgREST's error body {code, message, details, hint}; an answer without one (a proxy's
    page) is named by its HTTP status, as supabase-py names it, so 502/503/504 read as unavailable."""
    try:
        error = json.loads(body)
    except ValueError:
        error = None
    if isinstance(error, dict) and ("code" in error or "message" in error):
        return APIError(error)
    return APIError({"code": str(status), "message": f"HTTP {status} without PostgREST's error body"})
