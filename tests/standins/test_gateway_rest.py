"""The gateway's PostgREST surface, driven by supabase-py itself (what the service and frontends
use) plus raw httpx where the exact status, headers or error JSON is the point."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client

from devstack.keys import JwtKeys
from tests.support.database import insert_user
from tests.support.users import user_token

OBJECT = "application/vnd.pgrst.object+json"


@dataclass
class User:
    id: str
    token: str
    client: Client


def client_for(gateway_url: str, keys: JwtKeys, token: str | None = None) -> Client:
    """A supabase-py client with the anon key, and a user's access token when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return create_client(gateway_url, keys.api_key("anon"), options=ClientOptions(headers=headers))


@pytest.fixture
def rest(gateway_url: str) -> str:
    return f"{gateway_url}/rest/v1"


@pytest.fixture
def make_user(db: psycopg.Connection, gateway_url: str, jwt_keys: JwtKeys) -> Iterator[Callable[[], User]]:
    """Users created straight in auth.users; deleted afterwards, which cascades to their rows."""
    created: list[str] = []

    def make() -> User:
        user_id = insert_user(db)
        created.append(user_id)
        token = user_token(jwt_keys, user_id)
        return User(user_id, token, client_for(gateway_url, jwt_keys, token))

    yield make
    db.execute("delete from auth.users where id = any(%s::uuid[])", (created,))


@pytest.fixture
def service(gateway_url: str, jwt_keys: JwtKeys) -> Client:
    return create_client(gateway_url, jwt_keys.api_key("service_role"))


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def conversation_with_messages(db: psycopg.Connection, user_id: str, contents: list[str]) -> tuple[str, list[str]]:
    """A conversation and user messages created 1 s apart (oldest first), as the superuser."""
    conversation = str(
        db.execute("insert into public.conversations (user_id) values (%s) returning id", (user_id,)).fetchone()[0]
    )
    ids = [
        str(
            db.execute(
                "insert into public.messages (conversation_id, user_id, content, created_at) "
                "values (%s, %s, %s, now() - make_interval(secs => %s)) returning id",
                (conversation, user_id, content, len(contents) - i),
            ).fetchone()[0]
        )
        for i, content in enumerate(contents)
    ]
    return conversation, ids


# --- reads ----------------------------------------------------------------------------------


def test_select_with_filters_order_and_limit(db: psycopg.Connection, make_user: Callable[[], User]) -> None:
    alice = make_user()
    conversation, _ = conversation_with_messages(db, alice.id, ["one", "two", "three", "four"])
    messages = alice.client.table("messages")

    newest = messages.select("content").eq("conversation_id", conversation).order("created_at", desc=True).limit(2).execute()
    assert newest.data == [{"content": "four"}, {"content": "three"}]

    picked = messages.select("text:content").in_("content", ["one", "three", "no such"]).order("content").execute()
    assert picked.data == [{"text": "one"}, {"text": "three"}]
    assert [r["content"] for r in messages.select("content").like("content", "t*").order("content").execute().data] == [
        "three",
        "two",
    ]
    assert len(messages.select("id").neq("content", "one").is_("error", "null").execute().data) == 3
    assert len(messages.select("id").not_.ilike("content", "T*").execute().data) == 2
    either = messages.select("content").or_("content.eq.one,and(content.gte.t,content.lt.tj)").order("content").execute()
    assert [r["content"] for r in either.data] == ["one", "three"]
    second_page = messages.select("content").order("created_at").range(1, 2).execute()
    assert [r["content"] for r in second_page.data] == ["two", "three"]


def test_rows_serialize_like_postgrest(db: psycopg.Connection, make_user: Callable[[], User]) -> None:
    alice = make_user()
    conversation, [message] = conversation_with_messages(db, alice.id, ["hello"])
    row = alice.client.table("messages").select("*").eq("id", message).single().execute().data
    assert row["id"] == message and row["conversation_id"] == conversation and row["user_id"] == alice.id
    assert row["attempts"] == 0 and row["reply_to"] is None and row["status"] == "pending"
    assert row["created_at"].endswith("+00:00") and "T" in row["created_at"]


