"""The fake's errors, in OpenAI's shape ({"error": {message, type, param, code}}), which the SDK
parses into its typed exceptions."""

from __future__ import annotations

from collections.abc import Mapping

from devstack.fake_openai.state import JsonDict
from devstack.http_errors import ApiError


class OpenAIError(ApiError):
    """An OpenAI-shaped error response, raised so validation code can bail out early.

    Why: every failure path (validation, auth, injected faults, control API misuse)
    must produce the exact ``{"error": {...}}`` body the SDK parses into typed
    exceptions; centralising it here keeps the shape identical everywhere.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        outcome: str = "invalid_request",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.error_type = error_type
        self.param = param
        self.code = code
        self.outcome = outcome

    def body(self) -> JsonDict:
        """Return the JSON body OpenAI uses for errors (the SDK reads ``error.*``)."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }
