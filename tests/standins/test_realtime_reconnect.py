"""When the Realtime stand-in restarts, both real clients reconnect on their own, rejoin their
channels and receive changes again, as they do when Supabase's Realtime restarts."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from devstack.keys import JwtKeys
from devstack.stack import LocalStack
from tests.support.gateway import RestartableGateway
from tests.support.realtime import (
    ChatUser,
    NodeFrontend,
    PythonSubscriber,
    Subscribers,
    frontend_plan,
    insert_message,
)

# The Python client reads the close code through an attribute websockets has deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:ConnectionClosed:DeprecationWarning")


@pytest.fixture
def gateway(database_url: str, jwt_keys: JwtKeys) -> Iterator[RestartableGateway]:
    running = RestartableGateway(database_url, jwt_keys)
    yield running
    running.stop()


def test_supabase_js_reconnects_and_rejoins_after_a_restart(
    gateway: RestartableGateway, node_binary: str, stack: LocalStack, db: psycopg.Connection, owner: ChatUser,
    realtime_clients: Subscribers,
) -> None:
    plan = frontend_plan(stack, owner, [{"name": "rows", "postgres": [
        {"event": "INSERT", "schema": "public", "table": "messages", "filter": f"conversation_id=eq.{owner.conversation_id}"}
    ]}])
    browser: NodeFrontend = realtime_clients.add(NodeFrontend(node_binary, {**plan, "url": gateway.url}))
    browser.subscribed("rows")

    gateway.restart()
    browser.expect(lambda e: e["type"] == "status" and e["status"] == "CHANNEL_ERROR", "the lost connection")
    browser.seen.clear()
    browser.subscribed("rows")  # rejoined by realtime-js itself, after its backoff
    message_id = insert_message(db, owner, "after the restart")

    browser.expect(lambda e: e["type"] == "postgres" and e["payload"]["new"]["id"] == message_id, "the row")


def test_the_python_client_reconnects_and_rejoins_after_a_restart(
    gateway: RestartableGateway, jwt_keys: JwtKeys, db: psycopg.Connection, owner: ChatUser, realtime_clients: Subscribers,
) -> None:
    realtime_url = gateway.url.replace("http://", "ws://") + "/realtime/v1"
    client: PythonSubscriber = realtime_clients.add(PythonSubscriber(realtime_url, jwt_keys.api_key("anon"), owner.access_token))
    client.subscribe("rows", postgres=[{"event": "INSERT", "schema": "public", "table": "messages"}])
    client.subscribed("rows")

    gateway.restart()
    client.seen.clear()
    client.subscribed("rows")
    message_id = insert_message(db, owner, "after the restart")

    client.expect(lambda e: e["type"] == "postgres" and e["payload"]["data"]["record"]["id"] == message_id, "the row")
