"""Change capture from the database itself: it survives Postgres restarting under it, and when
it cannot run (here: a login without the REPLICATION attribute) a postgres_changes subscriber is
told why in the system message while broadcasts keep working. A subscriber that stops reading is
closed instead of holding the stand-in's memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from websockets.exceptions import ConnectionClosed

from devstack.gateway.app import create_gateway
from devstack.keys import JwtKeys
from devstack.postgres import LocalPostgres
from devstack.realtime.service import RealtimeService
from devstack.serving import RunningServer, serve_in_thread
from tests.support.database import insert_user, start_migrated_postgres
from tests.support.realtime import RawSocket, field_of
from tests.support.stack import scratch_dir
from tests.support.users import user_token

BINDING = {"event": "INSERT", "schema": "public", "table": "messages"}


def realtime_url(server: RunningServer) -> str:
    return server.url.replace("http://", "ws://") + "/realtime/v1"


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    with scratch_dir("ai-chat-realtime-capture-") as folder:
        postgres = start_migrated_postgres(Path(folder))
        yield postgres
        postgres.stop()


def test_capture_resumes_after_postgres_restarts(own_postgres: LocalPostgres) -> None:
    keys = JwtKeys.generate("http://127.0.0.1/auth/v1")
    gateway = serve_in_thread(create_gateway(own_postgres.superuser_url, keys, login_as_authenticator=True))
    socket = None
    try:
        with psycopg.connect(own_postgres.superuser_url, autocommit=True) as db:
            # The stack runs with synchronous_commit off; the "immediate" stop below would lose
            # these rows if their commit had not reached the disk yet.
            db.execute("set synchronous_commit = on")
            user = insert_user(db)
            conversation = db.execute("insert into public.conversations (user_id) values (%s) returning id",
                                      (user,)).fetchone()[0]  # type: ignore[index]
        socket = RawSocket(realtime_url(gateway), keys.api_key("anon"))
        socket.join("rows", {"postgres_changes": [BINDING]}, access_token=user_token(keys, user))
        socket.expect(lambda f: field_of(f, "event") == "system", "subscribed")

        own_postgres.stop("immediate")
        own_postgres.start()
        with psycopg.connect(own_postgres.superuser_url, autocommit=True) as db:
            db.execute("insert into public.messages (conversation_id, user_id, content) values (%s, %s, 'after')",
                       (conversation, user))
            # The slot is created again only once the capture reconnects: write until one arrives.
            def arrived(frame: object) -> bool:
                return field_of(frame, "event") == "postgres_changes"

            for attempt in range(30):
                try:
                    frame = socket.expect(arrived, "a change after the restart", deadline_seconds=1)
                    break
                except AssertionError:
                    db.execute("insert into public.messages (conversation_id, user_id, content) values (%s, %s, %s)",
                               (conversation, user, f"retry {attempt}"))
            else:
                raise AssertionError("no change delivered within 30 s of the restart")
        assert field_of(frame, "payload")["data"]["record"]["conversation_id"] == str(conversation)
    finally:
        if socket is not None:
            socket.close()
        gateway.stop()


def test_without_replication_rights_subscribers_are_told_and_broadcast_still_works(database_url: str) -> None:
    role = f"no_replication_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute(f"create role {role} login noreplication nosuperuser")
        db.execute(f"grant anon, authenticated, service_role, authenticator to {role}")
    params = conninfo_to_dict(database_url)
    url = make_conninfo(**{**params, "user": role})
    keys = JwtKeys.generate("http://127.0.0.1/auth/v1")
    gateway = serve_in_thread(create_gateway(url, keys))
    socket = RawSocket(realtime_url(gateway), keys.api_key("anon"))
    try:
        socket.join("rows", {"postgres_changes": [BINDING]}, access_token=keys.api_key("service_role"))
        system = field_of(socket.expect(lambda f: field_of(f, "event") == "system", "the system message"), "payload")
        assert system["status"] == "error"
        assert "change capture unavailable" in system["message"] and "replication" in system["message"]

        join_ref, _ = socket.join("room", {"broadcast": {"self": True}})
        socket.push("realtime:room", "broadcast", {"type": "broadcast", "event": "ping", "payload": {"n": 1}},
                    join_ref=join_ref)
        echoed = socket.expect(lambda f: field_of(f, "event") == "broadcast" or isinstance(f, bytes), "the echo")
        assert isinstance(echoed, bytes) and echoed.endswith(b'{"n":1}')
    finally:
        socket.close()
        gateway.stop()
        with psycopg.connect(database_url, autocommit=True) as db:
            db.execute(f"drop owned by {role}; drop role {role}")


def test_a_subscriber_that_stops_reading_is_closed_not_buffered_forever(database_url: str) -> None:
    keys = JwtKeys.generate("http://127.0.0.1/auth/v1")
    realtime = RealtimeService(database_url, keys, outbox_limit=4)
    gateway = serve_in_thread(create_gateway(database_url, keys, login_as_authenticator=True, realtime=realtime))
    stalled = RawSocket(realtime_url(gateway), keys.api_key("anon"))
    try:
        stalled.join("firehose", {})
        big = {"blob": "x" * 200_000}
        for _ in range(200):  # far more than the socket's buffers hold while nobody reads
            if not realtime.hub.members("firehose", False):
                break
            httpx.post(f"{gateway.url}/realtime/v1/api/broadcast", headers={"apikey": keys.api_key("service_role")},
                       json={"messages": [{"topic": "firehose", "event": "e", "payload": big}] * 5}).raise_for_status()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                stalled.ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    finally:
        stalled.close()
        gateway.stop()
