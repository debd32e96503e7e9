"""The one table from PostgREST and Postgres error codes to the domain's named errors, used by
both Supabase adapters (the service role's and the caller's), so the same code means the same
thing whichever door a request came through.

Codes: Postgres SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html) and
PostgREST's own PGRSTxxx (https://docs.postgrest.org/en/stable/references/errors.html)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from postgrest.exceptions import APIError

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
    ("P0002", CursorNotFound),  # raised by conversation_history / list_conversations for an unknown 'before'
    ("22*", InvalidRequest),  # data exceptions: a value the column cannot take
    ("23502", InvalidRequest),  # not-null violation
    ("23514", InvalidRequest),  # check violation
    # The only unique key a caller's insert can hit: message ids are chosen by the service.
    ("23505", DuplicateClientMessage),
)


def store_error(
    error: httpx.HTTPError | APIError, during: str, meaning: Mapping[str, type[ChatError]] | None = None
) -> ChatError:
    """The named error for one failed request. `meaning` lets a call say what a code means for
    it in particular (a missing parent when creating a conversation is the caller's own user)."""
    if isinstance(error, httpx.HTTPError):
        return StoreUnavailable(f"Supabase unreachable during {during}: {type(error).__name__}")
    code = str(error.code or "")
    named = (meaning or {}).get(code) or _lookup(code)
    if named is StoreRejected:
        return StoreRejected(f"Supabase refused {during} ({code or 'no code'}): {error.message}")
    if named is StoreUnavailable:
        return StoreUnavailable(f"Supabase failed during {during} ({code}): {error.message}")
    return named(error.message or code)


def _lookup(code: str) -> type[ChatError]:
    for pattern, named in POSTGREST_ERRORS:
        if code == pattern or (pattern.endswith("*") and code.startswith(pattern[:-1])):
            return named
    return StoreRejected
