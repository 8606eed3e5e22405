# Engage: `make run` serves the app with demo data; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
FLASK := $(VENV)/bin/flask --app wsgi
PORT ?= 5000
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# axe-core for the accessibility scan (tests/browser/test_accessibility.py), pinned in package-lock.json
NODE_STAMP := node_modules/.installed

.PHONY: run test lint install install-test db seed clean bench load

$(VENV)/bin/python:
	.ci/system-packages
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(STAMP)
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || .ci/system-packages
	npm ci --no-audit --no-fund
	touch $@

install-test: $(TEST_STAMP) $(if $(wildcard package.json),$(NODE_STAMP))

db: install
	$(FLASK) db upgrade

seed: db
	$(FLASK) seed --demo

# The scheduler (reminders, outbox, exports) and the job worker (long imports, off the request;
# its queue is instance/jobs.sqlite) run beside the web server; Ctrl+C stops all three.
# Outgoing mail goes to instance/mail/*.eml (MAIL_BACKEND=file), readable in Admin -> Outbox.
run: seed
	@echo "Serving Engage on http://127.0.0.1:$(PORT) with its scheduler and job worker (Ctrl+C stops all)"
	@$(FLASK) scheduler & scheduler=$$!; \
	$(FLASK) jobs worker & worker=$$!; \
	trap 'kill $$scheduler $$worker 2>/dev/null; wait $$scheduler $$worker 2>/dev/null' EXIT INT TERM; \
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

# The import-linter contracts in pyproject.toml (layers, routes, no circles); `make test` runs it first.
lint: install-test
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) node_modules instance/engage.sqlite* .pytest_cache

# Pages and jobs timed on the synthetic data set (`flask synth`), pinned to one core, on SQLite and PostgreSQL
# (BENCH_DB=sqlite|postgresql|both; both by default when PostgreSQL's server binaries are installed: a
# throwaway server, or BENCH_DATABASE_URL, emptied first), at BENCH_SIZES companies (default 10000).
# Issue 20's run: BENCH_DB=both BENCH_SIZES=10000,100000 make bench (about an hour on the shared machine).
# BENCH_ONLY=pages,search,jobs,matching,valuechain (any of them): only those parts.
bench: install-test
	$(if $(shell command -v taskset),taskset -c 0,) $(PY) tests/benchmarks/bench.py

# The daily mix by 50 simulated analysts (Locust) against gunicorn (4 workers) with the scheduler and the
# job worker running, on a synthetic data set of 10,000 companies: LOAD_DB=sqlite (default) or
# LOAD_DB=postgresql (a throwaway server) or LOAD_DATABASE_URL=...; LOAD_SMOKE=1 for CI's few seconds.
load: install-test
	$(PY) tests/load/run.py
