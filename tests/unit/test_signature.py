"""Standard Webhooks verification in process: the specification's known answer, and one row per
way a delivery can be wrong, each refused with InvalidSignature (the door's 401), never raised past."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import pytest

from tests.support.deliveries import signed_headers
from webhook.signature import InvalidSignature, WebhookVerifier

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"type": "INSERT", "table": "messages"}'
VERIFIER = WebhookVerifier(SECRET, tolerance_seconds=300)


def test_the_secret_is_unwrapped_as_the_specification_says() -> None:
    """The reference vector from the Standard Webhooks specification, signed with our verifier's key."""
    signed_at = datetime.fromtimestamp(1614265330, tz=timezone.utc)
    signature = VERIFIER._webhook.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", signed_at, '{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_fresh_delivery_signed_with_the_secret_verifies() -> None:
    VERIFIER.verify(BODY, signed_headers(SECRET, BODY))


def test_one_of_several_signatures_may_be_ours() -> None:
    headers = signed_headers(SECRET, BODY)
    headers["webhook-signature"] = f"v1,bm90IG91cnM= {headers['webhook-signature']}"  # key rotation: old and new
    VERIFIER.verify(BODY, headers)


def with_header(name: str, value: str | None) -> Callable[[], dict[str, str]]:
    """Headers signed when the test runs (not when it is collected), with one of them changed."""
    def headers() -> dict[str, str]:
        signed = signed_headers(SECRET, BODY)
        if value is None:
            del signed[name]
        else:
            signed[name] = value
        return signed
    return headers


def with_version(version: str) -> Callable[[], dict[str, str]]:
    """Our signature under another version prefix than v1."""
    def headers() -> dict[str, str]:
        signed = signed_headers(SECRET, BODY)
        signed["webhook-signature"] = signed["webhook-signature"].replace("v1,", f"{version},")
        return signed
    return headers


def every_header_empty() -> dict[str, str]:
    return {**signed_headers(SECRET, BODY), "webhook-id": "", "webhook-timestamp": "", "webhook-signature": ""}


def signed(secret: str = SECRET, age_seconds: float = 0) -> Callable[[], dict[str, str]]:
    return lambda: signed_headers(secret, BODY, age_seconds=age_seconds)


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        pytest.param(BODY, with_header("webhook-timestamp", None), "webhook-timestamp is missing or not a number",
                     id="no timestamp"),
        pytest.param(BODY, with_header("webhook-timestamp", "yesterday"), "webhook-timestamp is missing or not a number",
                     id="timestamp not a number"),
        pytest.param(BODY, with_header("webhook-timestamp", "nan"), "webhook-timestamp is outside the replay window",
                     id="timestamp NaN"),
        pytest.param(BODY, signed(age_seconds=301), "webhook-timestamp is outside the replay window",
                     id="replayed after the window"),
        pytest.param(BODY, signed(age_seconds=-301), "webhook-timestamp is outside the replay window", id="from the future"),
        pytest.param(BODY, signed("whsec_bm90IHRoZSBzZWNyZXQgb2YgdGhpcyBwcm9qZWN0"),
                     "signature does not verify (WebhookVerificationError)", id="signed with another secret"),
        pytest.param(BODY + b" ", signed(), "signature does not verify (WebhookVerificationError)",
                     id="body changed after signing"),
        pytest.param(BODY, with_header("webhook-id", "msg_other"), "signature does not verify (WebhookVerificationError)",
                     id="id changed after signing"),
        pytest.param(BODY, with_header("webhook-id", None), "signature does not verify (WebhookVerificationError)",
                     id="no id"),
        pytest.param(BODY, with_header("webhook-signature", None), "signature does not verify (WebhookVerificationError)",
                     id="no signature"),
        pytest.param(BODY, with_header("webhook-signature", "v1"), "signature does not verify (ValueError)",
                     id="signature without a comma"),
        pytest.param(b"\xff\xfe", signed(), "signature does not verify (UnicodeDecodeError)", id="body not UTF-8"),
        pytest.param(BODY, with_header("webhook-signature", "v1,AAAA"),
                     "signature does not verify (WebhookVerificationError)", id="a signature that is not ours"),
        pytest.param(BODY, with_header("webhook-signature", "v1,!!!not-base64!!!"),
                     "signature does not verify (Error)", id="signature not base64"),
        pytest.param(BODY, with_version("v9"),
                     "signature does not verify (WebhookVerificationError)", id="an unknown signature version"),
        pytest.param(BODY, every_header_empty, "webhook-timestamp is missing or not a number", id="every header empty"),
    ],
)
def test_each_defect_is_refused_with_its_reason(
    body: bytes, headers: Callable[[], dict[str, str]], reason: str
) -> None:
    with pytest.raises(InvalidSignature) as refused:
        VERIFIER.verify(body, headers())
    assert str(refused.value) == reason
