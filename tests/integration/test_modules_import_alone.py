"""Every product module loads on its own, each in a fresh forked interpreter (processes: so not
the unit layer). A module that loads only because another happened to be imported first is an
import cycle waiting for the next refactor; this finds it before a deploy does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.unit.test_imports import IMPORT_ENVIRONMENT, PRODUCT_PACKAGES, ROOT, THIRD_PARTY, product_modules

FORK_PER_MODULE = """
import importlib, os, sys
for name in {third_party!r}:
    importlib.import_module(name)
assert not [m for m in sys.modules if m.split(".")[0] in {packages!r}], "a product module is preloaded"
failed = []
for module in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException as error:
            print(f"{{module}}: {{type(error).__name__}}: {{error}}", file=sys.stderr)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(module)
print(" ".join(failed))
"""



@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to give each module a fresh interpreter state")
def test_every_product_module_imports_alone() -> None:
    modules = product_modules()
    script = FORK_PER_MODULE.format(third_party=THIRD_PARTY, packages=PRODUCT_PACKAGES)
    result = subprocess.run(
        [sys.executable, "-c", script, *modules],
        cwd=ROOT, env={**os.environ, **IMPORT_ENVIRONMENT}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"modules that do not import alone: {result.stdout}\n{result.stderr}"
    assert len(modules) > 20  # the walk found the product, not an empty folder
