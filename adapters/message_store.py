"""The service role's store outside a reply (chat.ports.MessageStore: the sweep, the waiter, the
model allowlist, readiness), through supabase-py's .rpc() from plain threads. One shared client is
safe across threads because its auth never changes. The answering flow's writes are
adapters/reply_store.py, on the reply engine's loop."""

from __future__ import annotations

from typing import Any

import httpx
from postgrest.exceptions import APIError
from postgrest.types import CountMethod
from supabase import Client, ClientOptions, create_client

from adapters.http_session import STORE_TIMEOUT_SECONDS
from adapters.postgrest_errors import store_error
from chat.errors import ChatError, StoreUnavailable


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

    def count_pending_messages(self) -> int:
        try:
            pending = self.client.table("messages").select("id", count=CountMethod.exact).eq("status", "pending")
            result = pending.limit(1).execute()
        except (httpx.HTTPError, APIError) as error:
            named: ChatError = store_error(error, "counting pending messages")
            raise named from error
        return int(result.count or 0)

    def settled_messages(self, message_ids: list[str]) -> list[str]:
        rows = self._rpc("settled_messages", {"message_ids": message_ids})
        return [row["id"] for row in rows or []]

    def _rpc(self, function: str, params: dict[str, Any]) -> Any:
        try:
            return self.client.rpc(function, params).execute().data
        except (httpx.HTTPError, APIError) as error:
            named: ChatError = store_error(error, function)
            raise named from error
