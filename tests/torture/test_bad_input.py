"""Hostile and malformed input at both doors: generated webhook deliveries (any bytes in the
signature headers and the body), generated JSON and bytes as the REST door's bodies, and
schemathesis against /openapi.json as one user while another user's rows must stay untouched.
Never a 500; a refused request changes nothing.

Deterministic: Hypothesis runs derandomized, without its example database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from devstack.service_process import ServiceProcess
from devstack.serving import free_port
from devstack.stack import LocalStack
from http_common.service import chat_service
from server import create_app
from server.settings import load_settings
from tests.support.ai_sdk import SDK_BODY_IS_READ_BEYOND_ITS_SCHEMA
from tests.support.deliveries import message_event
from tests.support.processes import service_env
from tests.torture.harness import TORTURE_SERVICE_SETTINGS
from tests.torture.ledger import LINES, count_http_500
from tests.torture.traffic import GatewayUser

pytestmark = pytest.mark.timeout(900)

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
ENVIRON_KEYS = {name: "HTTP_" + name.upper().replace("-", "_") for name in HEADERS}


def hypothesis_settings(examples: int) -> settings:
    return settings(
        max_examples=examples, derandomize=True, database=None, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def record(line: str) -> None:
    print(line)
    LINES.append(line)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def webhook_app(torture_stack: LocalStack) -> Iterator[Flask]:
    """The service in-process, as test_deployment builds it: the WSGI test client can put raw
    bytes in header values, which no HTTP client would send."""
    overrides = {name.lower(): value for name, value in service_env(torture_stack).items()}
    app = create_app(load_settings({**overrides, "log_level": "ERROR"}), start_background=False)
    yield app
    chat_service(app).engine.drain(5)


@pytest.fixture(scope="module")
def api_service(torture_stack: LocalStack, torture_state_dir: Path) -> Iterator[ServiceProcess]:
    port = free_port()
    service = ServiceProcess(
        service_env(torture_stack, **TORTURE_SERVICE_SETTINGS), port=port, log_path=torture_state_dir / f"service-{port}.log"
    ).start()
    yield service
    service.stop(timeout=15)


@pytest.fixture
def live_api(api_service: ServiceProcess, torture_stack: LocalStack) -> ServiceProcess:
    """The module's service with the webhook pointed at it."""
    torture_stack.configure_webhook(f"{api_service.url}/webhooks/messages")
    return api_service


@pytest.fixture
def no_new_500s(api_service: ServiceProcess) -> Iterator[None]:
    """No 500 in the service's access log, and no unhandled error logged, during the test."""
    before = count_http_500([api_service])
    yield
    after = count_http_500([api_service])
    assert after == before, f"500s (responses, internal errors): {before} -> {after}; see {api_service.log_path}"


def sign(secret: str, message_id: bytes, timestamp: bytes, body: bytes) -> bytes:
    """Standard Webhooks' signature over exactly these bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, message_id + b"." + timestamp + b"." + body, hashlib.sha256).digest()
    return b"v1," + base64.b64encode(digest)


def now_bytes() -> bytes:
    return str(int(time.time())).encode()


def post_raw(app: Flask, headers: dict[str, bytes | None], body: bytes) -> int:
    """POST /webhooks/messages with header values given as raw bytes (None: header absent)."""
    environ = {ENVIRON_KEYS[name]: value.decode("latin-1") for name, value in headers.items() if value is not None}
    response = app.test_client().post(
        "/webhooks/messages", data=body, content_type="application/json", environ_overrides=environ
    )
    return response.status_code


# ----------------------------------------------------------------------------- 6. webhook signatures

plausible_id = st.one_of(st.binary(max_size=80), st.uuids().map(lambda u: f"msg_{u}".encode()))
plausible_timestamp = st.one_of(
    st.binary(max_size=40),
    st.integers(-400, 400).map(lambda skew: str(int(time.time()) + skew).encode()),
    st.sampled_from([b"nan", b"inf", b"-inf", b"1e400", b"9" * 400, b" 1 ", b"0x10", b"\xff\xfe", b""]),
)
plausible_signature = st.one_of(
    st.binary(max_size=200),
    st.lists(st.binary(min_size=0, max_size=40).map(lambda raw: b"v1," + base64.b64encode(raw)), min_size=1, max_size=3)
    .map(b" ".join),
    st.sampled_from([b"v1,", b"v1", b",", b"v1,====", b"v2,abc", b"v1,a,b", b"v1,\xff"]),
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A header that may also be absent."""
    return st.one_of(st.none(), strategy)


