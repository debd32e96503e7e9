"""Every product module loads on its own, and imports point one way: door -> domain -> ports,
adapters below the domain, and nothing but the WSGI entry point above the app factory.

A module that loads only because another happened to be imported first is an import cycle
waiting for the next refactor; these tests find it before a deploy does."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("adapters", "api", "chat", "doors", "server", "webhook")
# Loaded before forking, so each child starts with the libraries warm and no product module.
THIRD_PARTY = ("aiohttp", "flask", "flask_cors", "gunicorn", "httpx", "jwt", "orjson", "postgrest", "pydantic",
               "pydantic_settings", "standardwebhooks", "structlog", "supabase", "tenacity")
# server.wsgi builds the app from the environment at import, as gunicorn does.
IMPORT_ENVIRONMENT = {
    "SUPABASE_URL": "http://127.0.0.1:9",
    "SUPABASE_SERVICE_ROLE_KEY": "service-role-key",
    "SUPABASE_ANON_KEY": "anon-key",
    "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "OPENAI_API_KEY": "sk-unused",
}

FORK_PER_MODULE = """
import importlib, os, sys
for name in {third_party!r}:
    importlib.import_module(name)
assert not [m for m in sys.modules if m.split(".")[0] in {packages!r}], "a product module is preloaded"
failed = []
for module in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException as error:
            print(f"{{module}}: {{type(error).__name__}}: {{error}}", file=sys.stderr)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(module)
print(" ".join(failed))
"""


def product_modules() -> list[str]:
    modules = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to give each module a fresh interpreter state")
def test_every_product_module_imports_alone() -> None:
    modules = product_modules()
    script = FORK_PER_MODULE.format(third_party=THIRD_PARTY, packages=PRODUCT_PACKAGES)
    result = subprocess.run(
        [sys.executable, "-c", script, *modules],
        cwd=ROOT, env={**os.environ, **IMPORT_ENVIRONMENT}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"modules that do not import alone: {result.stdout}\n{result.stderr}"
    assert len(modules) > 20  # the walk found the product, not an empty folder


# (package, what it must never import): the arrows the architecture forbids.
FORBIDDEN = [
    pytest.param("webhook", {"server", "api"}, id="event door: no app factory, no other door"),
    pytest.param("api", {"server", "webhook"}, id="REST door: no app factory, no other door"),
    pytest.param("doors", {"server", "api", "webhook", "adapters"}, id="shared door helpers: nothing above"),
    pytest.param("chat", {"server", "api", "webhook", "doors", "adapters", "flask", "werkzeug", "supabase", "postgrest",
                          "httpx", "aiohttp", "openai", "orjson", "uvloop", "gunicorn"},
                 id="the domain: no door, no adapter, no web or client library"),
    pytest.param("adapters", {"server", "api", "webhook", "doors", "flask", "werkzeug", "gunicorn"},
                 id="adapters: never Flask, never a door"),
]


@pytest.mark.parametrize(("package", "forbidden"), FORBIDDEN)
def test_imports_point_one_way(package: str, forbidden: set[str]) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in forbidden
    }
    assert not wrong, sorted(wrong)


def test_only_the_wsgi_entry_point_imports_the_app_factory() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for package in PRODUCT_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if any(name == "server" or name.startswith("server.") for name in imported_modules(path))
        and path.relative_to(ROOT).parts[0] != "server"
    }
    assert importers == set()
    assert "server" in imported_modules(ROOT / "server" / "wsgi.py")
