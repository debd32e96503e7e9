"""Run the service exactly as the Procfile says (gunicorn), as a child process on a chosen port:
how `make run`, the end-to-end tests and the benchmarks start it."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_DEADLINE_SECONDS = 30.0


def procfile_command(name: str = "web") -> list[str]:
    """The start command exactly as the Procfile gives it: the one source of truth."""
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        process, _, command = line.partition(":")
        if process.strip() == name:
            return shlex.split(command)
    raise RuntimeError(f"Procfile has no {name!r} process")


class ServiceProcess:
    def __init__(self, env: dict[str, str], host: str = "127.0.0.1", port: int = 8000, log_path: Path | None = None):
        self.env = env
        self.host = host
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServiceProcess:
        env = {**os.environ, **self.env, "BIND": f"{self.host}:{self.port}"}
        # The Procfile names `gunicorn`: find the one installed beside this interpreter.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        output = self.log_path.open("ab") if self.log_path else None  # None: share our terminal
        self.process = subprocess.Popen(
            procfile_command(), cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_healthy()
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, as a platform does on deploy: gunicorn drains, then exits."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, with no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + READY_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited at start-up with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"service did not become healthy within {READY_DEADLINE_SECONDS} s; see {self.log_path}")