def test_single_and_maybe_single(db: psycopg.Connection, make_user: Callable[[], User], rest: str) -> None:
    alice = make_user()
    conversation, [first, _] = conversation_with_messages(db, alice.id, ["a", "b"])
    messages = alice.client.table("messages")

    assert messages.select("content").eq("id", first).single().execute().data == {"content": "a"}
    assert messages.select("id").eq("id", str(uuid.uuid4())).maybe_single().execute() is None
    with pytest.raises(APIError) as none:
        messages.select("id").eq("id", str(uuid.uuid4())).single().execute()
    assert (none.value.code, none.value.details) == ("PGRST116", "The result contains 0 rows")

    response = httpx.get(
        f"{rest}/messages",
        params={"conversation_id": f"eq.{conversation}"},
        headers={**auth_headers(alice.token), "Accept": OBJECT},
    )
    assert response.status_code == 406
    assert response.json() == {
        "code": "PGRST116",
        "details": "The result contains 2 rows",
        "hint": None,
        "message": "Cannot coerce the result to a single JSON object",
    }


def test_exact_count_and_content_range(db: psycopg.Connection, make_user: Callable[[], User], rest: str) -> None:
    alice = make_user()
    conversation_with_messages(db, alice.id, ["a", "b", "c"])

    counted = alice.client.table("messages").select("id", count="exact").limit(1).execute()
    assert (counted.count, len(counted.data)) == (3, 1)
    assert alice.client.table("messages").select("*", count="exact", head=True).execute().count == 3

    headers = auth_headers(alice.token)
    page = httpx.get(f"{rest}/messages", params={"limit": "2", "offset": "1"}, headers={**headers, "Prefer": "count=exact"})
    assert (page.status_code, page.headers["content-range"]) == (206, "1-2/3")
    uncounted = httpx.get(f"{rest}/messages", params={"limit": "2"}, headers=headers)
    assert (uncounted.status_code, uncounted.headers["content-range"]) == (200, "0-1/*")
    assert uncounted.headers["content-type"] == "application/json; charset=utf-8"
    nothing = httpx.get(f"{rest}/messages", params={"content": "eq.zzz"}, headers={**headers, "Prefer": "count=exact"})
    assert (nothing.status_code, nothing.headers["content-range"], nothing.json()) == (200, "*/0", [])
    beyond = httpx.get(f"{rest}/messages", params={"offset": "9"}, headers={**headers, "Prefer": "count=exact"})
    assert (beyond.status_code, beyond.json()["code"]) == (416, "PGRST103")


# --- writes ---------------------------------------------------------------------------------


def test_insert_returns_rows_and_fills_defaults(make_user: Callable[[], User]) -> None:
    alice = make_user()
    created = alice.client.table("conversations").insert({"title": "Trip"}).execute().data
    assert len(created) == 1
    assert created[0]["user_id"] == alice.id  # DEFAULT auth.uid(), from the JWT's sub
    assert created[0]["title"] == "Trip" and created[0]["id"]

    message = alice.client.table("messages").insert({"conversation_id": created[0]["id"], "content": "hi"}).execute().data[0]
    assert (message["role"], message["status"], message["user_id"]) == ("user", "pending", alice.id)


def test_bulk_insert_missing_keys_follow_prefer_missing(make_user: Callable[[], User]) -> None:
    alice = make_user()
    conversation = alice.client.table("conversations").insert({}).execute().data[0]["id"]
    rows = [{"conversation_id": conversation, "content": "a"}, {"conversation_id": conversation, "content": "b", "role": "user"}]
    with pytest.raises(APIError) as nulled:  # PostgREST: with ?columns=, a missing key is NULL...
        alice.client.table("messages").insert(rows).execute()
    assert nulled.value.code == "42501"  # role NULL fails the policy's role = 'user' (before NOT NULL)
    inserted = alice.client.table("messages").insert(rows, default_to_null=False).execute().data  # ...or DEFAULT
    assert [(r["content"], r["role"], r["user_id"]) for r in inserted] == [("a", "user", alice.id), ("b", "user", alice.id)]


def test_minimal_return_answers_201_without_body(make_user: Callable[[], User], rest: str) -> None:
    alice = make_user()
    response = httpx.post(f"{rest}/conversations", json={"title": "quiet"}, headers=auth_headers(alice.token))
    assert (response.status_code, response.content) == (201, b"")
    assert [r["title"] for r in alice.client.table("conversations").select("title").execute().data] == ["quiet"]


