"""The database's limits as the REST door answers them: the same refusals, in the door's error
shape, and Postgres's own wording kept out of the answer."""

from __future__ import annotations

import psycopg
import pytest
from postgrest.exceptions import APIError

from chat.caller_store import CallerSession
from chat.errors import InvalidRequest, RateLimited
from devstack.service_process import ServiceProcess
from tests.api_clients import SignedUpUser
from tests.quota_support import limit_user


def test_model_outside_the_allowlist_is_a_400_naming_the_offered_ones(
    service: ServiceProcess, alice: SignedUpUser
) -> None:
    response = alice.api(service.url).post("/api/conversations", json={"model": "o1-pro-EXPENSIVE"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "code": "bad_request",
        "message": "Invalid request: The model 'o1-pro-EXPENSIVE' is not offered here. Choose one of: fake-model, "
        "fake-model-2, or leave it empty for the default.",
    }


def test_system_prompt_over_the_database_limit_is_a_400(service: ServiceProcess, alice: SignedUpUser) -> None:
    response = alice.api(service.url).post("/api/conversations", json={"system_prompt": "p" * 8001})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == (
        "Invalid request: The system prompt has 8001 characters; at most 8000 are allowed."
    )


def test_conversation_cap_is_a_403(service: ServiceProcess, alice: SignedUpUser, db: psycopg.Connection) -> None:
    limit_user(db, alice.user_id, max_conversations=1)
    api = alice.api(service.url)
    assert api.post("/api/conversations", json={}).status_code == 201
    refused = api.post("/api/conversations", json={})
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "conversation_limit",
        "message": "You can have at most 1 conversations. Delete some to start new ones.",
    }


class Refusing:
    """A PostgREST request that fails as the database answered it."""

    def __init__(self, error: dict[str, str]) -> None:
        self.error = error

    def execute(self) -> None:
        raise APIError(self.error)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param({"code": "22P02", "message": 'invalid input syntax for type uuid: "secret-value"'}, id="22P02"),
        pytest.param({"code": "23514", "message": 'new row for relation "messages" violates check constraint "x"'},
                     id="23514"),
        pytest.param({"code": "22001", "message": "value too long for type character varying(10)"}, id="22001"),
    ],
)
def test_database_wording_stays_out_of_the_answer(error: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest) as raised:
        CallerSession._run(Refusing(error))
    assert str(raised.value) == "a value could not be stored (wrong type, format or size)."


def test_quota_refusal_carries_the_limit_and_the_wait() -> None:
    error = {"code": "quota_exceeded", "message": "Too many messages: at most 2 per 60 s. The limit resets at ...",
             "details": '{"limit": "messages_per_window", "retry_after_seconds": 37}'}
    with pytest.raises(RateLimited) as raised:
        CallerSession._run(Refusing(error))
    assert (raised.value.limit, raised.value.retry_after_seconds, raised.value.message) == (
        "messages_per_window", 37, error["message"])
