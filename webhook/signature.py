"""Standard Webhooks verification over the raw body. Any defect in the headers or the body is
the same answer, "not from our database", so nothing a sender crafts can raise past here."""

from __future__ import annotations

import time
from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook


class InvalidSignature(Exception):
    """Missing, malformed, stale or wrong signature: the request is refused with 401."""


class WebhookVerifier:
    """Built once with the secret (unwrapped once, not per delivery) and shared by every thread:
    verification keeps no state between calls."""

    def __init__(self, secret: str, tolerance_seconds: int) -> None:
        self._webhook = Webhook(secret)
        self.tolerance_seconds = tolerance_seconds

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise InvalidSignature unless `body` was signed with the secret within the replay
        window. `headers` are keyed in lower case."""
        timestamp = headers.get("webhook-timestamp", "")
        try:
            age = abs(time.time() - float(timestamp))
        except ValueError:
            raise InvalidSignature("webhook-timestamp is missing or not a number") from None
        if not age <= self.tolerance_seconds:  # also refuses NaN
            raise InvalidSignature("webhook-timestamp is outside the replay window")
        try:
            self._webhook.verify(body, dict(headers), json_parse=False)
        except Exception as error:  # the library raises several types for malformed input
            raise InvalidSignature(f"signature does not verify ({type(error).__name__})") from None
