"""gunicorn.conf.py's listeners, read with the real socket probe it runs (so not a unit test:
it binds a socket to find out whether the host has IPv6)."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _gunicorn_default(name: str, monkeypatch: pytest.MonkeyPatch) -> object:
    for key in list(os.environ):
        monkeypatch.delenv(key)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # the file sets it; undone after the test
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))[name]


def test_gunicorn_listens_on_the_metrics_port_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(_gunicorn_default("bind", monkeypatch)) == 1  # type: ignore[arg-type]
    for key in list(os.environ):
        monkeypatch.delenv(key)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.setenv("METRICS_PORT", "9091")
    bind = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"]
    assert bind[0] == "0.0.0.0:8000" and bind[1].endswith(":9091")
