# Two commands for a new user: `make run` (the whole platform) and `make test` (the whole suite).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3.11
export HOST ?= 127.0.0.1
export PORT ?= 8000

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/videogen
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: bench-retention promtool run test test-fast test-e2e setup install lint format browser wrk bench simulate bench-dispatch bench-notify chaos chaos-hosts eval-safety clean

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q ".[test]"
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py setup_demo
	@mkdir -p var
	@echo "videogen: open http://$(HOST):$(PORT)/  (API base http://$(HOST):$(PORT)/v1, admin /admin/). Ctrl-C stops everything."
	$(VENV)/bin/supervisord -c supervisord.conf

browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser test will be skipped"

# promtool (Debian's prometheus package) checks the shipped alerting rules and dashboard queries.
promtool:
	@command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
		|| echo "promtool could not be installed: the alert-rule checks will be skipped"

# Set-up, once per checkout (then whenever the data or the code it depends on changes): the virtualenv, Debian's
# chromium and promtool for the browser and alert-rule tests, and the prompt classifier trained on the shipped data
# (kept under var/moderation, keyed by the data's fingerprint: trained the first time, loaded after).
setup: $(VENV)/.installed browser promtool
	$(PY) manage.py train_moderation

CHECK_SERVICES = DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	$(PY) scripts/check_services.py
PYTEST = DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} $(PY) -m pytest

# In-process tests run on every core (pytest-xdist: a test database per worker); end-to-end ones one at a time, as
# their processes and timing bounds need the machine to themselves.
PARALLEL = -n auto --maxprocesses 4
# pytest's "no test selected" (exit 5) is no failure when PYTEST_ARGS picks tests of the other part only.
SOME = || [ $$? -eq 5 ]

# Everything: lint, migrations, then the unit and integration tests, then the end-to-end ones (tests/README.md),
# each part's 15 slowest listed.
test: setup
	@$(CHECK_SERVICES)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	$(PYTEST) -m "not e2e" $(PARALLEL) --durations=15 $(PYTEST_ARGS) $(SOME)
	$(PYTEST) -m e2e --durations=15 $(PYTEST_ARGS) $(SOME)

# The inner loop: what needs no started process (tests/unit and tests/integration but the few tests there marked
# e2e), in a few minutes.
test-fast: setup
	@$(CHECK_SERVICES)
	$(PYTEST) tests/unit tests/integration -m "not e2e" $(PARALLEL) $(PYTEST_ARGS)

# The end-to-end tests alone: real roles as processes, browsers, fault and load runs in short versions.
test-e2e: setup
	@$(CHECK_SERVICES)
	$(PYTEST) -m e2e --durations=15 $(PYTEST_ARGS)

# The load generator of `make bench` (Debian's wrk), installed when missing.
wrk:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) \
		|| (echo "wrk could not be installed: make bench needs it" && false)

# The front door against the bare DRF reference (benchmarks/reference) in one run; last line JSON.
# BENCH_ARGS: see benchmarks/front_door.py --help (--duration, --users, --list-rows, --skip-list-scale).
bench: $(VENV)/.installed wrk
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} $(PY) benchmarks/front_door.py $(BENCH_ARGS)

# The fleet simulation: real dispatcher and Postgres, SIMULATED runners (no GPU), a capacity drop half-way.
# Writes var/simulate/report.txt and plot.png; the last line is one JSON object. SIM_ARGS: see --help.
simulate: $(VENV)/.installed
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} $(PY) benchmarks/simulate.py $(SIM_ARGS)

# The content policy on the shipped labelled prompts (held-out split) and on images; last line JSON.
eval-safety: $(VENV)/.installed
	$(PY) benchmarks/eval_safety.py

# The dispatcher's decision cost at 1k, 10k, 100k and 1M queued jobs (BENCH_DISPATCH_ARGS: see --help).
bench-dispatch: $(VENV)/.installed
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} $(PY) benchmarks/dispatch_scale.py $(BENCH_DISPATCH_ARGS)

# Reads before and after the retention sweep deletes millions of rows (BENCH_RETENTION_ARGS: see --help).
bench-retention: $(VENV)/.installed
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} $(PY) benchmarks/retention_sweep.py $(BENCH_RETENTION_ARGS)

# Live notifications at fan-out: 1,000 websocket (or SSE) clients, 200 notifications/s; last line JSON.
# BENCH_NOTIFY_ARGS: see benchmarks/notify_fanout.py --help (--clients, --rate, --writers, --duration, --transport ws|sse).
bench-notify: $(VENV)/.installed
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} $(PY) benchmarks/notify_fanout.py $(BENCH_NOTIFY_ARGS)

# Faults without losses: the real roles (SIMULATED gpu backend) under injected faults, a few thousand jobs, then
# the invariant table and the recovery figures; exit 1 on any violation. Restarts the local Postgres and Redis.
# CHAOS_ARGS: see benchmarks/chaos.py --help. A short run is part of `make test` (tests/e2e/test_chaos.py).
chaos: $(VENV)/.installed
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} $(PY) benchmarks/chaos.py --postgres-restart $(CHAOS_ARGS)
	$(MAKE) chaos-hosts

# The roles as separate hosts (network namespaces made by the run, root only), a data host with its own Postgres
# and Redis, S3 through moto: jobs per gpu host, a gpu host's cable pulled mid-job (several times), the web host cut
# from Redis; exit 1 on any violation, last line JSON. HOSTS_ARGS: see benchmarks/multihost.py --help. A short run
# is part of `make test` (tests/e2e/test_multihost.py).
chaos-hosts: $(VENV)/.installed
	$(PY) benchmarks/multihost.py $(HOSTS_ARGS)

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean:
	rm -rf var build *.egg-info
