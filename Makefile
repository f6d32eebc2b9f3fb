# taskfleet: `make demo` and `make test` work on a fresh machine; see README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench system-deps postgres clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests use: iproute2 for the network-namespace test, chromium for
# the console tests (Playwright drives Debian's /usr/bin/chromium; it cannot download one).
system-deps:
	@missing=""; \
	  command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	  test -x /usr/bin/chromium || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  fi

# Start the local PostgreSQL 15 if it is installed and down; tests skip it visibly otherwise.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
	  pg_ctlcluster --skip-systemctl-redirect 15 main start 2>/dev/null || \
	  echo "PostgreSQL is not reachable: its tests will be skipped"

demo: $(STAMP)
	$(BIN)/taskfleet demo

# The suite mostly waits on the processes it starts (NS, task servers, agents, Chromium,
# PostgreSQL), so it runs in parallel pytest processes (pytest-xdist); 3 suit 2 cores.
# `make test PYTEST_WORKERS=1` runs one worker, PYTEST_WORKERS=0 none (all in pytest itself).
# Each test has its own ports (tests/ports.py), directories, database and namespaces, so
# no test needs a worker of its own. Not --dist loadgroup: on pytest 9.2 it ignores
# xdist_group marks without a word (pytest-xdist issue 1386).
PYTEST_WORKERS ?= 3

test: $(STAMP) system-deps postgres
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist load

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
	@command -v stunnel >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq stunnel4; }
	@$(MAKE) --no-print-directory system-deps
	$(BIN)/python -P bench/poll.py --tls
	$(BIN)/python -P bench/channel_kinds.py
	$(BIN)/python -P bench/agent_idle.py
	$(BIN)/python -P bench/console_computers.py
	$(BIN)/python -P bench/membership.py
	$(BIN)/python -P bench/status_ingest.py
	$(BIN)/python -P bench/bad_polls.py
	$(BIN)/python -P bench/enrol.py --agents 3000 --store postgres
	$(BIN)/python -P bench/fanout.py --agents 1000 --ts 1 --store sqlite --goal 3
	$(BIN)/python -P bench/fanout.py --agents 1000 --ts 1 --store postgres --goal 3
	$(BIN)/python -P bench/fanout.py --agents 10000 --ts 2 --store postgres --goal 15 --restart-ts

clean:
	rm -rf $(VENV) demo-data test-artifacts .pytest_cache .mypy_cache .ruff_cache
