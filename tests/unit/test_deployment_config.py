"""The deployment files agree with each other and with the Procfile: one start command everywhere,
a health check on /healthz, a shutdown grace longer than gunicorn's, every variable documented.

Static checks only: no network, no Docker, no database.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_EXCLUDED_PACKAGES = {"tests", "devstack", "bench"}  # never imported by production code
SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD)$")


def _read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def _procfile_web_command() -> str:
    lines = [line for line in _read("Procfile").splitlines() if line.strip() and not line.lstrip().startswith("#")]
    web = [line for line in lines if line.startswith("web:")]
    assert len(web) == 1, f"Procfile must have exactly one web: line, found {web}"
    return web[0].removeprefix("web:").strip()


def _env_example_names() -> list[str]:
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", _read(".env.example"), flags=re.MULTILINE)
    assert names, ".env.example lists no variables"
    return names


def _env_example_defaults() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", _read(".env.example"), flags=re.MULTILINE))


def _gunicorn_default(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A setting of gunicorn.conf.py as it is with nothing set in the environment."""
    for key in list(os.environ):
        monkeypatch.delenv(key)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # the file sets it; undone after the test
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))[name]


# --- Dockerfile -----------------------------------------------------------------------------------


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in _read("Dockerfile").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments.strip()))
    assert stages, "Dockerfile has no FROM"
    return stages


def _final_stage() -> list[tuple[str, str]]:
    return _dockerfile_stages()[-1]


def _instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def _copied_sources(stage: list[tuple[str, str]]) -> list[str]:
    """Build-context paths a stage COPYs (not --from=another stage)."""
    sources: list[str] = []
    for arguments in _instructions(stage, "COPY"):
        words = shlex.split(arguments)
        if any(word.startswith("--from") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources.extend(path.rstrip("/") or "/" for path in paths[:-1])
    return sources


def test_procfile_has_exactly_one_web_line() -> None:
    assert _procfile_web_command() == "gunicorn --config gunicorn.conf.py server.wsgi:app"


def test_dockerfile_cmd_is_the_procfile_web_command_in_exec_form() -> None:
    commands = _instructions(_final_stage(), "CMD")
    assert commands, "the final stage has no CMD"
    command = commands[-1]
    assert command.startswith("["), f"CMD must be exec form (a JSON array) so gunicorn gets SIGTERM: {command}"
    assert json.loads(command) == shlex.split(_procfile_web_command())
    assert not _instructions(_final_stage(), "ENTRYPOINT"), "an ENTRYPOINT would wrap the Procfile command"


def test_dockerfile_final_stage_runs_as_a_non_root_user() -> None:
    users = _instructions(_final_stage(), "USER")
    assert users, "the final stage has no USER: the service would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"final USER is {users[-1]}"


def test_dockerfile_healthcheck_hits_healthz_without_curl() -> None:
    checks = _instructions(_final_stage(), "HEALTHCHECK")
    assert len(checks) == 1, f"expected one HEALTHCHECK in the final stage, found {checks}"
    assert "/healthz" in checks[0]
    assert "urllib" in checks[0] and "curl" not in checks[0], "python:3.11-slim has no curl"


def test_dockerfile_final_stage_has_no_build_tools_and_only_runtime_dependencies() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2, "expected a builder stage and a runtime stage"
    final_runs = " ".join(_instructions(stages[-1], "RUN"))
    for tool in ("gcc", "g++", "build-essential", "clang", "apt-get install"):
        assert tool not in final_runs, f"the final stage installs {tool}"
    text = _read("Dockerfile")
    bases = {
        arguments.split()[0].replace("${PYTHON_IMAGE}", "python:3.11-slim")
        for stage in stages
        for instruction, arguments in stage
        if instruction == "FROM"
    }
    assert bases <= {"python:3.11-slim", "builder"}, f"unexpected base images {bases}"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, flags=re.MULTILINE) or "${PYTHON_IMAGE}" not in text
    assert "requirements-dev" not in text, "the image must not install the dev requirements"
    assert re.search(r"pip install[^\n]*--no-cache-dir[^\n]*-r \S*requirements\.txt", text)
    assert "COPY --from=builder /opt/venv /opt/venv" in [f"COPY {a}" for a in _instructions(stages[-1], "COPY")]