def test_rls_refusal_is_403_for_users_and_401_for_anon(
    make_user: Callable[[], User], rest: str, gateway_url: str, jwt_keys: JwtKeys
) -> None:
    alice, mallory = make_user(), make_user()
    conversation = alice.client.table("conversations").insert({"title": "private"}).execute().data[0]["id"]

    with pytest.raises(APIError) as refused:
        mallory.client.table("messages").insert({"conversation_id": conversation, "content": "sneaky"}).execute()
    assert refused.value.code == "42501"
    raw = httpx.post(
        f"{rest}/messages", json={"conversation_id": conversation, "content": "x"}, headers=auth_headers(mallory.token)
    )
    assert raw.status_code == 403
    assert raw.json()["message"] == 'new row violates row-level security policy for table "messages"'
    assert mallory.client.table("conversations").select("id").execute().data == []

    anon = httpx.post(f"{rest}/conversations", json={"title": "x"}, headers={"apikey": jwt_keys.api_key("anon")})
    assert (anon.status_code, anon.json()["code"]) == (401, "42501")
    with pytest.raises(APIError) as anonymous:
        client_for(gateway_url, jwt_keys).table("messages").select("*").execute()
    assert anonymous.value.code == "42501"


def test_unique_violation_is_409(make_user: Callable[[], User], rest: str) -> None:
    alice = make_user()
    conversation_id = str(uuid.uuid4())
    alice.client.table("conversations").insert({"id": conversation_id}).execute()
    again = httpx.post(f"{rest}/conversations", json={"id": conversation_id}, headers=auth_headers(alice.token))
    assert again.status_code == 409
    assert again.json() == {
        "code": "23505",
        "details": None,  # Postgres leaves the key out when RLS applies to the caller
        "hint": None,
        "message": 'duplicate key value violates unique constraint "conversations_pkey"',
    }


def test_check_violation_and_bad_values_are_400(make_user: Callable[[], User], rest: str) -> None:
    alice = make_user()
    conversation = alice.client.table("conversations").insert({}).execute().data[0]["id"]
    with pytest.raises(APIError) as empty:
        alice.client.table("messages").insert({"conversation_id": conversation, "content": ""}).execute()
    assert empty.value.code == "23514"
    raw = httpx.post(f"{rest}/messages", json={"conversation_id": conversation, "content": ""}, headers=auth_headers(alice.token))
    assert raw.status_code == 400
    bad_uuid = httpx.get(f"{rest}/messages", params={"id": "eq.not-a-uuid"}, headers=auth_headers(alice.token))
    assert (bad_uuid.status_code, bad_uuid.json()["code"]) == (400, "22P02")
    unknown = httpx.post(f"{rest}/conversations", json={"nope": 1}, headers=auth_headers(alice.token))
    assert (unknown.status_code, unknown.json()["code"]) == (400, "PGRST204")


def test_update_and_delete_with_filters(db: psycopg.Connection, make_user: Callable[[], User], rest: str) -> None:
    alice, bob = make_user(), make_user()
    conversations = alice.client.table("conversations")
    keep, drop = (conversations.insert({"title": t}).execute().data[0]["id"] for t in ("keep", "drop"))

    renamed = conversations.update({"title": "renamed"}).eq("id", keep).execute().data
    assert [(r["id"], r["title"]) for r in renamed] == [(keep, "renamed")]
    assert bob.client.table("conversations").update({"title": "hijack"}).eq("id", keep).execute().data == []
    minimal = httpx.patch(
        f"{rest}/conversations", params={"id": f"eq.{drop}"}, json={"system_prompt": "m"}, headers=auth_headers(alice.token)
    )
    assert (minimal.status_code, minimal.content) == (204, b"")
    refused = httpx.patch(
        f"{rest}/conversations", params={"id": f"eq.{keep}"}, json={"user_id": bob.id}, headers=auth_headers(alice.token)
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "42501")  # no UPDATE grant on user_id

    deleted = conversations.delete().eq("title", "drop").execute().data
    assert [r["id"] for r in deleted] == [drop]
    rows = db.execute("select id::text, title, model from public.conversations where user_id = %s", (alice.id,)).fetchall()
    assert rows == [(keep, "renamed", None)]


