"""The local stack's files that hold secrets are readable by their owner only, from their first
byte, and an older run's world-readable files are tightened when read."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devstack.keys import JwtKeys
from devstack.private_files import read_private, write_private
from devstack.stack import LocalStack


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_stack_state_files_are_private(stack: LocalStack, tmp_path: Path) -> None:
    state = stack.config.state_dir
    env_file = tmp_path / "env"
    stack.write_env_file(env_file)
    assert {name: mode(state / name) for name in ("webhook-secret", "jwt-signing-key.json")} == {
        "webhook-secret": 0o600, "jwt-signing-key.json": 0o600,
    }
    assert mode(env_file) == 0o600
    assert "SUPABASE_SERVICE_ROLE_KEY='" in env_file.read_text()


def test_rewriting_a_world_readable_file_makes_it_private(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert (mode(path), path.read_text()) == (0o600, "new")


@pytest.mark.parametrize("name", ["webhook-secret", "jwt-signing-key.json"])
def test_an_old_readable_secret_is_tightened_when_loaded(tmp_path: Path, name: str) -> None:
    keys = JwtKeys.load_or_create(tmp_path, "http://issuer")
    secret = tmp_path / name
    if name == "webhook-secret":
        secret.write_text("whsec_x")
    secret.chmod(0o644)
    if name == "webhook-secret":
        assert read_private(secret) == "whsec_x"
    else:
        assert JwtKeys.load_or_create(tmp_path, "http://issuer").key_id == keys.key_id
    assert mode(secret) == 0o600
