"""The built image, and the service running from it against the local stack: what the image test
builds once per module and starts as a platform would."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.service_process import READY_DEADLINE_SECONDS, ServiceProcess
from tests.support.container_base import python_base_image
from tests.support.container_builders import ContainerBuilder, find_builder, install_buildah_with_apt

ROOT = Path(__file__).resolve().parents[2]
# Ignored by git: the Python base's root file system, kept between runs.
CACHE_DIR = ROOT / ".cache" / "container-image"


@dataclass
class BuiltImage:
    builder: ContainerBuilder
    tag: str
    base: str | None  # the PYTHON_IMAGE build argument; None = the Dockerfile's default
    build_seconds: float
    base_seconds: float  # making the local base ready: mmdebstrap and import, or a look-up when cached


def builder_or_skip() -> ContainerBuilder:
    """Docker, Podman or Buildah, whichever answers first; Buildah and mmdebstrap are installed
    with apt where the tests run as root (as on CI). Elsewhere a skip, except on CI, where a
    missing builder fails the run."""
    builder = find_builder()
    reason = None
    if builder is None or (builder.name == "buildah" and shutil.which("mmdebstrap") is None and os.geteuid() == 0):
        reason = install_buildah_with_apt()
        builder = find_builder()
    if builder is None:
        message = "no container builder answers (Docker, Podman, or Buildah as root)" + (f": {reason}" if reason else "")
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must build the image")
        pytest.skip(message)
    return builder


def clean_checkout(destination: Path) -> Path:
    """The files a fresh clone has (git's tracked files, as they are in the work tree): what was
    never committed cannot reach the image by accident and make a COPY pass here only."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode != 0:
        return ROOT  # not a git checkout: the .dockerignore decides
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@contextlib.contextmanager
def built_image(scratch: Path) -> Iterator[BuiltImage]:
    builder = builder_or_skip()
    preparing = time.monotonic()
    base = python_base_image(builder, CACHE_DIR)
    base_seconds = time.monotonic() - preparing
    context = clean_checkout(scratch)
    tag = f"localhost/ai-chat-server-test:{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    done = builder.build(context, tag, {"PYTHON_IMAGE": base} if base else {})
    build_seconds = time.monotonic() - started
    assert done.returncode == 0, f"{builder.name} could not build the Dockerfile:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    try:
        yield BuiltImage(builder, tag, base, build_seconds, base_seconds)
    finally:
        builder.remove_image(tag)


class ContainerService(ServiceProcess):
    """The image's CMD in a container, as its user, on the host network: the same readiness wait
    and SIGTERM-then-wait stop as the Procfile service the other tests start."""

    def __init__(self, image: BuiltImage, env: dict[str, str], port: int, log_path: Path) -> None:
        # Loopback only, as the tests' other services; PORT as the platforms set it.
        super().__init__({**env, "PORT": str(port), "BIND": f"127.0.0.1:{port}"}, port=port, log_path=log_path)
        self.image = image
        self.container = f"ai-chat-test-{uuid.uuid4().hex[:12]}"
        self.seconds_to_create: float | None = None  # the engine's container set-up (a full copy with vfs)
        self.seconds_to_ready: float | None = None  # process start to the first 200 from /readyz

    def start(self) -> ContainerService:
        creating = time.monotonic()
        argv = self.image.builder.run_command(self.image.tag, self.container, self.env)
        self.seconds_to_create = time.monotonic() - creating
        assert self.log_path is not None
        with self.log_path.open("ab") as output:
            started = time.monotonic()
            self.process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_until_healthy()
        self._wait_until_ready(started)
        return self

    def _wait_until_ready(self, started: float) -> None:
        deadline = started + READY_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    self.seconds_to_ready = time.monotonic() - started
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the container was never ready; see {self.log_path}")

    def send_signal(self, signal_name: str) -> None:
        assert self.process is not None
        self.image.builder.send_signal(self.container, self.process.pid, signal_name)

    def main_process_status(self) -> str:
        assert self.process is not None
        return self.image.builder.main_process_status(self.container, self.process.pid)

    def exec(self, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        return self.image.builder.exec(self.container, argv, {**self.env, **env})

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to the container's main process, as a platform sends on deploy; then wait."""
        if self.process is None:
            return None
        try:
            if self.process.poll() is None:
                with contextlib.suppress(RuntimeError, ProcessLookupError):
                    self.send_signal("SIGTERM")
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(RuntimeError, ProcessLookupError):
                        self.send_signal("SIGKILL")
                    self.kill()
        finally:
            self.image.builder.remove_container(self.container)
        return self.process.returncode
