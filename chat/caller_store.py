"""Supabase requests made AS the signed-in caller, so row-level security decides what they see
and do. Each request gets its own light PostgREST client carrying the caller's token over one
shared connection pool: auth is never switched on a client other threads use."""

from __future__ import annotations

from typing import Any

import httpx
from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError
from postgrest.types import ReturnMethod

from chat.errors import (
    ConversationNotFound,
    CursorNotFound,
    DuplicateClientMessage,
    InvalidCredentials,
    InvalidRequest,
    StoreUnavailable,
)
from chat.outcome import MessageOutcome
from chat.settings import Settings

NOT_VISIBLE = {"42501", "23503", "PGRST116"}  # RLS refusal, missing parent, no row: all "not found"
JWT_REFUSED = {"PGRST301", "PGRST302", "PGRST303"}


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

    def consume_quota(self, max_requests: int, window_seconds: int) -> tuple[bool, int]:
        result = self._rpc("consume_chat_quota", {"max_requests": max_requests, "window_seconds": window_seconds})
        return bool(result["allowed"]), int(result["retry_after_seconds"])

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
            if code in NOT_VISIBLE:
                raise ConversationNotFound(code) from error
            if code in JWT_REFUSED:
                raise InvalidCredentials(error.message or code) from error
            if code == "P0002":
                raise CursorNotFound(error.message or "unknown cursor") from error
            if code.startswith("22") or code in ("23502", "23514"):  # data the database cannot take
                raise InvalidRequest(error.message or "invalid parameter") from error
            if code == "23505":
                raise
            raise StoreUnavailable(f"Supabase refused the request ({code}): {error.message}") from error