def test_dockerfile_environment_port_and_stop_signal() -> None:
    final = _final_stage()
    env = " ".join(_instructions(final, "ENV"))
    for setting in ("PORT=8000", "APP_ENV=production", "PYTHONUNBUFFERED=1", "PATH=/opt/venv/bin:$PATH"):
        assert setting in env, f"ENV lacks {setting}"
    assert _instructions(final, "EXPOSE") == ["8000"]
    assert _instructions(final, "STOPSIGNAL") == ["SIGTERM"]


def test_dockerfile_copies_every_runtime_package_and_nothing_else() -> None:
    sources = _copied_sources(_final_stage())
    assert "." not in sources and "/" not in sources, "COPY . would ship tests, devstack and local state"
    packages = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in RUNTIME_EXCLUDED_PACKAGES and not path.parent.name.startswith(".")
    }
    missing = sorted(packages - set(sources))
    assert not missing, f"packages the image does not contain: {missing}"
    assert "gunicorn.conf.py" in sources
    for excluded in RUNTIME_EXCLUDED_PACKAGES | {"supabase"}:
        assert excluded not in sources


def test_dockerignore_keeps_local_state_out_but_not_what_the_image_copies() -> None:
    patterns = [
        line.strip().rstrip("/") for line in _read(".dockerignore").splitlines() if line.strip() and not line.startswith("#")
    ]
    for required in (".venv", ".git", ".env", ".devstack", "tests", "devstack"):
        assert required in patterns, f".dockerignore does not exclude {required}"
    copied = [*_copied_sources(_final_stage()), *_copied_sources(_dockerfile_stages()[0])]
    for source in copied:
        excluded = [p for p in patterns if not p.startswith("!") and fnmatch(source, p)]
        assert not excluded, f"{source} is copied by the Dockerfile but excluded by .dockerignore {excluded}"


# --- render.yaml ----------------------------------------------------------------------------------


def _render_web_service() -> dict[str, Any]:
    """The web service of render.yaml: PyYAML when importable, else a parser for this file's shape."""
    text = _read("render.yaml")
    try:
        import yaml
    except ImportError:
        return _render_web_service_without_yaml(text)
    services = [s for s in yaml.safe_load(text)["services"] if s.get("type") == "web"]
    assert len(services) == 1, f"render.yaml must define one web service, found {len(services)}"
    return dict(services[0])


def _render_web_service_without_yaml(text: str) -> dict[str, Any]:
    assert len(re.findall(r"^\s*-?\s*type:\s*web\s*$", text, flags=re.MULTILINE)) == 1
    service: dict[str, Any] = {}
    for key in ("runtime", "plan", "buildCommand", "startCommand", "healthCheckPath", "maxShutdownDelaySeconds"):
        found = re.search(rf"^\s*{key}:\s*(.+?)\s*$", text, flags=re.MULTILINE)
        if found:
            service[key] = found.group(1).strip("\"'")
    env_vars: list[dict[str, Any]] = []
    for line in text.split("envVars:", 1)[1].splitlines():
        item = re.match(r"^\s*-\s*key:\s*(\S+)\s*$", line)
        setting = re.match(r"^\s*(value|sync):\s*(.*?)\s*$", line)
        if item:
            env_vars.append({"key": item.group(1)})
        elif setting and env_vars:
            raw = setting.group(2)
            env_vars[-1][setting.group(1)] = False if raw == "false" else raw.strip("\"'")
    service["envVars"] = env_vars
    return service


def _render_env_vars() -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in _render_web_service()["envVars"]}


def test_render_start_command_is_the_procfile_web_command() -> None:
    service = _render_web_service()
    assert service["startCommand"] == _procfile_web_command(), "Render ignores the Procfile"
    assert service["runtime"] == "python"
    assert service["healthCheckPath"] == "/healthz"
    assert service["buildCommand"] == "pip install -r requirements.txt"
    assert service["plan"] != "free", "free services sleep, and the re-drive sweep sleeps with them"


