"""The container engines the image test can build and run the Dockerfile with: Docker, Podman or
Buildah, found in that order, each used only if it answers (a `docker` client with no daemon is
not a builder).

Every engine runs the image the way a platform does: the image's own CMD, as the image's
non-root user, on the host's network (so the service reaches the local stack on loopback), and
stops it with SIGTERM to the container's main process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

ENGINE_TIMEOUT_SECONDS = 30
BUILD_TIMEOUT_SECONDS = 900
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerBuilder(ABC):
    """One engine's commands for building, inspecting, running and removing an image."""

    name: str

    @abstractmethod
    def answers(self) -> bool:
        """Whether the engine is installed and can build here (its daemon, if any, is up)."""

    @abstractmethod
    def build(self, context: Path, tag: str, build_args: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Build the Dockerfile in `context`; the caller reads the output on failure."""

    @abstractmethod
    def import_rootfs(self, tarball: Path, tag: str) -> None:
        """Make an image of a root file system tarball (the local Python base)."""

    @abstractmethod
    def has_image(self, tag: str) -> bool: ...

    @abstractmethod
    def image_config(self, tag: str) -> dict[str, Any]:
        """The image's Docker-format config: Cmd, User, Env, WorkingDir, Healthcheck, StopSignal."""

    @abstractmethod
    def image_size(self, tag: str) -> int:
        """Bytes of the image's layers, uncompressed, as stored."""

    @abstractmethod
    def run_command(self, tag: str, container: str, env: dict[str, str]) -> list[str]:
        """The argv that runs the image's CMD in the foreground, as its user, on the host network."""

    @abstractmethod
    def send_signal(self, container: str, run_pid: int, signal_name: str) -> None:
        """Signal the container's main process (what `docker stop` and the platforms signal)."""

    @abstractmethod
    def main_process_status(self, container: str, run_pid: int) -> str:
        """/proc/<pid>/status of the container's main process: who it runs as."""

    @abstractmethod
    def exec(self, container: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Run another process inside the running container, as its user."""

    @abstractmethod
    def run_once(self, tag: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run argv in a throwaway container of the image, as root, to look at its files."""

    @abstractmethod
    def remove_container(self, container: str) -> None: ...

    @abstractmethod
    def remove_image(self, tag: str) -> None: ...


def _run(argv: list[str], timeout: float = ENGINE_TIMEOUT_SECONDS, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def _checked(argv: list[str], timeout: float = ENGINE_TIMEOUT_SECONDS) -> str:
    done = _run(argv, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _env_flags(flag: str, env: dict[str, str]) -> list[str]:
    return [part for name, value in env.items() for part in (flag, f"{name}={value}")]


class DockerCli(ContainerBuilder):
    """Docker, or Podman through its Docker-compatible command line."""

    def __init__(self, binary: str) -> None:
        self.name = binary
        self.binary = binary

    def answers(self) -> bool:
        if shutil.which(self.binary) is None:
            return False
        try:
            return _run([self.binary, "info"]).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def build(self, context: Path, tag: str, build_args: dict[str, str]) -> subprocess.CompletedProcess[str]:
        # Podman writes OCI images by default, which have no HEALTHCHECK; Docker's format keeps it.
        image_format = ["--format", "docker"] if self.binary == "podman" else []
        return _run([self.binary, "build", *image_format, "--tag", tag, *_env_flags("--build-arg", build_args), str(context)],
                    timeout=BUILD_TIMEOUT_SECONDS)

    def import_rootfs(self, tarball: Path, tag: str) -> None:
        _checked([self.binary, "import", "--change", f"ENV PATH={BASE_PATH}", str(tarball), tag], timeout=300)

    def has_image(self, tag: str) -> bool:
        return _run([self.binary, "image", "inspect", tag]).returncode == 0

    def image_config(self, tag: str) -> dict[str, Any]:
        return dict(json.loads(_checked([self.binary, "image", "inspect", "--format", "{{json .Config}}", tag])))

    def image_size(self, tag: str) -> int:
        return int(_checked([self.binary, "image", "inspect", "--format", "{{.Size}}", tag]).strip())

    def run_command(self, tag: str, container: str, env: dict[str, str]) -> list[str]:
        return [self.binary, "run", "--rm", "--name", container, "--network", "host", "--user", "app",
                *_env_flags("--env", env), tag]

    def send_signal(self, container: str, run_pid: int, signal_name: str) -> None:
        _checked([self.binary, "kill", "--signal", signal_name, container])

    def main_process_status(self, container: str, run_pid: int) -> str:
        return _checked([self.binary, "exec", container, "cat", "/proc/1/status"])

    def exec(self, container: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return _run([self.binary, "exec", *_env_flags("--env", env), container, *argv])

    def run_once(self, tag: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return _run([self.binary, "run", "--rm", "--network", "none", "--user", "root", tag, *argv], timeout=120)

    def remove_container(self, container: str) -> None:
        _run([self.binary, "rm", "--force", container])

    def remove_image(self, tag: str) -> None:
        _run([self.binary, "rmi", "--force", tag])


class Buildah(ContainerBuilder):
    """Buildah as root with chroot isolation and the vfs driver: no daemon, no overlay mounts and
    no user namespaces needed, so it builds inside an unprivileged CI container too."""

    name = "buildah"
    base = ["buildah", "--storage-driver", "vfs"]

    def answers(self) -> bool:
        if shutil.which("buildah") is None or os.geteuid() != 0:
            return False  # rootless Buildah would need `buildah unshare` and subordinate ids
        try:
            return _run([*self.base, "info"]).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def build(self, context: Path, tag: str, build_args: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return _run([*self.base, "bud", "--isolation", "chroot", "--format", "docker", "--pull-never", "--tag", tag,
                     *_env_flags("--build-arg", build_args), str(context)], timeout=BUILD_TIMEOUT_SECONDS)

    def import_rootfs(self, tarball: Path, tag: str) -> None:
        container = _checked([*self.base, "from", "scratch"]).strip()
        try:
            _checked([*self.base, "add", container, str(tarball), "/"], timeout=300)
            _checked([*self.base, "config", "--env", f"PATH={BASE_PATH}", "--cmd", "python3", container])
            _checked([*self.base, "commit", "--format", "docker", container, tag], timeout=300)
        finally:
            self.remove_container(container)

    def has_image(self, tag: str) -> bool:
        return _run([*self.base, "inspect", "--type", "image", tag]).returncode == 0

    def _inspect(self, tag: str) -> dict[str, Any]:
        return dict(json.loads(_checked([*self.base, "inspect", "--type", "image", tag])))

    def image_config(self, tag: str) -> dict[str, Any]:
        return dict(self._inspect(tag)["Docker"]["config"])

    def image_size(self, tag: str) -> int:
        manifest = json.loads(self._inspect(tag)["Manifest"])
        return sum(int(layer["size"]) for layer in manifest["layers"])

    def run_command(self, tag: str, container: str, env: dict[str, str]) -> list[str]:
        _checked([*self.base, "from", "--pull-never", "--name", container, tag])
        command = self.image_config(tag)["Cmd"]
        return [*self._run_in(container, env), "--", *command]

    def _run_in(self, container: str, env: dict[str, str], user: str = "app") -> list[str]:
        return [*self.base, "run", "--isolation", "chroot", "--network", "host", "--user", user,
                *_env_flags("--env", env), container]

    def send_signal(self, container: str, run_pid: int, signal_name: str) -> None:
        # `buildah run` kills rather than forwards a SIGTERM sent to itself; chroot isolation shares
        # the host's process table, so the main process is signalled directly, as an engine would.
        os.kill(_chroot_main_pid(run_pid), signal.Signals[signal_name])

    def main_process_status(self, container: str, run_pid: int) -> str:
        return Path(f"/proc/{_chroot_main_pid(run_pid)}/status").read_text()

    def exec(self, container: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return _run([*self._run_in(container, env), "--", *argv])

    def run_once(self, tag: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        container = _checked([*self.base, "from", "--pull-never", tag]).strip()
        try:
            return _run([*self._run_in(container, {}, user="root"), "--", *argv], timeout=120)
        finally:
            self.remove_container(container)

    def remove_container(self, container: str) -> None:
        _run([*self.base, "rm", container])

    def remove_image(self, tag: str) -> None:
        _run([*self.base, "rmi", "--force", tag])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _chroot_main_pid(run_pid: int) -> int:
    """The container's main process under `buildah run`: the one child of buildah-chroot-exec."""
    pending = [run_pid]
    while pending:
        pid = pending.pop()
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        children = _children(pid)
        if argv0.endswith(b"buildah-chroot-exec") and children:
            return children[0]
        pending.extend(children)
    raise RuntimeError(f"no container process under buildah run (pid {run_pid})")


ENGINES: list[ContainerBuilder] = [DockerCli("docker"), DockerCli("podman"), Buildah()]


def find_builder() -> ContainerBuilder | None:
    """The first engine, in Docker, Podman, Buildah order, that answers."""
    return next((engine for engine in ENGINES if engine.answers()), None)


def install_buildah_with_apt() -> str | None:
    """Install Buildah and mmdebstrap where the tests run as root on Debian or Ubuntu, as CI does.
    Returns why it could not, or None."""
    if os.geteuid() != 0:
        return "not root, so Buildah cannot be installed with apt"
    if shutil.which("apt-get") is None:
        return "no apt-get to install Buildah with"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "buildah", "mmdebstrap"]
    done = _run(install, timeout=600, env=env)
    if done.returncode != 0:  # a clean machine may have no package lists yet
        _run(["apt-get", "update", "-q"], timeout=600, env=env)
        done = _run(install, timeout=600, env=env)
    return None if done.returncode == 0 else f"apt-get install buildah mmdebstrap failed: {done.stderr.strip()[-500:]}"