def test_forged_webhook_headers_of_any_bytes_get_401(webhook_app: Flask, long_run: bool) -> None:
    """Without the secret nothing gets past the door: any bytes, any header absent, always 401."""
    count = 3000 if long_run else 400

    @hypothesis_settings(count)
    @given(
        message_id=maybe(plausible_id), timestamp=maybe(plausible_timestamp), signature=maybe(plausible_signature),
        body=st.one_of(st.binary(max_size=400), st.uuids().map(lambda u: message_event(str(u), str(uuid.uuid4())))),
    )
    def forged(message_id: bytes | None, timestamp: bytes | None, signature: bytes | None, body: bytes) -> None:
        headers = {"webhook-id": message_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
        assert post_raw(webhook_app, headers, body) == 401, (headers, body)

    forged()
    record(f"torture webhook-forged: examples={count} statuses=401 only")


def test_a_signed_delivery_with_any_one_part_replaced_gets_401(
    webhook_app: Flask, torture_stack: LocalStack, long_run: bool
) -> None:
    count = 2000 if long_run else 300
    secret = torture_stack.webhook_secret

    @hypothesis_settings(count)
    @given(target=st.sampled_from([*HEADERS, "body"]), replacement=st.binary(max_size=200), event_id=st.uuids())
    def tampered(target: str, replacement: bytes, event_id: uuid.UUID) -> None:
        body = message_event(str(event_id), str(uuid.uuid4()))
        message_id, timestamp = f"msg_{event_id}".encode(), now_bytes()
        signed: dict[str, bytes | None] = {
            "webhook-id": message_id, "webhook-timestamp": timestamp,
            "webhook-signature": sign(secret, message_id, timestamp, body),
        }
        if replacement == (body if target == "body" else signed[target]):
            return
        if target == "body":
            body = replacement
        else:
            signed[target] = replacement
        assert post_raw(webhook_app, signed, body) == 401, (target, replacement)

    tampered()
    record(f"torture webhook-tampered: examples={count} statuses=401 only")


json_text = st.text(max_size=30)  # U+0000 included: Postgres cannot store it, the door must say 400
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), json_text)
json_values = st.recursive(
    json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(json_text, inner, max_size=4)),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(["INSERT", "UPDATE", "DELETE"]), json_values),
        "table": st.one_of(st.just("messages"), json_values),
        "schema": st.one_of(st.just("public"), json_values),
        "record": st.one_of(
            st.fixed_dictionaries({}, optional={
                "id": st.one_of(st.uuids().map(str), json_values),
                "conversation_id": st.one_of(st.uuids().map(str), json_values),
                "role": st.one_of(st.sampled_from(["user", "assistant"]), json_values),
            }),
            json_values,
        ),
        "old_record": json_values,
    },
)
signed_bodies = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda value: json.dumps(value).encode()),
    event_like.map(lambda value: json.dumps(value).encode()),
)


