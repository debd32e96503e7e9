"""Fake OpenAI-compatible HTTP server for the local dev stack and the test suite.

Why it exists: the chat service must be exercised end to end (real HTTP, the real
``openai`` SDK, retries, timeouts, streaming) without paying for, or depending on,
the real OpenAI API. This server speaks just enough of the Chat Completions
protocol to satisfy the SDK, answers deterministically so tests can assert exact
text, and lets tests inject latency and failures over a small control API.

Public surface:

* ``create_fake_openai(state)`` - the Starlette application.
* ``FakeModelState`` - latency, fault queue and request log shared by the handlers.
* ``Fault`` - one queued failure.
* CLI (``__main__.py``): ``python -m devstack.fake_openai --host 127.0.0.1 --port 54330 --latency-ms 0``.

HTTP endpoints:

* ``POST /v1/chat/completions`` - JSON or SSE streaming completion. The reply is
  always ``"Echo: " + <text of the last user message>``.
* ``GET /v1/models`` and ``GET /v1/models/{model}``.
* ``POST /_fake/faults``, ``GET /_fake/faults`` - queue / inspect injected faults.
* ``POST /_fake/config``, ``GET /_fake/config`` - set / read the latency.
* ``GET /_fake/requests[?match=substring]`` - every completion request received.
* ``POST /_fake/reset`` - drop faults and recorded requests, restore default latency.

Token usage is a deliberately crude, deterministic estimate so tests can predict it:
every message costs ``len(text) // 4 + 1`` prompt tokens, and the reply costs
``len(reply) // 4 + 1`` completion tokens.

Modules, one job each: ``state`` (latency, faults, request log), ``requests`` (parsing what a
client sent), ``replies`` (completions, SSE chunks, fault errors), ``errors`` (OpenAI's error
shape), ``app`` (routes and handlers), ``__main__`` (the CLI).
"""

from devstack.fake_openai.app import create_fake_openai
from devstack.fake_openai.replies import estimate_tokens
from devstack.fake_openai.state import FakeModelState, Fault, latency_ms_from_env

__all__ = ["FakeModelState", "Fault", "create_fake_openai", "estimate_tokens", "latency_ms_from_env"]
