"""Serve bench/baseline_app.py with gunicorn and the service's own gunicorn.conf.py, on another port.

Same config file, same environment, same interpreter: the baseline and the service differ only
in what the request does, so their ratio measures the design rather than the serving set-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devstack.service_process import REPO_ROOT, ServiceProcess

BASELINE_COMMAND = ["gunicorn", "--config", "gunicorn.conf.py", "bench.baseline_app:app"]


class BaselineProcess(ServiceProcess):
    """A ServiceProcess whose command is the baseline's instead of the Procfile's."""

    def start(self) -> BaselineProcess:
        env = {**os.environ, **self.env, "BIND": f"{self.host}:{self.port}"}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        output = self.log_path.open("ab") if self.log_path else None
        self.process = subprocess.Popen(
            BASELINE_COMMAND, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_until_healthy()
        return self
