"""gunicorn settings, read from the environment so the Procfile stays one line.

gthread workers for the doors: a request is short, except POST /api/chat, which waits on its
reply, so each worker process holds many requests in threads; idle threads are created only when
needed. The replies themselves are not generated in these threads: each worker process runs one
reply engine, an asyncio event loop in a thread of its own, where every reply is a task (see
chat/answering/engine.py). Threads rather than gevent for the doors because supabase-py and the waiter block
in plain threads, with no monkey-patching to get wrong. WEB_CONCURRENCY processes x
GUNICORN_THREADS threads is how many requests (waiting ones included) one instance serves at
once; one process per CPU is enough, since a process's replies share one loop.

The reply engine and the re-drive sweep start in post_worker_init: once per worker process,
after the fork, never in the master. On SIGTERM a worker stops taking webhooks (503, so they are
re-driven elsewhere), finishes the requests it has, lets running generations finish within the
grace period and hands back the claims it could not finish.

Metrics (/metrics) use prometheus_client's multiprocess mode: every worker counts into files in
PROMETHEUS_MULTIPROC_DIR, which a scrape, whichever worker answers it, adds up. The folder is set
here, before prometheus_client is imported, emptied when gunicorn starts (numbers of a previous
run must not be added in), and a dead worker's live gauges are dropped in child_exit.
"""

import glob
import os
import shutil
import signal
import socket
import tempfile
import time

bind = [os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")]


def _any_address() -> str:
    """All interfaces, IPv6 too where the machine has it (Fly.io's private network is IPv6)."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::", 0))
    except OSError:
        return "0.0.0.0"
    return "[::]"


# METRICS_PORT: a second listener that a platform's scraper reaches over its private network
# (Fly.io's [metrics] sends no credentials); /metrics answers there without METRICS_TOKEN. The
# platform's proxy must not route public traffic to it (fly.toml's http_service uses PORT only).
if os.environ.get("METRICS_PORT"):
    bind.append(f"{_any_address()}:{int(os.environ['METRICS_PORT'])}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "256"))
worker_connections = max(1000, threads * 2)
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
keepalive = 30
# gunicorn's largest request line, so the app (not gunicorn's HTML 414) judges long query strings.
limit_request_line = 8190
accesslog = "-"
logger_class = "server.gunicorn_logging.StructlogGunicornLogger"
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Set while this file loads: the master imports prometheus_client (through the logger class's
# package) before any hook runs, and prometheus_client chooses its multiprocess mode on import.
# Unless given, the folder is this master's own and goes when it exits.
OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if OWN_METRICS_DIR:
    metrics_home = worker_tmp_dir or tempfile.gettempdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(metrics_home, f"ai-chat-metrics-{os.getpid()}")

# Time kept back from the grace period for releasing claims before the master's SIGKILL.
RELEASE_MARGIN_SECONDS = 2.0


def on_starting(server):  # type: ignore[no-untyped-def]
    if not (os.environ.get("METRICS_TOKEN") or os.environ.get("METRICS_PORT")):
        return  # nothing is counted (server/wiring.py): no folder to keep
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, mode=0o700, exist_ok=True)
    for leftover in glob.glob(os.path.join(metrics_dir, "*.db")):
        os.remove(leftover)


def on_exit(server):  # type: ignore[no-untyped-def]
    if OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    from http_common.service import chat_service  # in the worker, after the app is loaded

    service = chat_service(worker.wsgi)
    service.start()
    gunicorn_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):  # type: ignore[no-untyped-def]
        worker.shutdown_started_at = time.monotonic()
        service.begin_shutdown()
        gunicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    from http_common.service import chat_service

    wsgi = getattr(worker, "wsgi", None)
    if wsgi is None:
        return
    started = getattr(worker, "shutdown_started_at", time.monotonic())
    remaining = graceful_timeout - (time.monotonic() - started) - RELEASE_MARGIN_SECONDS
    if chat_service(wsgi).finish_shutdown(max(remaining, 0.0)):
        # Generations were handed back: waiting for them would only end in the master's
        # SIGKILL. Leave now; any reply they still write is deduplicated by reply_to.
        os._exit(0)