def test_correctly_signed_deliveries_of_any_body_never_get_500(
    webhook_app: Flask, torture_stack: LocalStack, long_run: bool
) -> None:
    """Signed bodies of every shape: 202 for a user message's event, 200 for an event ignored,
    400 for anything else; never a 500."""
    count = 3000 if long_run else 400
    secret = torture_stack.webhook_secret
    seen: dict[int, int] = {}

    @hypothesis_settings(count)
    @given(body=signed_bodies)
    @example(body=message_event(str(uuid.UUID(int=1)), str(uuid.UUID(int=2))))
    def signed(body: bytes) -> None:
        message_id, timestamp = b"msg_generated", now_bytes()
        headers: dict[str, bytes | None] = {
            "webhook-id": message_id, "webhook-timestamp": timestamp,
            "webhook-signature": sign(secret, message_id, timestamp, body),
        }
        status = post_raw(webhook_app, headers, body)
        try:
            body.decode()
        except UnicodeDecodeError:
            allowed = {401}  # the database signs UTF-8 text; bytes that are not UTF-8 did not come from it
        else:
            allowed = {200, 202, 400}
        assert status in allowed, (status, body)
        seen[status] = seen.get(status, 0) + 1

    signed()
    record(f"torture webhook-signed-bodies: examples={count} statuses={dict(sorted(seen.items()))}")
    assert seen.get(202) and seen.get(400), seen


header_text = st.text(alphabet=st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=80).map(str.strip)


def test_forged_webhook_headers_over_http_get_401(live_api: ServiceProcess, no_new_500s: None, long_run: bool) -> None:
    """The same over real HTTP through gunicorn: any latin-1 text an HTTP client can send."""
    count = 1000 if long_run else 150
    timestamps = st.integers(-400, 400).map(lambda skew: str(int(time.time()) + skew))
    signatures = st.binary(max_size=40).map(lambda raw: "v1," + base64.b64encode(raw).decode())

    @hypothesis_settings(count)
    @given(
        message_id=maybe(header_text), timestamp=maybe(st.one_of(header_text, timestamps)),
        signature=maybe(st.one_of(header_text, signatures)), body=st.binary(max_size=300),
    )
    def forged(client: httpx.Client, message_id: str | None, timestamp: str | None, signature: str | None,
               body: bytes) -> None:
        headers = {name: value.encode("latin-1") for name, value in zip(HEADERS, (message_id, timestamp, signature), strict=False)
                   if value is not None}
        response = client.post("/webhooks/messages", content=body, headers={"content-type": "application/json", **headers})
        assert response.status_code == 401, (headers, body, response.status_code, response.text[:200])

    with httpx.Client(base_url=live_api.url, timeout=10) as client:
        forged(client)
    record(f"torture webhook-forged-http: examples={count} statuses=401 only")


# ----------------------------------------------------------------------------- 7. the REST door's bodies

CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/merge-patch+json", None,
]
content_types = st.one_of(st.just("application/json"), st.sampled_from(CONTENT_TYPES))
OVERSIZED = b'{"message": "' + b"x" * 600_000 + b'"}'  # over API_MAX_BODY_BYTES (512 KiB)


def encoded_bodies(objects: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        objects.map(lambda value: json.dumps(value).encode()),
        json_values.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=300),
        st.just(OVERSIZED),
    )


