"""The domain's named failures. The doors map them to HTTP in one place each; the pipeline
turns the model's into a message the user reads on the failed row."""

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
    """Supabase could not be reached or answered with a server error."""


class ConversationNotFound(ChatError):
    """No such conversation, or not the caller's: the two are deliberately indistinguishable."""