# Set by the platform or meaningful only on a developer's machine: never part of a deploy.
NOT_FOR_DEPLOYS = {"BIND", "DATABASE_URL"}


def test_render_lists_every_variable_of_env_example() -> None:
    env_vars = _render_env_vars()
    missing = [name for name in _env_example_names() if name not in env_vars and name not in NOT_FOR_DEPLOYS]
    assert not missing, f"render.yaml envVars lack {missing}"


def test_render_never_commits_a_secret_or_an_empty_value() -> None:
    defaults = _env_example_defaults()
    for name, item in _render_env_vars().items():
        if SECRET_NAME.search(name):
            assert item.get("sync") is False and "value" not in item, f"{name} must be sync: false, without a value"
        if "value" in item:
            value = str(item["value"])
            # An empty string is not "unset": the settings reject it for URLs, integers and enums.
            assert value != "", f"{name} has an empty value: use sync: false and leave it blank"
            if defaults.get(name):
                assert value == defaults[name], f"{name}={value} in render.yaml but {defaults[name]} in .env.example"


def test_render_waits_longer_than_gunicorn_drains(monkeypatch: pytest.MonkeyPatch) -> None:
    graceful = int(_gunicorn_default("graceful_timeout", monkeypatch))
    delay = _render_web_service().get("maxShutdownDelaySeconds", 30)  # Render's default is 30 s
    assert int(delay) > graceful, f"Render kills after {delay} s, gunicorn drains for up to {graceful} s"


# --- fly.toml -------------------------------------------------------------------------------------


def _fly_config() -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return dict(tomllib.loads(_read("fly.toml")))


def _seconds(value: int | str) -> float:
    if isinstance(value, int):
        return float(value)
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", value.strip())
    assert found, f"unreadable duration {value!r}"
    return float(found.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[found.group(2)]


def test_fly_health_check_and_shutdown_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    fly = _fly_config()
    service = fly["http_service"]
    checks = service["checks"]
    assert [check["path"] for check in checks] == ["/healthz"]
    assert service["internal_port"] == int(fly["env"]["PORT"]) == 8000
    assert fly["kill_signal"] == "SIGTERM"
    graceful = int(_gunicorn_default("graceful_timeout", monkeypatch))
    assert _seconds(fly["kill_timeout"]) > graceful, f"kill_timeout must exceed GRACEFUL_TIMEOUT's default {graceful}"


def test_fly_keeps_a_machine_running_for_the_redrive_sweep() -> None:
    service = _fly_config()["http_service"]
    assert service["auto_stop_machines"] in ("off", False)
    assert service["min_machines_running"] >= 1
    assert _fly_config()["build"]["dockerfile"] == "Dockerfile"


# --- README and CI --------------------------------------------------------------------------------


def test_readme_configuration_table_documents_every_variable() -> None:
    readme = _read("README.md")
    section = readme.split("## Configuration", 1)
    assert len(section) == 2, "README.md has no '## Configuration' section"
    table = section[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", table, flags=re.MULTILINE))
    missing = [name for name in _env_example_names() if name not in documented]
    assert not missing, f"README.md's configuration table lacks {missing}"


def test_ci_runs_make_test_on_the_oldest_supported_python() -> None:
    workflow = _read(".github/workflows/ci.yml")
    assert re.search(r"^\s*-?\s*run:\s*make test\s*$", workflow, flags=re.MULTILINE)
    minimum = re.search(r'requires-python\s*=\s*">=\s*([\d.]+)"', _read("pyproject.toml"))
    assert minimum, "pyproject.toml has no requires-python"
    assert f'"{minimum.group(1)}"' in workflow, f"CI does not test the minimum Python {minimum.group(1)}"


def test_fly_scrapes_metrics_on_the_private_port_it_never_routes() -> None:
    fly = _fly_config()
    assert fly["metrics"] == {"port": int(fly["env"]["METRICS_PORT"]), "path": "/metrics"}
    assert fly["metrics"]["port"] != fly["http_service"]["internal_port"], "the public port asks for METRICS_TOKEN"