def counts(database_url: str, user_id: str) -> tuple[int, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "select (select count(*) from public.conversations where user_id = %s),"
            "       (select count(*) from public.messages where user_id = %s)", (user_id, user_id)
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def message_exists(database_url: str, message_id: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("select 1 from public.messages where id = %s", (message_id,)).fetchone() is not None


GUNICORN_REQUEST_LINE_LIMIT = 8190  # gunicorn.conf.py's limit_request_line (gunicorn's largest)
CHAT_STATUSES = {200, 400, 403, 409, 413, 415}
CONVERSATION_STATUSES = {201, 400, 413, 415}


def test_any_body_to_post_api_chat_is_answered_or_refused_and_refusals_insert_nothing(
    live_api: ServiceProcess, torture_stack: LocalStack, torture_url: str, no_new_500s: None, long_run: bool
) -> None:
    user = GatewayUser(torture_stack)
    conversation = user.new_conversation()
    optional_fields = {
        "client_message_id": st.one_of(st.uuids().map(str), json_values),
        "user_id": st.one_of(st.just(user.user_id), json_values),
        "extra": json_values,
    }
    chat_objects = st.one_of(
        st.fixed_dictionaries({"message": json_text.filter(bool)}, optional=optional_fields),
        st.fixed_dictionaries({}, optional={"message": st.one_of(json_text, json_values), **optional_fields}),
    )
    seen: dict[int, int] = {}

    @given(body=encoded_bodies(chat_objects), content_type=content_types)
    def send(client: httpx.Client, body: bytes, content_type: str | None) -> None:
        before = counts(torture_url, user.user_id)
        headers = {"content-type": content_type} if content_type else {}
        response = client.post(f"/api/chat/{conversation}", content=body, headers=headers)
        after = counts(torture_url, user.user_id)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code in CHAT_STATUSES, (body[:300], content_type, response.status_code, response.text[:300])
        assert response.json()["error" if response.status_code >= 400 else "response"], response.text[:300]
        if response.status_code != 200:
            assert after == before, f"a refused request ({response.status_code}) changed the database"
            return
        sent = json.loads(body)
        if after[1] - before[1] == 0:  # a retry: the first request's reply, nothing new
            assert message_exists(torture_url, response.json()["message_id"]) and sent.get("client_message_id")
        else:
            assert after[1] - before[1] == 2, "one message and its reply"
            assert response.json()["response"] == f"Echo: {sent['message']}"

    count = 1500 if long_run else 200
    with user.api(live_api.url) as client:
        hypothesis_settings(count)(send)(client)
    record(f"torture api-chat-bodies: examples={count} statuses={dict(sorted(seen.items()))}")
    assert seen.get(200) and seen.get(400) and seen.get(415) and seen.get(413), seen


def test_any_body_to_post_api_conversations_is_created_or_refused_and_refusals_insert_nothing(
    live_api: ServiceProcess, torture_stack: LocalStack, torture_url: str, no_new_500s: None, long_run: bool
) -> None:
    user = GatewayUser(torture_stack)
    conversation_objects = st.fixed_dictionaries({}, optional={
        "title": st.one_of(json_text, json_values), "system_prompt": st.one_of(json_text, json_values),
        "model": st.one_of(json_text, json_values),
    })
    seen: dict[int, int] = {}

    @given(body=encoded_bodies(conversation_objects), content_type=content_types)
    def create(client: httpx.Client, body: bytes, content_type: str | None) -> None:
        before = counts(torture_url, user.user_id)
        headers = {"content-type": content_type} if content_type else {}
        response = client.post("/api/conversations", content=body, headers=headers)
        after = counts(torture_url, user.user_id)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code in CONVERSATION_STATUSES, (body[:300], content_type, response.status_code,
                                                               response.text[:300])
        if response.status_code != 201:
            assert after == before, f"a refused request ({response.status_code}) changed the database"
            assert response.json()["error"]["code"]
            return
        assert after == (before[0] + 1, before[1])
        created, fields = response.json(), json.loads(body)
        assert {name: created[name] for name in fields} == fields and created["user_id"] == user.user_id

    count = 1500 if long_run else 200
    with user.api(live_api.url) as client:
        hypothesis_settings(count)(create)(client)
    record(f"torture api-conversation-bodies: examples={count} statuses={dict(sorted(seen.items()))}")
    assert seen.get(201) and seen.get(400) and seen.get(415) and seen.get(413), seen


# ----------------------------------------------------------------------------- bugs the properties found

DEEP = b"[" * 5000


@pytest.mark.parametrize("path", ["/api/chat/{conversation}", "/api/conversations"])
def test_deeply_nested_json_body_is_a_400_not_a_500(
    live_api: ServiceProcess, torture_stack: LocalStack, path: str
) -> None:
    user = GatewayUser(torture_stack)
    conversation = user.new_conversation()
    with user.api(live_api.url) as client:
        response = client.post(path.format(conversation=conversation), content=DEEP, headers={"content-type": "application/json"})
    assert response.status_code == 400, (response.status_code, response.text)


def test_signed_deeply_nested_webhook_body_is_a_400_not_a_500(webhook_app: Flask, torture_stack: LocalStack) -> None:
    timestamp = now_bytes()
    headers: dict[str, bytes | None] = {
        "webhook-id": b"msg_deep", "webhook-timestamp": timestamp,
        "webhook-signature": sign(torture_stack.webhook_secret, b"msg_deep", timestamp, DEEP),
    }
    assert post_raw(webhook_app, headers, DEEP) == 400


@pytest.mark.parametrize(("path", "field"), [
    ("/api/chat/{conversation}", "message"), ("/api/conversations", "title"),
    ("/api/conversations", "system_prompt"), ("/api/conversations", "model"),
])
def test_nul_character_in_a_text_field_is_a_400_and_inserts_nothing(
    live_api: ServiceProcess, torture_stack: LocalStack, torture_url: str, no_new_500s: None, path: str, field: str
) -> None:
    """Postgres cannot store U+0000 in text (PostgREST: 400, SQLSTATE 22P05). Once answered as 503
    "Supabase is unreachable" with Retry-After, which a client would retry forever."""
    user = GatewayUser(torture_stack)
    conversation = user.new_conversation()
    before = counts(torture_url, user.user_id)
    with user.api(live_api.url) as client:
        response = client.post(path.format(conversation=conversation), json={field: "nul \x00 inside"})
    assert counts(torture_url, user.user_id) == before
    assert response.status_code == 400, (response.status_code, response.text)


def test_openapi_document_says_text_cannot_hold_u0000(
    live_api: ServiceProcess, torture_stack: LocalStack, no_new_500s: None
) -> None:
    document = httpx.get(f"{live_api.url}/openapi.json").json()
    body = document["paths"]["/api/chat/{conversation_id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    user = GatewayUser(torture_stack)
    with user.api(live_api.url) as client:
        status = client.post(f"/api/chat/{user.new_conversation()}", json={"message": "a\x00b"}).status_code
    assert status == 200 or "pattern" in json.dumps(body["properties"]["message"]), (status, body)


def test_an_overlong_query_string_gets_a_documented_json_error(
    live_api: ServiceProcess, torture_stack: LocalStack, no_new_500s: None
) -> None:
    document = httpx.get(f"{live_api.url}/openapi.json").json()
    documented = {int(status) for status in document["paths"]["/api/conversations"]["get"]["responses"]}
    user = GatewayUser(torture_stack)
    with user.api(live_api.url) as client:
        # Longer than gunicorn's default line limit (4094), within ours: the app answers, in JSON.
        response = client.get("/api/conversations", params={"limit": "9" * 5000})
    assert response.status_code in documented, (response.status_code, sorted(documented))
    assert response.json()["error"]["code"]


# ----------------------------------------------------------------------------- 8. schemathesis as another user


def snapshot(database_url: str, user_id: str) -> list[str]:
    """Every row of the user's, as Postgres prints it: equal lists mean byte-for-byte equal rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conversations = conn.execute(
            "select c::text from public.conversations c where user_id = %s order by id", (user_id,)).fetchall()
        messages = conn.execute("select m::text from public.messages m where user_id = %s order by id", (user_id,)).fetchall()
    return [row[0] for row in conversations + messages]


def test_schemathesis_as_another_user_gets_no_500_and_changes_nothing_of_the_first(
    live_api: ServiceProcess, torture_stack: LocalStack, torture_url: str, no_new_500s: None, long_run: bool
) -> None:
    owner, intruder = GatewayUser(torture_stack), GatewayUser(torture_stack)
    with owner.api(live_api.url) as api:
        owned = [api.post("/api/conversations", json={"title": f"owner's {n}", "system_prompt": "private"}).json()["id"]
                 for n in range(3)]
        for conversation in owned:
            for turn in range(2):
                assert api.post(f"/api/chat/{conversation}", json={"message": f"secret {turn}"}).status_code == 200
    with intruder.api(live_api.url) as api:
        own = api.post("/api/conversations", json={"title": "intruder's"}).json()["id"]
    with psycopg.connect(torture_url, autocommit=True) as conn:
        owned_messages = [str(row[0]) for row in conn.execute(
            "select id from public.messages where user_id = %s order by id", (owner.user_id,)).fetchall()]
    before = snapshot(torture_url, owner.user_id)
    assert len(before) == 3 + 3 * 4

    owner_ids = set(owned + owned_messages)
    targets = [*owner_ids, own]
    headers = {"Authorization": f"Bearer {intruder.access_token}"}
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json", config=SCHEMATHESIS_CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    runs = [(operation, mode) for operation in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            if mode is GenerationMode.POSITIVE or has_inputs(operation)]  # the health checks have nothing to break
    per_run = (8000 if long_run else 2000) // sum(has_inputs(operation) for operation, _ in runs)
    calls: dict[str, int] = {}
    http_500_before = count_http_500([live_api])[0]
    for operation, mode in runs:
        drive(operation, mode, sorted(targets), owner_ids, headers, calls, per_run)
    aimed = calls.pop(AIMED, 0)
    after = snapshot(torture_url, owner.user_id)
    changed = len(set(before) ^ set(after))
    by_mode = {mode.value: sum(n for key, n in calls.items() if key.endswith(f"({mode.value})")) for mode in GenerationMode}
    record(f"torture schemathesis-intruder: operations={len(operations)} requests={sum(calls.values())} {by_mode} "
           f"aimed_at_owner={aimed} owner_rows={len(before)} owner_rows_changed={changed} "
           f"http_500={count_http_500([live_api])[0] - http_500_before}")
    assert after == before, "the intruder changed the owner's rows"
    assert len(calls) >= len(operations), calls


AIMED = "aimed at the owner's rows"
# Schemathesis's own list of statuses that reject invalid data, plus 413: a body over the size limit
# (schemathesis builds such bodies from long strings) is refused before it is read, as documented.
SCHEMATHESIS_CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]}},
    "operations": [SDK_BODY_IS_READ_BEYOND_ITS_SCHEMA]})


def drive(operation: Any, mode: GenerationMode, targets: list[str], owner_ids: set[str], headers: dict[str, str],
          calls: dict[str, int], count: int) -> None:
    """Up to `count` generated requests to one operation (fewer when its inputs run out); half of
    the valid ones aimed at `targets`. The owner's ids must never get a 2xx, nor appear in an answer."""
    cases = operation.as_strategy(generation_mode=mode).filter(
        lambda case: not request_line_too_long(case)
    )

    @hypothesis_settings(count)
    @given(case=cases, target=st.sampled_from(targets), aim=st.booleans())
    def call(case: schemathesis.Case, target: str, aim: bool) -> None:
        if aim and mode is GenerationMode.POSITIVE:
            if "conversation_id" in case.path_parameters:
                case.path_parameters["conversation_id"] = target
            if "before" in (case.query or {}):
                case.query["before"] = target
        response = case.call_and_validate(headers=headers)
        aimed_at_owner = {str(value) for value in [*case.path_parameters.values(), *(case.query or {}).values()]} & owner_ids
        assert not (aimed_at_owner and 200 <= response.status_code < 300), (case.path, case.query, response.status_code)
        assert not any(owned in response.text for owned in owner_ids), f"the owner's ids leaked: {response.text[:300]}"
        if aimed_at_owner:
            calls[AIMED] = calls.get(AIMED, 0) + 1
        key = f"{case.operation.label} ({mode.value})"
        calls[key] = calls.get(key, 0) + 1

    call()


def has_inputs(operation: Any) -> bool:
    return any(True for _ in operation.iter_parameters()) or bool(operation.get_request_payload_content_types())


def request_line_too_long(case: schemathesis.Case) -> bool:
    """Past gunicorn's request line limit: left out of the schemathesis run, since gunicorn's HTML
    414 is undocumented (test_an_overlong_query_string_gets_a_documented_json_error)."""
    query = urlencode({key: str(value) for key, value in (case.query or {}).items()})
    return len(case.formatted_path) + len(query) > GUNICORN_REQUEST_LINE_LIMIT - 200
