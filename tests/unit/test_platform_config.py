"""fly.toml and render.yaml read as each platform reads them: only keys the platform documents,
values of the documented types and ranges, health checks on a path the service serves, and
environment values the service's own settings accept. No CLI and no network: the rules below are
taken from the platforms' reference pages, cited beside each.

Fly.io: https://fly.io/docs/reference/configuration/ (app configuration, fly.toml) and
        https://fly.io/docs/launch/autostop-autostart/ (auto_stop_machines values).
Render: https://render.com/docs/blueprint-spec (Blueprint YAML reference) and
        https://render.com/docs/python-version (PYTHON_VERSION).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from server import create_app
from server.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DURATION = re.compile(r"^\d+(?:\.\d+)?(?:ms|s|m|h)$")
# Stand-ins for the secrets the platforms hold, so the settings can be validated offline.
SECRET_STAND_INS = {
    "SUPABASE_URL": "https://project-ref.supabase.co",
    "SUPABASE_SERVICE_ROLE_KEY": "service-role-key",
    "SUPABASE_ANON_KEY": "anon-key",
    "WEBHOOK_SECRET": "whsec_" + "A" * 43 + "=",
    "OPENAI_API_KEY": "sk-stand-in",
    "CORS_ORIGINS": "https://app.example.com",
}


def _fly() -> dict[str, Any]:
    return tomllib.loads((ROOT / "fly.toml").read_text(encoding="utf-8"))


def _render_web() -> dict[str, Any]:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text(encoding="utf-8"))
    web = [service for service in blueprint["services"] if service["type"] == "web"]
    assert len(web) == 1
    return dict(web[0])


def _served_paths() -> set[str]:
    """The routes the service answers, from the app itself."""
    settings = load_settings({name.lower(): value for name, value in SECRET_STAND_INS.items()})
    app = create_app(settings, start_background=False)
    return {rule.rule for rule in app.url_map.iter_rules()}


def _accepted_by_the_service(env: dict[str, str]) -> None:
    """The service's settings validation, as at start-up: raises with the variable's name."""
    load_settings({name.lower(): value for name, value in {**SECRET_STAND_INS, **env}.items()})


def _seconds(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration).groups()  # type: ignore[union-attr]
    return float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


# --- Fly.io ---------------------------------------------------------------------------------------

# Top-level keys of fly.toml (reference/configuration: app, primary_region, kill_signal, kill_timeout,
# console_command, swap_size_mb, and the build, deploy, env, http_service, services, checks, mounts,
# processes, statics, metrics, vm, experimental, restart and files sections).
FLY_TOP_LEVEL = {
    "app", "primary_region", "kill_signal", "kill_timeout", "console_command", "swap_size_mb", "build",
    "deploy", "env", "http_service", "services", "checks", "mounts", "processes", "statics", "metrics", "vm",
    "experimental", "restart", "files", "host_dedication_id",
}
FLY_HTTP_SERVICE = {
    "internal_port", "force_https", "auto_stop_machines", "auto_start_machines", "min_machines_running",
    "processes", "concurrency", "checks", "http_options", "tls_options", "machine_checks",
}
FLY_HTTP_CHECK = {"grace_period", "interval", "method", "timeout", "path", "protocol", "tls_server_name",
                  "tls_skip_verify", "headers"}
# "Options are SIGINT (the default), SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGKILL, or SIGSTOP."
FLY_KILL_SIGNALS = {"SIGINT", "SIGTERM", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGSTOP"}
FLY_MAX_KILL_TIMEOUT_SECONDS = 300  # "The maximum kill_timeout is 300 seconds (five minutes)."


def test_fly_uses_only_documented_keys() -> None:
    fly = _fly()
    assert set(fly) <= FLY_TOP_LEVEL, f"unknown fly.toml keys: {set(fly) - FLY_TOP_LEVEL}"
    service = fly["http_service"]
    assert set(service) <= FLY_HTTP_SERVICE, f"unknown [http_service] keys: {set(service) - FLY_HTTP_SERVICE}"
    for check in service["checks"]:
        assert set(check) <= FLY_HTTP_CHECK, f"unknown [[http_service.checks]] keys: {set(check) - FLY_HTTP_CHECK}"
    assert set(fly["build"]) <= {"builder", "buildpacks", "image", "dockerfile", "ignorefile", "build-target", "args"}
    assert set(service["concurrency"]) <= {"type", "soft_limit", "hard_limit"}


def test_fly_values_have_the_documented_types() -> None:
    fly = _fly()
    assert isinstance(fly["app"], str) and re.fullmatch(r"[a-z0-9-]+", fly["app"])
    assert isinstance(fly["primary_region"], str) and re.fullmatch(r"[a-z]{3}", fly["primary_region"])
    assert fly["kill_signal"] in FLY_KILL_SIGNALS
    # kill_timeout: seconds as an integer, or a duration string.
    timeout = fly["kill_timeout"]
    seconds = float(timeout) if isinstance(timeout, int) else _seconds(timeout)
    assert 0 < seconds <= FLY_MAX_KILL_TIMEOUT_SECONDS
    # "Env values can only be strings", and names "cannot begin with FLY_".
    for name, value in fly["env"].items():
        assert isinstance(value, str), f"[env] {name} must be a string, not {type(value).__name__}"
        assert not name.startswith("FLY_")

    service = fly["http_service"]
    assert isinstance(service["internal_port"], int) and 0 < service["internal_port"] < 65536
    assert isinstance(service["force_https"], bool)
    # autostop-autostart: "off" (= false), "stop" (= true) or "suspend".
    assert service["auto_stop_machines"] in ("off", "stop", "suspend", True, False)
    assert isinstance(service["auto_start_machines"], bool)
    assert isinstance(service["min_machines_running"], int) and service["min_machines_running"] >= 0
    concurrency = service["concurrency"]
    assert concurrency["type"] in ("connections", "requests")
    assert isinstance(concurrency["soft_limit"], int) and isinstance(concurrency["hard_limit"], int)
    assert 0 < concurrency["soft_limit"] <= concurrency["hard_limit"]


def test_fly_health_checks_give_units_and_hit_a_path_the_service_serves() -> None:
    checks = _fly()["http_service"]["checks"]
    assert checks, "no [[http_service.checks]]: Fly would route to a machine that cannot answer"
    served = _served_paths()
    for check in checks:
        # "Times are in milliseconds unless units are specified": a bare 15 would be 15 ms.
        for field in ("grace_period", "interval", "timeout"):
            assert isinstance(check[field], str) and DURATION.match(check[field]), f"{field}={check[field]!r} needs a unit"
        assert _seconds(check["timeout"]) < _seconds(check["interval"])
        assert check["method"].upper() == "GET"
        assert check["path"] in served, f"the check's path {check['path']} is not a route of the service"
        assert check["path"] == "/healthz", "liveness only: /readyz fails with Supabase and would cycle every machine"


def test_fly_environment_is_accepted_by_the_service() -> None:
    _accepted_by_the_service(_fly()["env"])


def test_fly_build_dockerfile_exists_and_is_sent_to_the_builder() -> None:
    dockerfile = _fly()["build"]["dockerfile"]
    assert (ROOT / dockerfile).is_file()
    # Gotcha in the [build] docs: "make sure it's not excluded from the Docker build context in your .dockerignore".
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert dockerfile not in ignored


# --- Render ---------------------------------------------------------------------------------------

# Service fields of the Blueprint reference (blueprint-spec, "Service fields").
RENDER_SERVICE_FIELDS = {
    "name", "type", "runtime", "plan", "region", "repo", "branch", "rootDir", "buildCommand", "startCommand",
    "preDeployCommand", "healthCheckPath", "envVars", "numInstances", "scaling", "autoDeploy", "autoDeployTrigger",
    "buildFilter", "domains", "disk", "maxShutdownDelaySeconds", "dockerCommand", "dockerfilePath", "dockerContext",
    "registryCredential", "image", "previews", "pullRequestPreviewsEnabled", "initialDeployHook", "ipAllowList",
    "staticPublishPath", "headers", "routes", "schedule", "envVarGroups",
}
RENDER_RUNTIMES = {"docker", "elixir", "go", "image", "node", "python", "ruby", "rust", "static"}
RENDER_PLANS = {"free", "starter", "standard", "pro", "pro plus", "pro max", "pro ultra"}
RENDER_ENV_VAR_SOURCES = {"value", "sync", "generateValue", "fromDatabase", "fromService", "fromGroup"}


def test_render_uses_only_documented_fields_and_values() -> None:
    web = _render_web()
    assert set(web) <= RENDER_SERVICE_FIELDS, f"unknown render.yaml fields: {set(web) - RENDER_SERVICE_FIELDS}"
    assert web["runtime"] in RENDER_RUNTIMES
    assert web["plan"] in RENDER_PLANS
    for field in ("name", "buildCommand", "startCommand", "healthCheckPath"):
        assert isinstance(web[field], str) and web[field].strip(), f"{field} must be a non-empty string"
    # maxShutdownDelaySeconds: an integer from 1 to 300 (default 30).
    delay = web["maxShutdownDelaySeconds"]
    assert isinstance(delay, int) and not isinstance(delay, bool) and 1 <= delay <= 300


def test_render_env_vars_each_have_one_documented_source() -> None:
    for item in _render_web()["envVars"]:
        assert isinstance(item["key"], str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", item["key"])
        sources = set(item) - {"key"}
        assert len(sources) == 1 and sources <= RENDER_ENV_VAR_SOURCES, f"{item['key']}: one of value, sync, ... ({sources})"
        if "sync" in item:
            assert item["sync"] is False, f"{item['key']}: sync takes false (prompt for the value), as a boolean"
        if "value" in item:
            kind = type(item["value"]).__name__
            assert isinstance(item["value"], str), f"{item['key']}: quote the value, or YAML makes it a {kind}"


def test_render_health_check_hits_a_path_the_service_serves() -> None:
    path = _render_web()["healthCheckPath"]
    assert path.startswith("/")
    assert path in _served_paths()


def test_render_python_version_matches_the_image() -> None:
    values = {item["key"]: item.get("value") for item in _render_web()["envVars"]}
    version = values["PYTHON_VERSION"]
    # python-version: "You must specify a fully qualified version (e.g., 3.13.5)", 3.7.3 or later.
    assert isinstance(version, str) and re.fullmatch(r"3\.\d+\.\d+", version)
    dockerfile_default = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert dockerfile_default is not None
    assert version.rsplit(".", 1)[0] == dockerfile_default.group(1), "Render and the image must run the same Python"


def test_render_environment_is_accepted_by_the_service() -> None:
    values = {item["key"]: item["value"] for item in _render_web()["envVars"] if "value" in item}
    _accepted_by_the_service({name: value for name, value in values.items() if name != "PYTHON_VERSION"})


@pytest.mark.parametrize("name", ["fly.toml", "render.yaml"])
def test_platform_files_hold_no_secret_values(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    for pattern in (r"whsec_[A-Za-z0-9+/=]{20,}", r"sk-[A-Za-z0-9_-]{20,}", r"eyJ[A-Za-z0-9_-]{10,}\.eyJ"):
        assert not re.search(pattern, text), f"{name} holds something shaped like a secret ({pattern})"
