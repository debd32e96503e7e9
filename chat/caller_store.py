"""Supabase requests made AS the signed-in caller, so row-level security decides what they see
and do. Each request gets its own light PostgREST client carrying the caller's token over one
shared connection pool: auth is never switched on a client other threads use."""

from __future__ import annotations

import json
from typing import Any

import httpx
from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError
from postgrest.types import ReturnMethod

from chat.errors import (
    ConversationLimitReached,
    ConversationNotFound,
    CursorNotFound,
    DuplicateClientMessage,
    InvalidCredentials,
    InvalidRequest,
    RateLimited,
    StoreUnavailable,
)
from chat.logging import get_logger
from chat.outcome import MessageOutcome
from chat.settings import Settings

logger = get_logger(__name__)
NOT_VISIBLE = {"42501", "23503", "PGRST116"}  # RLS refusal, missing parent, no row: all "not found"
JWT_REFUSED = {"PGRST301", "PGRST302", "PGRST303"}
# Refusals our migrations raise (RAISE SQLSTATE 'PGRST'): their message is written for the user.
OWN_BAD_REQUESTS = {"system_prompt_too_long", "model_not_allowed"}
# Postgres's own wording names internals (types, constraints, values): it stays in the logs.
DATA_REFUSED_MESSAGE = "a value could not be stored (wrong type, format or size)."


class CallerStore:
    def __init__(self, settings: Settings, http: httpx.Client) -> None:
        self.rest_url = f"{settings.supabase_url}/rest/v1"
        self.anon_key = settings.supabase_anon_key.get_secret_value()
        self.http = http

    def as_caller(self, access_token: str) -> CallerSession:
        headers = {"apikey": self.anon_key, "Authorization": f"Bearer {access_token}"}
        return CallerSession(SyncPostgrestClient(self.rest_url, headers=headers, http_client=self.http))


class CallerSession:
    def __init__(self, client: SyncPostgrestClient) -> None:
        self.client = client

    def insert_message(
        self, message_id: str, conversation_id: str, content: str, client_message_id: str | None
    ) -> str:
        """Insert with an id chosen here, so a waiter can be registered before the row exists."""
        row: dict[str, Any] = {"id": message_id, "conversation_id": conversation_id, "content": content}
        if client_message_id:
            row["client_message_id"] = client_message_id
        try:
            self._run(self.client.table("messages").insert(row, returning=ReturnMethod.minimal))
        except APIError as error:
            if error.code == "23505":
                raise DuplicateClientMessage(str(client_message_id)) from error
            raise
        return message_id

    def find_client_message(self, client_message_id: str) -> tuple[str, str] | None:
        rows = self._run(
            self.client.table("messages").select("id, conversation_id").eq("client_message_id", client_message_id)
        )
        return (str(rows[0]["id"]), str(rows[0]["conversation_id"])) if rows else None

    def message_outcome(self, message_id: str) -> MessageOutcome | None:
        result = self._rpc("message_outcome", {"message_id": message_id})
        return MessageOutcome(**result) if result else None

    def history(self, conversation_id: str, before: str | None, page_size: int) -> dict[str, Any]:
        page = self._rpc(
            "conversation_history", {"conversation_id": conversation_id, "before": before, "page_size": page_size}
        )
        if page is None:
            raise ConversationNotFound(conversation_id)
        return dict(page)

    def create_conversation(self, fields: dict[str, Any]) -> dict[str, Any]:
        try:
            return dict(self._run(self.client.table("conversations").insert(fields))[0])
        except ConversationNotFound as error:  # 23503 here: the token's user is not in auth.users
            raise InvalidCredentials("the signed-in user no longer exists") from error

    def list_conversations(self, before: str | None, page_size: int) -> dict[str, Any]:
        return dict(self._rpc("list_conversations", {"before": before, "page_size": page_size}))

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        rows = self._run(self.client.table("conversations").select("*").eq("id", conversation_id))
        if not rows:
            raise ConversationNotFound(conversation_id)
        return dict(rows[0])

    def delete_conversation(self, conversation_id: str) -> None:
        if not self._run(self.client.table("conversations").delete().eq("id", conversation_id)):
            raise ConversationNotFound(conversation_id)

    def _rpc(self, function: str, params: dict[str, Any]) -> Any:
        return self._run(self.client.rpc(function, params))

    @staticmethod
    def _run(query: Any) -> Any:
        """Execute one PostgREST request, turning its failures into the domain's named errors."""
        try:
            return query.execute().data
        except httpx.HTTPError as error:
            raise StoreUnavailable(f"Supabase unreachable: {type(error).__name__}") from error
        except APIError as error:
            code = str(error.code or "")
            if code == "quota_exceeded":
                raise _rate_limited(error) from error
            if code == "conversation_limit":
                raise ConversationLimitReached(error.message) from error
            if code in OWN_BAD_REQUESTS:
                raise InvalidRequest(error.message) from error
            if code == "cursor_not_found":
                raise CursorNotFound(error.message) from error
            if code in NOT_VISIBLE:
                raise ConversationNotFound(code) from error
            if code in JWT_REFUSED:
                raise InvalidCredentials(error.message or code) from error
            if code.startswith("22") or code in ("23502", "23514"):  # data the database cannot take
                logger.info("database refused the request's data", code=code)
                logger.debug("database refusal text", code=code, reason=error.message)
                raise InvalidRequest(DATA_REFUSED_MESSAGE) from error
            if code == "23505":
                raise
            raise StoreUnavailable(f"Supabase refused the request ({code}): {error.message}") from error


def _rate_limited(error: APIError) -> RateLimited:
    """A quota refusal: its details are JSON with the limit's name and the seconds until it resets."""
    try:
        details = json.loads(error.details or "{}")
    except (TypeError, ValueError):
        details = {}
    retry_after = details.get("retry_after_seconds") if isinstance(details, dict) else None
    limit = details.get("limit") if isinstance(details, dict) else None
    return RateLimited(
        int(retry_after) if isinstance(retry_after, int) and retry_after > 0 else 60,
        error.message or "A usage limit is reached; try again later.",
        str(limit or ""),
    )
