"""Every product module loads on its own, and imports point one way: door -> domain -> ports,
adapters below the domain, and nothing but the WSGI entry point above the app factory.

A module that loads only because another happened to be imported first is an import cycle
waiting for the next refactor; these tests find it before a deploy does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("adapters", "api", "chat", "http_common", "server", "webhook")
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


# (package, what it must never import): the arrows the architecture forbids.
FORBIDDEN = [
    pytest.param("webhook", {"server", "api"}, id="event door: no app factory, no other door"),
    pytest.param("api", {"server", "webhook"}, id="REST door: no app factory, no other door"),
    pytest.param("http_common", {"server", "api", "webhook", "adapters"}, id="what both doors share: nothing above"),
    pytest.param("chat", {"server", "api", "webhook", "http_common", "adapters", "flask", "werkzeug", "supabase", "postgrest",
                          "httpx", "aiohttp", "openai", "orjson", "uvloop", "gunicorn"},
                 id="the domain: no door, no adapter, no web or client library"),
    pytest.param("adapters", {"server", "api", "webhook", "http_common", "flask", "werkzeug", "gunicorn"},
                 id="adapters: never Flask, never a door"),
]

# (folder, modules it must never import): the two flows meet only in chat/service.py and the ports.
FORBIDDEN_MODULES = [
    pytest.param("chat/answering", "chat.waiting", id="answering never waits: it settles and announces"),
    pytest.param("chat/waiting", "chat.answering", id="waiting never answers: it hands messages to the service"),
]


@pytest.mark.parametrize(("folder", "forbidden"), FORBIDDEN_MODULES)
def test_the_two_flows_meet_only_in_the_service(folder: str, forbidden: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / folder).rglob("*.py")
        for name in imported_modules(path)
        if name == forbidden or name.startswith(forbidden + ".")
    }
    assert not wrong, sorted(wrong)
    assert list((ROOT / folder).rglob("*.py"))  # the folder exists: the rule checks something


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


def test_the_doors_reach_the_domain_only_through_the_service_verbs() -> None:
    """A door that opened the caller's store itself would skip what the service adds (metrics,
    the waiting rules): the doors name verbs of ChatService, never its parts."""
    reaching_in = {
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for door in ("api", "webhook")
        for path in (ROOT / door).rglob("*.py")
        for line in path.read_text().splitlines()
        if "chat_service()." in line and any(f"chat_service().{part}" in line for part in
                                             ("caller_store", "store.", "pipeline", "engine", "waiter", "settled"))
    }
    assert not reaching_in, sorted(reaching_in)


REPLY_WRITES = ("complete_message_for_reply", "begin_reply", "finish_reply", "fail_message")


def test_one_module_writes_a_claimed_reply() -> None:
    """The claimed reply's writes (chat/answering/claimed_reply.py) are the one place the domain
    answers, streams or fails a message, so the claim's fencing is read in one file. Releasing a
    claim the process never saw (a lost answer to the claim call) and at shutdown are not replies."""
    writers = {
        f"{path.relative_to(ROOT)}: {write}"
        for path in (ROOT / "chat").rglob("*.py")
        if path.name != "claimed_reply.py"
        for write in REPLY_WRITES
        if f".{write}(" in path.read_text()
    }
    assert not writers, sorted(writers)
    assert all(f".{write}(" in (ROOT / "chat" / "answering" / "claimed_reply.py").read_text() for write in REPLY_WRITES)
