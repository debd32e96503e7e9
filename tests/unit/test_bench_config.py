"""`python -m bench --service-env NAME=VALUE`: what a setting costs is measured by running the
service with it; a malformed one, or one of the figures the run itself measures, is refused."""

from __future__ import annotations

import argparse

import pytest

from bench.config import service_setting


def test_a_setting_is_split_at_its_first_equals_sign() -> None:
    assert service_setting("STREAM_REPLIES=false") == ("STREAM_REPLIES", "false")
    assert service_setting("CORS_ORIGINS=http://a=b") == ("CORS_ORIGINS", "http://a=b")
    assert service_setting("LOG_LEVEL=") == ("LOG_LEVEL", "")


@pytest.mark.parametrize("text", ["STREAM_REPLIES", "=false", "NOT A NAME=1", "WEB_CONCURRENCY=4", "GUNICORN_THREADS=8"])
def test_a_malformed_or_measured_setting_is_refused_with_the_expected_shape(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected NAME=VALUE"):
        service_setting(text)
