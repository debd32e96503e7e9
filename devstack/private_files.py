"""Files of the local stack that hold secrets (the service-role key, the JWT signing key, the
webhook secret): created 0600 from their first byte, and put back to 0600 if an older run left
them readable by others. (Their folder stays traversable: it also holds Postgres's data folder,
which the unprivileged server user must reach when the stack runs as root.)"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE_MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file nobody but its owner can read, at no moment readable by others."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), PRIVATE_FILE_MODE)  # O_CREAT's mode applies to new files only
        file.write(text)


def read_private(path: Path) -> str:
    """Read a secret, tightening its mode first if an older run left it readable by others."""
    if path.stat().st_mode & 0o077:
        path.chmod(PRIVATE_FILE_MODE)
    return path.read_text()
