"""The database's limits as the REST door answers them: the same refusals, in the door's error
shape (the translation itself, and Postgres's own wording kept out, in unit/test_postgrest_errors.py)."""

from __future__ import annotations

import psycopg

from devstack.service_process import ServiceProcess
from tests.support.quotas import limit_user
from tests.support.users import SignedUpUser


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
