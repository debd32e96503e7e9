"""The domain's named failures. adapters/postgrest_errors.py translates database codes into
them; the doors map them to HTTP in one place each; the pipeline turns the model's into a
message the user reads on the failed row."""

from __future__ import annotations


class ChatError(Exception):
    """Base for failures the domain expects and names."""


class ModelError(ChatError):
    """The model gave no reply. `user_message` is safe to show to the message's author."""

    def __init__(self, user_message: str, detail: str = "") -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message


class ModelUnavailable(ModelError):
    """Transient trouble (rate limit, 5xx, timeout, network) that outlasted every retry."""


class ModelRejected(ModelError):
    """The provider refused the request itself (bad request, quota, auth): retrying cannot help."""


class StoreUnavailable(ChatError):
    """Supabase could not be reached or answered with a server error: worth trying again."""


class StoreRejected(ChatError):
    """Supabase refused a request for a reason no retry fixes (a missing function, a schema that
    does not match the code): a fault on our side, never the caller's."""


class ClaimSuperseded(ChatError):
    """This worker's claim is no longer the message's current one (its lease ran out and another
    attempt holds the message, or it was released): the database refused the write."""


class ConversationNotFound(ChatError):
    """No such conversation, or not the caller's: the two are deliberately indistinguishable."""


class MessageNotFound(ChatError):
    """No such message, or not the caller's (indistinguishable, as for conversations)."""


class InvalidCredentials(ChatError):
    """Supabase refused the caller's token although we accepted it (revoked, clock skew)."""


class InvalidRequest(ChatError):
    """The request is well-formed JSON but asks for something impossible (e.g. an unknown cursor)."""


class LeafNotFound(ChatError):
    """A branch's `leaf` that names no message of the conversation (or none of the caller's)."""


class CursorNotFound(ChatError):
    """A page cursor (`before`) that names nothing in this listing: the page it points at is gone."""


class DuplicateClientMessage(ChatError):
    """A message with this client_message_id exists already: the caller is retrying."""


class ClientMessageConflict(ChatError):
    """The client_message_id was already used for a message in another conversation."""


class RateLimited(ChatError):
    """The database refused the message: one of the user's quotas is used up. `message` says
    which and when it resets, in words the user can read."""

    def __init__(self, retry_after_seconds: int, message: str, limit: str = "") -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.message = message
        self.limit = limit


class ConversationLimitReached(ChatError):
    """The user has as many conversations as the operator allows; `message` says how many."""


class ReplyFailed(ChatError):
    """The pipeline gave up on the message; `error` is the reason stored on the row."""

    def __init__(self, message_id: str, error: str) -> None:
        super().__init__(error)
        self.message_id = message_id
        self.error = error


class ReplyTimeout(ChatError):
    """No reply yet within the wait; the message is kept and its reply can be fetched later."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"no reply to {message_id} yet")
        self.message_id = message_id


class BroadcastFailed(ChatError):
    """Realtime did not take a broadcast. Nothing is lost: the reply row has the text, and a
    client that missed deltas re-reads it (a gap in `offset` tells it to)."""
