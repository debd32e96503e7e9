"""The chat page's resume rule (web/src/reply-stream.js), run by Node as the browser runs it:
the row read again and each delta, as the streaming contract says a client applies them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

RULE = Path(__file__).resolve().parents[2] / "web" / "src" / "reply-stream.js"


def run_rule(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply `steps` ({row} or {delta}) from no state; each step's state (and gap) as JSON."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed to run the chat page's JavaScript; CI must run this test")
        pytest.skip("node is needed to run the chat page's JavaScript (install Node 20 or newer)")
    script = f"""
      import {{ applyDelta, applyRow }} from {json.dumps(RULE.as_uri())}
      let state
      const out = []
      for (const step of {json.dumps(steps)}) {{
        if (step.row) {{ state = applyRow(state, step.row); out.push({{ ...state, gap: false }}) }}
        else {{ const r = applyDelta(state, step.delta); state = r.state; out.push({{ ...state, gap: r.gap }}) }}
      }}
      console.log(JSON.stringify(out))"""
    result = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def row(content: str, attempt: int = 1, status: str = "streaming") -> dict[str, Any]:
    return {"row": {"content": content, "attempt": attempt, "status": status}}


def delta(offset: int, text: str, attempt: int = 1) -> dict[str, Any]:
    return {"delta": {"offset": offset, "delta": text, "attempt": attempt}}


@pytest.mark.parametrize(
    ("steps", "text", "gap"),
    [
        pytest.param([delta(0, "Hel"), delta(3, "lo")], "Hello", False, id="deltas-in-order"),
        pytest.param([row("Hello"), delta(3, "lo"), delta(5, " you")], "Hello you", False, id="row-then-overlapping-delta"),
        pytest.param([row("Hello"), delta(0, "Hel")], "Hello", False, id="delta-already-in-the-row-ignored"),
        pytest.param([row("Hel"), delta(2, "llo")], "Hello", False, id="delta-overlapping-the-end"),
        pytest.param([row("Hel"), delta(5, " you")], "Hel", True, id="gap-means-read-the-row"),
        pytest.param([delta(0, "Hello"), row("Hel")], "Hello", False, id="older-checkpoint-does-not-shorten"),
        pytest.param([delta(0, "Hello"), row("Hello wor")], "Hello wor", False, id="longer-checkpoint-fills-in"),
        pytest.param([row("Old text", attempt=1), delta(0, "New", attempt=2)], "New", False, id="newer-attempt-resets"),
        pytest.param([row("New", attempt=2), delta(3, " old", attempt=1)], "New", False, id="older-attempt-ignored"),
        pytest.param([row("Old text", attempt=1), delta(4, "xyz", attempt=2)], "", True, id="newer-attempt-mid-way-is-a-gap"),
        pytest.param([delta(0, "Hello"), row("Hi", status="done")], "Hi", False, id="settled-row-is-final"),
        pytest.param([row("Hi", status="stopped"), delta(2, " there")], "Hi", False, id="delta-after-settled-ignored"),
        pytest.param([delta(0, "Hello"), row("Hi", attempt=2)], "Hi", False, id="row-of-newer-attempt-wins"),
    ],
)
def test_the_reply_text_follows_the_resume_rule(steps: list[dict[str, Any]], text: str, gap: bool) -> None:
    final = run_rule(steps)[-1]
    assert (final["text"], final["gap"]) == (text, gap)
