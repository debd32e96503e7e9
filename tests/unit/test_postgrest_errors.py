"""The one translation of PostgREST/Postgres errors into the domain's named errors: every code
the adapters can meet, and what an unknown one becomes."""

from __future__ import annotations

import httpx
import pytest
from postgrest.exceptions import APIError

from adapters.postgrest_errors import store_error
from chat.errors import (
    ChatError,
    ConversationNotFound,
    CursorNotFound,
    DuplicateClientMessage,
    InvalidCredentials,
    InvalidRequest,
    StoreRejected,
    StoreUnavailable,
)


def api_error(code: str) -> APIError:
    return APIError({"code": code, "message": f"refused with {code}", "details": None, "hint": None})


@pytest.mark.parametrize(
    ("code", "named"),
    [
        pytest.param("08006", StoreUnavailable, id="08006 connection failure"),
        pytest.param("53300", StoreUnavailable, id="53300 too many connections"),
        pytest.param("57P01", StoreUnavailable, id="57P01 admin shutdown"),
        pytest.param("PGRST001", StoreUnavailable, id="PGRST001 database client error"),
        pytest.param("PGRST003", StoreUnavailable, id="PGRST003 pool timeout"),
        pytest.param("40001", StoreUnavailable, id="40001 serialization failure"),
        pytest.param("40P01", StoreUnavailable, id="40P01 deadlock"),
        pytest.param("503", StoreUnavailable, id="503 from the gateway"),
        pytest.param("42501", ConversationNotFound, id="42501 refused by row-level security"),
        pytest.param("23503", ConversationNotFound, id="23503 missing parent"),
        pytest.param("PGRST116", ConversationNotFound, id="PGRST116 no row"),
        pytest.param("PGRST301", InvalidCredentials, id="PGRST301 JWT refused"),
        pytest.param("PGRST303", InvalidCredentials, id="PGRST303 JWT claims refused"),
        pytest.param("P0002", CursorNotFound, id="P0002 unknown cursor"),
        pytest.param("22P02", InvalidRequest, id="22P02 invalid text representation"),
        pytest.param("23514", InvalidRequest, id="23514 check violation"),
        pytest.param("23502", InvalidRequest, id="23502 not-null violation"),
        pytest.param("23505", DuplicateClientMessage, id="23505 client_message_id reused"),
        pytest.param("PGRST202", StoreRejected, id="PGRST202 no such function: our bug, not an outage"),
        pytest.param("42703", StoreRejected, id="42703 undefined column: our bug"),
        pytest.param("", StoreRejected, id="no code at all"),
    ],
)
def test_each_code_has_one_meaning(code: str, named: type[ChatError]) -> None:
    translated = store_error(api_error(code), "list_conversations")
    assert type(translated) is named


def test_an_unreachable_supabase_is_unavailable() -> None:
    translated = store_error(httpx.ConnectError("refused"), "claim_message_for_reply")
    assert isinstance(translated, StoreUnavailable)
    assert str(translated) == "Supabase unreachable during claim_message_for_reply: ConnectError"


def test_a_call_may_say_what_a_code_means_for_it() -> None:
    translated = store_error(api_error("23503"), "create_conversation", {"23503": InvalidCredentials})
    assert type(translated) is InvalidCredentials


def test_a_refusal_names_the_call_and_the_code_for_the_operator() -> None:
    assert str(store_error(api_error("PGRST202"), "message_outcome")) == (
        "Supabase refused message_outcome (PGRST202): refused with PGRST202"
    )
