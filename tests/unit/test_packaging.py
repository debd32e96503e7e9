"""pyproject.toml declares what the service needs (ranges); requirements.txt is the pinned lock
the Dockerfile and `make` install. The two must agree, or a fresh install and the image differ."""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}


def pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            [specifier] = list(requirement.specifier)
            assert specifier.operator == "==", f"{line}: requirements.txt pins exact versions"
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_every_dependency_is_pinned_and_every_pin_is_declared() -> None:
    assert set(declared()) == set(pinned())


def test_every_pin_is_inside_its_declared_range() -> None:
    outside = {name: version for name, version in pinned().items() if version not in declared()[name].specifier}
    assert outside == {}


def test_the_project_supports_python_3_10_and_has_a_build_system() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.10"
    assert pyproject["build-system"]["build-backend"]
