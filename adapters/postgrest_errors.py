"""The one table from PostgREST and Postgres error codes to the domain's named errors, used by
both Supabase adapters (the service role's and the caller's), so the same code means the same
thing whichever door a request came through.

Codes: Postgres SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html) and
PostgREST's own PGRSTxxx (https://docs.postgrest.org/en/stable/references/errors.html)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import aiohttp
import httpx
from postgrest.exceptions import APIError

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
from chat.logging import get_logger

logger = get_logger(__name__)

# Refusals our migrations raise themselves (RAISE SQLSTATE 'PGRST', see usage_quotas.sql): their
# message is written for the user, and is what the user is told.
OWN_REFUSALS: Mapping[str, type[ChatError]] = {
    "quota_exceeded": RateLimited,
    "conversation_limit": ConversationLimitReached,
    "system_prompt_too_long": InvalidRequest,
    "model_not_allowed": InvalidRequest,
    "cursor_not_found": CursorNotFound,
    "leaf_not_found": LeafNotFound,
    "message_not_found": MessageNotFound,  # regenerate_message, edit_message: missing or not the caller's
}
# Postgres's own wording names internals (types, constraints, values): it stays in the logs.
DATA_REFUSED_MESSAGE = "a value could not be stored (wrong type, format or size)."

# The request never got an answer (refused, reset, timed out), from httpx (the threads' calls) or
# aiohttp (the reply engine's loop): unreachable, whichever client asked.
TRANSPORT_ERRORS = (httpx.HTTPError, aiohttp.ClientError, asyncio.TimeoutError)

# (code, or prefix ending in "*") -> the named error. First match wins; anything else is StoreRejected.
POSTGREST_ERRORS: tuple[tuple[str, type[ChatError]], ...] = (
    # Gateway or database trouble: transient, the caller may try again.
    ("08*", StoreUnavailable),  # connection exceptions
    ("53*", StoreUnavailable),  # insufficient resources (too many connections, disk full)
    ("57*", StoreUnavailable),  # operator intervention (shutdown, query cancelled)
    ("PGRST0*", StoreUnavailable),  # PostgREST cannot reach or pool the database
    ("40001", StoreUnavailable),  # serialization failure
    ("40P01", StoreUnavailable),  # deadlock detected
    ("502", StoreUnavailable),
    ("503", StoreUnavailable),
    ("504", StoreUnavailable),
    # Row-level security refusals, a missing parent and "no row" all read as "not found": a
    # conversation that is not yours is indistinguishable from one that does not exist.
    ("42501", ConversationNotFound),
    ("23503", ConversationNotFound),
    ("PGRST116", ConversationNotFound),
    ("PGRST301", InvalidCredentials),  # the caller's JWT is malformed or expired for PostgREST
    ("PGRST302", InvalidCredentials),  # anonymous access refused
    ("PGRST303", InvalidCredentials),  # JWT claims refused
    ("22*", InvalidRequest),  # data exceptions: a value the column cannot take
    ("23502", InvalidRequest),  # not-null violation
    ("23514", InvalidRequest),  # check violation
    # The only unique key a caller's insert can hit: message ids are chosen by the service.
    ("23505", DuplicateClientMessage),
)


def store_error(
    error: httpx.HTTPError | aiohttp.ClientError | asyncio.TimeoutError | APIError,
    during: str,
    meaning: Mapping[str, type[ChatError]] | None = None,
) -> ChatError:
    """The named error for one failed request. `meaning` lets a call say what a code means for
    it in particular (a missing parent when creating a conversation is the caller's own user)."""
    if isinstance(error, TRANSPORT_ERRORS):
        return StoreUnavailable(f"Supabase unreachable during {during}: {type(error).__name__}")
    code = str(error.code or "")
    if code == "quota_exceeded":
        return _rate_limited(error)
    if code in OWN_REFUSALS:
        return OWN_REFUSALS[code](error.message or code)
    named = (meaning or {}).get(code) or _lookup(code)
    if named is StoreRejected:
        return StoreRejected(f"Supabase refused {during} ({code or 'no code'}): {error.message}")
    if named is StoreUnavailable:
        return StoreUnavailable(f"Supabase failed during {during} ({code}): {error.message}")
    if named is InvalidRequest:
        logger.info("database refused the request's data", code=code, during=during)
        logger.debug("database refusal text", code=code, reason=error.message)
        return InvalidRequest(DATA_REFUSED_MESSAGE)
    return named(error.message or code)


def _rate_limited(error: APIError) -> RateLimited:
    """A quota refusal: its details are JSON with the limit's name and the seconds until it resets."""
    try:
        details = json.loads(error.details or "{}")
    except (TypeError, ValueError):
        details = {}
    if not isinstance(details, dict):
        details = {}
    retry_after = details.get("retry_after_seconds")
    return RateLimited(
        retry_after if isinstance(retry_after, int) and retry_after > 0 else 60,
        error.message or "A usage limit is reached; try again later.",
        str(details.get("limit") or ""),
    )


def _lookup(code: str) -> type[ChatError]:
    for pattern, named in POSTGREST_ERRORS:
        if code == pattern or (pattern.endswith("*") and code.startswith(pattern[:-1])):
            return named
    return StoreRejected
