"""`python -m bench.chat_page`: the chat page's figures, part of `make bench`.

1. Size: what a first visit downloads (the page's own files, the generated config.js, supabase-js's
   single-file build and the Markdown libraries' browser builds: marked, DOMPurify, highlight.js
   with its few grammars), raw and gzipped.
2. First paint: a cold load in a new headless Chromium profile each time: first contentful
   paint, and when the page is usable (the `chat-page-ready` mark, after supabase-js and the
   modules ran).
3. Reply: a signed-in page sends messages one at a time against the fake model (no latency of
   its own); from the insert's submit (`message-submitted`) to the first reply delta on the
   private channel (`reply-first-delta`, where the service streams) and to the first reply text
   on screen (`reply-first-text`, streamed or whole).

Needs Chromium and chromedriver (tests/support/browser.py installs them with apt as root).
Writes bench/results/chat_page.json and prints a table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import machine
from bench.stats import summarize
from devstack.migrate import prepare_database
from devstack.postgres import LocalPostgres
from devstack.quotas import GENEROUS, set_quota_defaults
from devstack.service_process import REPO_ROOT, ServiceProcess
from devstack.serving import free_port
from devstack.stack import LocalStack, StackConfig
from devstack.web_packages import VENDORED
from tests.support.browser import Browser, chromium_or_skip

OWN_FILES = ["/", "/style.css", "/config.js", "/vendor/supabase-js.mjs",
             "/src/main.js", "/src/dom.js", "/src/conversation-feed.js", "/src/reply-stream.js",
             "/src/conversations.js", "/src/messages.js", "/src/message-view.js", "/src/markdown.js"]
SUPABASE_JS = "/vendor/supabase.js"
MARKDOWN_LIBRARIES = [f"/vendor/{name}" for name in VENDORED if f"/vendor/{name}" != SUPABASE_JS]
PAGE_FILES = [*OWN_FILES, SUPABASE_JS, *MARKDOWN_LIBRARIES]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chat_page", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: few samples")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    known, _ = parser.parse_known_args(argv)
    return known


def page_size(page_url: str) -> dict[str, Any]:
    files = {path: httpx.get(page_url + path).content for path in PAGE_FILES}
    figures: dict[str, Any] = {}
    for name, paths in [("total", PAGE_FILES), ("supabase_js", [SUPABASE_JS]),
                        ("markdown_libraries", MARKDOWN_LIBRARIES), ("page_own", OWN_FILES)]:
        figures[f"{name}_bytes"] = sum(len(files[path]) for path in paths)
        figures[f"{name}_gzip_bytes"] = sum(len(gzip.compress(files[path])) for path in paths)
    return figures


def first_paint(chromium: tuple[str, str], page_url: str, samples: int) -> dict[str, Any]:
    paints, ready = [], []
    for index in range(samples):
        browser = Browser(*chromium, page_url, f"cold-{index}")
        try:
            browser.open()
            painted = browser.js_probe("return performance.getEntriesByName('first-contentful-paint').length")
            browser.wait_for(painted, "first paint")
            timing = browser.js("""return {
              paint: performance.getEntriesByName('first-contentful-paint')[0].startTime,
              ready: performance.getEntriesByName('chat-page-ready')[0].startTime }""")
            paints.append(timing["paint"])
            ready.append(timing["ready"])
        finally:
            browser.close()
    return {"first_contentful_paint_ms": summarize(paints), "ready_ms": summarize(ready)}


def replies(chromium: tuple[str, str], page_url: str, samples: int) -> dict[str, Any]:
    browser = Browser(*chromium, page_url, "sender")
    first_delta, first_text = [], []
    try:
        browser.open()
        browser.fill("#email", f"{uuid.uuid4()}@bench.test")
        browser.fill("#password", "correct horse battery")
        browser.click("#sign-up")
        browser.element("#new-title")
        browser.fill("#new-title", "bench")
        browser.click("#create")
        browser.wait_for(lambda: browser.js("return document.querySelector('#conversation').dataset.state === 'live'"),
                         "subscriptions joined")
        for index in range(samples):
            browser.js("performance.clearMarks()")
            browser.fill("#message", f"sample {index}: how quickly does the first word arrive here?")
            browser.click("#send")
            marks = browser.wait_for(lambda: browser.js("""
              const at = (name) => performance.getEntriesByName(name)[0]?.startTime
              const text = at('reply-first-text')
              return text === undefined ? null : { sent: at('message-submitted'), text, delta: at('reply-first-delta') }"""),
                "the reply's first text", 30)
            settled = browser.js_probe(
                f"return document.querySelectorAll('#messages .message.assistant[data-status=done]').length > {index}")
            browser.wait_for(settled, "the reply settled", 30)
            first_text.append(marks["text"] - marks["sent"])
            if marks["delta"] is not None:
                first_delta.append(marks["delta"] - marks["sent"])
    finally:
        browser.close()
    return {"submit_to_first_delta_ms": summarize(first_delta) if first_delta else None,
            "submit_to_first_text_ms": summarize(first_text)}


def table(results: dict[str, Any]) -> str:
    size = results["size"]
    lines = [
        f"chat page: {size['total_bytes'] / 1024:.0f} KiB ({size['total_gzip_bytes'] / 1024:.0f} KiB gzipped), of which "
        f"supabase-js {size['supabase_js_bytes'] / 1024:.0f} KiB ({size['supabase_js_gzip_bytes'] / 1024:.0f} KiB gzipped),"
        f" the Markdown libraries {size['markdown_libraries_bytes'] / 1024:.0f} KiB"
        f" ({size['markdown_libraries_gzip_bytes'] / 1024:.0f} KiB gzipped)",
    ]
    for name, figure in [*results["first_paint"].items(), *results["replies"].items()]:
        if figure is None:
            lines.append(f"{name}: none (the service does not stream here)")
        else:
            lines.append(f"{name}: p50 {figure['p50']:.0f} ms, p95 {figure['p95']:.0f} ms,"
                         f" max {figure['max']:.0f} ms (n={figure['n']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loads, messages = (3, 5) if args.quick else (15, 30)
    try:
        chromium = chromium_or_skip()
    except pytest.skip.Exception as reason:
        print(f"chat page: not measured: {reason}")
        return 0
    results: dict[str, Any] = {"machine": machine.describe()}
    with tempfile.TemporaryDirectory(prefix="bench-chat-page-") as directory:
        folder = Path(directory)
        postgres = LocalPostgres(folder / "postgres" / "data", free_port())
        try:
            prepare_database(postgres.start())
            # One user sends every sample within seconds: the shipped 20 messages per 60 s would refuse the 21st.
            set_quota_defaults(postgres.superuser_url, GENEROUS)
            service_port = free_port()
            stack = LocalStack(StackConfig(
                state_dir=folder, api_port=free_port(), model_port=free_port(), web_port=free_port(),
                database_url=postgres.superuser_url, trust_local_logins=True,
                webhook_url=f"http://127.0.0.1:{service_port}/webhooks/messages")).start()
            service = None
            try:
                if stack.chat_page_url is None:
                    raise SystemExit(f"no chat page: {stack.chat_page_missing}")
                httpx.post(f"{stack.model_url.removesuffix('/v1')}/_fake/config", json={"latency_ms": 0}).raise_for_status()
                service = ServiceProcess({**stack.service_environment(), "APP_ENV": "development"},
                                         port=service_port, log_path=folder / "service.log").start()
                results["size"] = page_size(stack.chat_page_url)
                print("chat page: cold loads", flush=True)
                started = time.monotonic()
                results["first_paint"] = first_paint(chromium, stack.chat_page_url, loads)
                print(f"chat page: replies ({time.monotonic() - started:.0f} s so far)", flush=True)
                results["replies"] = replies(chromium, stack.chat_page_url, messages)
            finally:
                if service is not None:
                    service.stop()
                stack.stop()
        finally:
            postgres.stop()
    print()
    print(table(results))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "chat_page.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.output_dir / 'chat_page.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
