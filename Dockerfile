# syntax=docker/dockerfile:1
# The service as the Procfile runs it: gunicorn --config gunicorn.conf.py server.wsgi:app.
# Runtime dependencies only (requirements.txt); the local stack, tests and tooling stay out.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the virtualenv ------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# pip compiles the bytecode here: the runtime user cannot write __pycache__ into /opt/venv.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/venv
# Only requirements.txt enters this stage, so the venv is rebuilt when the pins change, not on every code edit.
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

# --- runtime: the venv, the code, a non-root user; no compilers ----------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PORT=8000 \
    APP_ENV=production \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# The code stays owned by root: the service never writes to it. Bytecode is compiled at build
# time because the app user cannot write __pycache__ here.
COPY gunicorn.conf.py Procfile ./
COPY server/ ./server/
COPY chat/ ./chat/
COPY adapters/ ./adapters/
COPY api/ ./api/
COPY webhook/ ./webhook/
COPY http_common/ ./http_common/
RUN python -m compileall -q /app

USER app

EXPOSE 8000

# python:3.11-slim has no curl; urllib raises on connection errors and non-2xx answers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT}/healthz', timeout=4)" || exit 1

# gunicorn drains on SIGTERM (GRACEFUL_TIMEOUT, default 30 s); `docker stop -t 45` gives it the time.
STOPSIGNAL SIGTERM

# Exactly the Procfile's web command, in exec form so gunicorn is PID 1 and receives the signal.
CMD ["gunicorn", "--config", "gunicorn.conf.py", "server.wsgi:app"]
