"""The one translation of PostgREST/Postgres errors into the domain's named errors: every code
the adapters can meet, and what an unknown one becomes."""

from __future__ import annotations

import httpx
import pytest
from postgrest.exceptions import APIError

from adapters.postgrest_errors import store_error
from chat.errors import (
    ChatError,
    ConversationLimitReached,
    ConversationNotFound,
    CursorNotFound,
    DuplicateClientMessage,
    InvalidCredentials,
    InvalidRequest,
    LeafNotFound,
    MessageNotFound,
    RateLimited,
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
        pytest.param("cursor_not_found", CursorNotFound, id="cursor_not_found raised by the history functions"),
        pytest.param("leaf_not_found", LeafNotFound, id="leaf_not_found raised by conversation_branch"),
        pytest.param("message_not_found", MessageNotFound, id="message_not_found: regenerate or edit another's message"),
        pytest.param("quota_exceeded", RateLimited, id="quota_exceeded: a usage limit"),
        pytest.param("conversation_limit", ConversationLimitReached, id="conversation_limit"),
        pytest.param("system_prompt_too_long", InvalidRequest, id="system_prompt_too_long"),
        pytest.param("model_not_allowed", InvalidRequest, id="model_not_allowed"),
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


@pytest.mark.parametrize(
    "error",
    [
        pytest.param({"code": "22P02", "message": 'invalid input syntax for type uuid: "secret-value"'}, id="22P02"),
        pytest.param({"code": "23514", "message": 'new row for relation "messages" violates check constraint "x"'},
                     id="23514"),
        pytest.param({"code": "22001", "message": "value too long for type character varying(10)"}, id="22001"),
    ],
)
def test_postgres_wording_stays_out_of_what_the_caller_is_told(error: dict[str, str]) -> None:
    translated = store_error(APIError({**error, "details": None, "hint": None}), "insert_message")
    assert str(translated) == "a value could not be stored (wrong type, format or size)."


def test_our_own_refusals_keep_the_words_written_for_the_user() -> None:
    message = "The model 'o1-pro' is not offered here. Choose one of: gpt-4o-mini, or leave it empty for the default."
    refused = APIError({"code": "model_not_allowed", "message": message, "details": None, "hint": None})
    assert str(store_error(refused, "create_conversation")) == message


def test_a_quota_refusal_carries_the_limit_and_the_wait() -> None:
    message = "Too many messages: at most 2 per 60 s. The limit resets at 2026-12-01T10:00:00Z (in 37 s)."
    refused = APIError({"code": "quota_exceeded", "message": message, "hint": None,
                        "details": '{"limit": "messages_per_window", "retry_after_seconds": 37}'})
    translated = store_error(refused, "insert_message")
    assert isinstance(translated, RateLimited)
    assert (translated.limit, translated.retry_after_seconds, translated.message) == ("messages_per_window", 37, message)
