"""Standard Webhooks verification over the raw body. Any defect in the headers or the body is
the same answer, "not from our database", so nothing a sender crafts can raise past here."""

from __future__ import annotations

import time
from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook


class InvalidSignature(Exception):
    """Missing, malformed, stale or wrong signature: the request is refused with 401."""


def verify_signature(secret: str, body: bytes, headers: Mapping[str, str], tolerance_seconds: int) -> None:
    """Raise InvalidSignature unless the body was signed with `secret` within the replay window."""
    timestamp = headers.get("webhook-timestamp", "")
    try:
        age = abs(time.time() - float(timestamp))
    except ValueError:
        raise InvalidSignature("webhook-timestamp is missing or not a number") from None
    if not age <= tolerance_seconds:  # also refuses NaN
        raise InvalidSignature("webhook-timestamp is outside the replay window")
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except Exception as error:  # the library raises several types for malformed input
        raise InvalidSignature(f"signature does not verify ({type(error).__name__})") from None
