# Two commands do all set-up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint schema bench clean

$(INSTALLED): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "Python 3.10 or newer is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(INSTALLED)

install: $(INSTALLED)

## The local stack (Postgres, Supabase stand-ins, fake model) plus the service on 127.0.0.1:8000.
run: install
	$(PY) -m devstack

## Lint, type-check and every test, against a real Postgres the tests start themselves.
test: install lint
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## supabase/schema.sql, the schema the migrations leave, dumped from a throwaway migrated Postgres;
## then the function tables of docs/schema.md (grants, defining migration). After adding a
## migration run this, write the Job line of each new function and commit both files.
schema: install
	$(PY) -m devstack.schema_dump
	$(PY) -m devstack.schema_doc

## Every benchmark figure in one run (about 10 minutes on 2 cores): prints a table, writes
## bench/results/latest.json and bench/results/latency.png, then the Realtime figures
## (bench/results/realtime.json), the streaming figures (bench/results/streaming.json), the chat
## page's (bench/results/chat_page.json), what /metrics costs (bench/results/metrics.json) and what
## regenerate, titles and search cost (bench/results/chat_features.json).
## `make bench BENCH_ARGS=--quick` for a smoke run.
bench: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) -m bench $(BENCH_ARGS)
	$(PY) -m bench.realtime $(BENCH_ARGS)
	$(PY) -m bench.streaming $(BENCH_ARGS)
	$(PY) -m bench.chat_page $(BENCH_ARGS)
	$(PY) -m bench.metrics_cost $(BENCH_ARGS)
	$(PY) -m bench.chat_features $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .devstack .pytest_cache .mypy_cache .ruff_cache
