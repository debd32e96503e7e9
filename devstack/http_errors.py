"""The one error type of the stand-ins: an HTTP error answer in the shape of the service a
stand-in imitates (PostgREST's for the gateway, OpenAI's for the fake model). Each stand-in
subclasses it with its own body; rendering is the same for all."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response


class ApiError(Exception):
    content_type = "application/json"

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body, as the imitated service words it."""
        raise NotImplementedError

    def to_response(self) -> Response:
        return Response(
            json.dumps(self.body(), separators=(",", ":")),
            self.status,
            headers={**self.headers, "content-type": self.content_type},
        )