def test_upsert_merges_or_ignores_duplicates(make_user: Callable[[], User], service: Client) -> None:
    alice = make_user()
    conversation = alice.client.table("conversations").insert({"title": "first"}).execute().data[0]["id"]

    ignored = (
        alice.client.table("conversations").upsert({"id": conversation, "title": "second"}, ignore_duplicates=True).execute()
    )
    assert ignored.data == []
    merged = service.table("conversations").upsert({"id": conversation, "user_id": alice.id, "title": "third"}).execute()
    assert [(r["id"], r["title"]) for r in merged.data] == [(conversation, "third")]
    by_title = service.table("conversations").upsert({"id": conversation, "user_id": alice.id}, on_conflict="id").execute()
    assert by_title.data[0]["title"] == "third"


# --- rpc ------------------------------------------------------------------------------------


def test_rpc_as_service_role(db: psycopg.Connection, make_user: Callable[[], User], service: Client) -> None:
    alice = make_user()
    _, [stalled, fresh] = conversation_with_messages(db, alice.id, ["old", "new"])
    db.execute("update public.messages set created_at = now() - interval '1 hour' where id = %s", (stalled,))

    listed = service.rpc("list_stalled_messages", {"pending_grace_seconds": 60}).execute().data
    assert [(r["id"], r["status"]) for r in listed] == [(stalled, "pending")]
    assert set(listed[0]) == {"id", "status", "created_at"}

    waits = service.rpc("claim_message", {"message_id": fresh}).execute().data  # "old" comes first
    assert waits == {"waiting": True, "message_id": fresh, "waiting_for": stalled}
    claim = service.rpc("claim_message", {"message_id": stalled, "lease_seconds": 30}).execute().data
    assert (claim["message_id"], claim["user_id"], claim["attempt"]) == (stalled, alice.id, 1)
    assert service.rpc("claim_message", {"message_id": stalled}).execute().data is None  # jsonb null: leased
    context = service.rpc("fetch_message_context", {"message_id": fresh, "token_budget": 1000}).execute().data
    assert context == [{"role": "user", "content": "old"}, {"role": "user", "content": "new"}]


def test_rpc_refused_to_users_and_read_only_over_get(
    db: psycopg.Connection, make_user: Callable[[], User], rest: str, jwt_keys: JwtKeys
) -> None:
    alice = make_user()
    _, [message] = conversation_with_messages(db, alice.id, ["hi"])
    with pytest.raises(APIError) as refused:
        alice.client.rpc("claim_message", {"message_id": message}).execute()
    assert refused.value.code == "42501"
    raw = httpx.post(f"{rest}/rpc/claim_message", json={"message_id": message}, headers=auth_headers(alice.token))
    assert (raw.status_code, raw.json()["message"]) == (403, "permission denied for function claim_message")

    service_headers = {"apikey": jwt_keys.api_key("service_role")}
    over_get = httpx.get(f"{rest}/rpc/claim_message", params={"message_id": message}, headers=service_headers)
    assert (over_get.status_code, over_get.json()["code"]) == (405, "25006")
    missing = httpx.post(f"{rest}/rpc/claim_message", json={"id": message}, headers=service_headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "PGRST202")
    assert missing.json()["message"] == "Could not find the function public.claim_message(id) in the schema cache"


def test_rpc_scalar_void_and_get_arguments(db: psycopg.Connection, rest: str, jwt_keys: JwtKeys) -> None:
    """Functions created while the gateway runs: the schema cache picks them up on first use."""
    db.execute(
        "create function public.gateway_test_echo(n integer, label text default 'x') returns text "
        "language sql immutable as $$ select label || n::text $$"
    )
    db.execute("create function public.gateway_test_noop() returns void language sql as $$ select $$")
    try:
        headers = {"apikey": jwt_keys.api_key("anon")}
        echoed = httpx.post(f"{rest}/rpc/gateway_test_echo", json={"n": 7}, headers=headers)
        assert (echoed.status_code, echoed.json()) == (200, "x7")
        over_get = httpx.get(f"{rest}/rpc/gateway_test_echo", params={"n": "8", "label": "y"}, headers=headers)
        assert (over_get.status_code, over_get.json()) == (200, "y8")
        nothing = httpx.post(f"{rest}/rpc/gateway_test_noop", headers=headers)
        assert (nothing.status_code, nothing.content) == (204, b"")
        wrong_type = httpx.post(f"{rest}/rpc/gateway_test_echo", json={"n": "seven"}, headers=headers)
        assert (wrong_type.status_code, wrong_type.json()["code"]) == (400, "22P02")
    finally:
        db.execute("drop function public.gateway_test_echo(integer, text), public.gateway_test_noop()")


