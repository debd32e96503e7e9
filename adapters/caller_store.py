"""The caller's store (chat.ports.CallerStore): Supabase requests made AS the signed-in caller,
so row-level security decides what they see and do. Each request gets its own light PostgREST
client carrying the caller's token over one shared connection pool: auth is never switched on a
client other threads use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError
from postgrest.types import ReturnMethod

from adapters.postgrest_errors import store_error
from chat.caller import Caller
from chat.errors import ChatError, ConversationNotFound, InvalidCredentials, MessageNotFound
from chat.outcome import MessageOutcome
from chat.ports import CallerStoreFactory, ReplyProgress

# Creating a conversation names no parent but the caller: a missing one is a user deleted since sign-in.
USER_GONE: Mapping[str, type[ChatError]] = {"23503": InvalidCredentials}
STOP_MEANING: Mapping[str, type[ChatError]] = {"P0002": MessageNotFound}  # missing, or not the caller's


def caller_store_factory(supabase_url: str, anon_key: str, http: httpx.Client) -> CallerStoreFactory:
    """Opens a PostgrestCallerStore per verified caller over the shared pool `http`."""
    rest_url = f"{supabase_url}/rest/v1"

    def open_for(caller: Caller) -> PostgrestCallerStore:
        headers = {"apikey": anon_key, "Authorization": f"Bearer {caller.access_token}"}
        return PostgrestCallerStore(SyncPostgrestClient(rest_url, headers=headers, http_client=http))

    return open_for


class PostgrestCallerStore:
    def __init__(self, client: SyncPostgrestClient) -> None:
        self.client = client

    def insert_message(
        self, message_id: str, conversation_id: str, content: str, client_message_id: str | None
    ) -> str:
        """Insert with an id chosen here, so a waiter can be registered before the row exists."""
        row: dict[str, Any] = {"id": message_id, "conversation_id": conversation_id, "content": content}
        if client_message_id:
            row["client_message_id"] = client_message_id
        self._run(self.client.table("messages").insert(row, returning=ReturnMethod.minimal), "insert_message")
        return message_id

    def find_client_message(self, client_message_id: str) -> tuple[str, str] | None:
        rows = self._run(
            self.client.table("messages").select("id, conversation_id").eq("client_message_id", client_message_id),
            "find_client_message",
        )
        return (str(rows[0]["id"]), str(rows[0]["conversation_id"])) if rows else None

    def message_outcome(self, message_id: str) -> MessageOutcome | None:
        result = self._rpc("message_outcome", {"message_id": message_id})
        return MessageOutcome(**result) if result else None

    def latest_user_message(self, conversation_id: str) -> tuple[str, str] | None:
        query = (
            self.client.table("messages").select("id, status").eq("conversation_id", conversation_id)
            .eq("role", "user").order("seq", desc=True).limit(1)
        )
        rows = self._run(query, "latest_user_message")
        return (str(rows[0]["id"]), str(rows[0]["status"])) if rows else None

    def reply_progress(self, message_id: str) -> ReplyProgress | None:
        row = self._rpc("reply_progress", {"message_id": message_id})
        if not row:
            return None
        return ReplyProgress(row["status"], row.get("reply_id"), row.get("content"), row.get("attempt"), row.get("error"))

    def stop_reply(self, message_id: str) -> str:
        result = self._run(self.client.rpc("stop_reply", {"message_id": message_id}), "stop_reply", STOP_MEANING)
        return str(result["status"])

    def conversation_history(self, conversation_id: str, before: str | None, page_size: int) -> dict[str, Any]:
        page = self._rpc(
            "conversation_history", {"conversation_id": conversation_id, "before": before, "page_size": page_size}
        )
        if page is None:
            raise ConversationNotFound(conversation_id)
        return dict(page)

    def message_conversation(self, message_id: str) -> str | None:
        rows = self._run(
            self.client.table("messages").select("conversation_id").eq("id", message_id), "message_conversation"
        )
        return str(rows[0]["conversation_id"]) if rows else None

    def regenerate_message(self, message_id: str) -> str:
        return str(self._rpc("regenerate_message", {"message_id": message_id}))

    def edit_message(self, message_id: str, content: str) -> str:
        return str(self._rpc("edit_message", {"message_id": message_id, "content": content}))

    def conversation_branch(
        self, conversation_id: str, leaf: str | None, before: str | None, page_size: int
    ) -> dict[str, Any]:
        page = self._rpc(
            "conversation_branch",
            {"conversation_id": conversation_id, "leaf": leaf, "before": before, "page_size": page_size},
        )
        if page is None:
            raise ConversationNotFound(conversation_id)
        return dict(page)

    def search_messages(self, query: str, max_results: int) -> list[dict[str, Any]]:
        return list(self._rpc("search_messages", {"query": query, "max_results": max_results}) or [])

    def chat_quota(self) -> dict[str, Any]:
        return dict(self._rpc("chat_quota", {}))

    def create_conversation(self, fields: dict[str, Any]) -> dict[str, Any]:
        return dict(self._run(self.client.table("conversations").insert(fields), "create_conversation", USER_GONE)[0])

    def list_conversations(self, before: str | None, page_size: int) -> dict[str, Any]:
        return dict(self._rpc("list_conversations", {"before": before, "page_size": page_size}))

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        rows = self._run(self.client.table("conversations").select("*").eq("id", conversation_id), "get_conversation")
        if not rows:
            raise ConversationNotFound(conversation_id)
        return dict(rows[0])

    def delete_conversation(self, conversation_id: str) -> None:
        if not self._run(self.client.table("conversations").delete().eq("id", conversation_id), "delete_conversation"):
            raise ConversationNotFound(conversation_id)

    def _rpc(self, function: str, params: dict[str, Any]) -> Any:
        return self._run(self.client.rpc(function, params), function)

    @staticmethod
    def _run(query: Any, during: str, meaning: Mapping[str, type[ChatError]] | None = None) -> Any:
        """Execute one PostgREST request, turning its failures into the domain's named errors."""
        try:
            return query.execute().data
        except (httpx.HTTPError, APIError) as error:
            named = store_error(error, during, meaning)
            raise named from error
