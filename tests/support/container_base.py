"""The Python base the image test builds on when the public `python:3.11-slim` cannot be pulled:
Debian bookworm's own python3, assembled with mmdebstrap from Debian's packages and passed in
through the Dockerfile's existing PYTHON_IMAGE argument, so the Dockerfile stays the public one.

The machine's CA bundle goes into the base (and pip is pointed at it), because pip inside the
build must trust whatever this machine trusts, a TLS-inspecting proxy included. Nothing
machine-specific reaches the Dockerfile.

The root file system tarball is kept in an ignored folder between runs, keyed by everything
that goes into it; a fresh clone builds it (about 30 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.container_builders import ContainerBuilder

SUITE = "bookworm"  # python3 is 3.11 there, as in python:3.11-slim
PACKAGES = ["python3", "python3-venv", "python-is-python3", "passwd", "ca-certificates"]
# Documentation and translations: nothing the service reads, a sixth of the base.
EXCLUDED_PATHS = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*"]
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PIP_CONF = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
BASE_REPOSITORY = "localhost/ai-chat-server-test-base"


def python_base_image(builder: ContainerBuilder, cache_dir: Path) -> str | None:
    """The PYTHON_IMAGE to build with: CONTAINER_TEST_PYTHON_IMAGE if set, the local Debian base
    when mmdebstrap is installed, else None (the Dockerfile's default, pulled by the engine)."""
    override = os.environ.get("CONTAINER_TEST_PYTHON_IMAGE")
    if override:
        return override
    if shutil.which("mmdebstrap") is None:
        return None
    return local_debian_base(builder, cache_dir)


def local_debian_base(builder: ContainerBuilder, cache_dir: Path) -> str:
    mirror = os.environ.get("CONTAINER_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    ca_bundle = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b""
    recipe = json.dumps([SUITE, PACKAGES, EXCLUDED_PATHS, mirror, PIP_CONF]).encode()
    key = hashlib.sha256(recipe + ca_bundle).hexdigest()[:12]
    tag = f"{BASE_REPOSITORY}:{key}"
    if builder.has_image(tag):
        return tag
    tarball = cache_dir / f"python-base-{key}.tar"
    if not tarball.exists():
        _mmdebstrap(tarball, mirror, with_ca_bundle=bool(ca_bundle))
        for stale in cache_dir.glob("python-base-*.tar"):
            if stale != tarball:
                stale.unlink()
    builder.import_rootfs(tarball, tag)
    return tag


def _mmdebstrap(tarball: Path, mirror: str, with_ca_bundle: bool) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="python-base-") as scratch:
        pip_conf = Path(scratch) / "pip.conf"
        pip_conf.write_text(PIP_CONF)
        partial = Path(scratch) / "base.tar"
        hooks = [f"--customize-hook=upload {pip_conf} /etc/pip.conf"]
        if with_ca_bundle:
            hooks.append(f"--customize-hook=upload {HOST_CA_BUNDLE} {HOST_CA_BUNDLE}")
        argv = [
            "mmdebstrap", "--variant=minbase", "--quiet", f"--include={','.join(PACKAGES)}",
            *(f"--dpkgopt=path-exclude={path}" for path in EXCLUDED_PATHS),
            *hooks, SUITE, str(partial), mirror,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mmdebstrap could not assemble the Python base: {done.stderr.strip()[-2000:]}")
        shutil.move(partial, tarball)