# --- auth and malformed requests ------------------------------------------------------------


def test_bad_and_expired_jwts_are_401(make_user: Callable[[], User], rest: str, jwt_keys: JwtKeys) -> None:
    alice = make_user()
    forged = httpx.get(f"{rest}/conversations", headers=auth_headers(alice.token[:-4] + "AAAA"))
    assert forged.status_code == 401
    assert forged.json()["code"] == "PGRST301" and set(forged.json()) == {"code", "details", "hint", "message"}
    assert forged.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    garbage = httpx.get(f"{rest}/conversations", headers={"apikey": "not-a-jwt"})
    assert (garbage.status_code, garbage.json()["code"]) == (401, "PGRST301")

    expired = httpx.get(f"{rest}/conversations", headers=auth_headers(user_token(jwt_keys, alice.id, lifetime=-60)))
    assert (expired.status_code, expired.json()["code"], expired.json()["message"]) == (401, "PGRST303", "JWT expired")
    postgres = jwt_keys.sign_legacy_token({"role": "postgres", "exp": 2**31})
    escalate = httpx.get(f"{rest}/conversations", headers=auth_headers(postgres))
    assert (escalate.status_code, escalate.json()["code"]) == (403, "42501")


def test_unknown_table_malformed_json_and_unsupported_syntax(make_user: Callable[[], User], rest: str) -> None:
    alice = make_user()
    with pytest.raises(APIError) as unknown:
        alice.client.table("conversation").select("*").execute()
    assert unknown.value.code == "PGRST205"
    assert unknown.value.hint == "Perhaps you meant the table 'public.conversations'"

    headers = {**auth_headers(alice.token), "Content-Type": "application/json"}
    malformed = httpx.post(f"{rest}/conversations", content=b'{"title": ', headers=headers)
    assert (malformed.status_code, malformed.json()["code"]) == (400, "PGRST102")
    assert malformed.json()["message"] == "Empty or invalid json"
    embedded = httpx.get(f"{rest}/conversations", params={"select": "*,messages(*)"}, headers=headers)
    assert (embedded.status_code, embedded.json()["code"]) == (400, "PGRST100")
    bad_operator = httpx.get(f"{rest}/conversations", params={"title": "approx.x"}, headers=headers)
    assert (bad_operator.status_code, bad_operator.json()["code"]) == (400, "PGRST100")
    put = httpx.put(f"{rest}/conversations", json={}, headers=headers)
    assert (put.status_code, put.json()["code"]) == (405, "PGRST117")


def test_sql_injection_attempts_are_inert(db: psycopg.Connection, make_user: Callable[[], User], rest: str) -> None:
    alice = make_user()
    conversation_with_messages(db, alice.id, ["safe"])
    headers = auth_headers(alice.token)
    attack = "x'; delete from public.messages; --"

    as_value = alice.client.table("messages").select("id").eq("content", attack).execute()
    assert as_value.data == []
    assert alice.client.table("messages").select("id").in_("content", [attack, '") or true --']).execute().data == []
    as_column = httpx.get(f"{rest}/messages", params={"select": 'content";delete from public.messages;--'}, headers=headers)
    assert as_column.status_code == 400
    as_quoted = httpx.get(f"{rest}/messages", params={"select": '"content"" from public.messages; --"'}, headers=headers)
    assert (as_quoted.status_code, as_quoted.json()["code"]) == (400, "42703")
    as_filter_key = httpx.get(f"{rest}/messages", params={'"id" = "id" or true; --': "eq.1"}, headers=headers)
    assert as_filter_key.status_code == 400
    as_order = httpx.get(f"{rest}/messages", params={"order": "content;delete from public.messages"}, headers=headers)
    assert as_order.status_code == 400
    as_nul = httpx.get(f"{rest}/messages", params={"content": "eq.a\x00b"}, headers=headers)
    assert as_nul.status_code == 400
    assert db.execute("select count(*) from public.messages where user_id = %s", (alice.id,)).fetchone()[0] == 1
