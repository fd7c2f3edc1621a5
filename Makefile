# Thin entry points; the logic lives in deploy/local/*.sh and bench/run.py.
# Ports, state dir and URLs: see deploy/local/env.sh (MF_KAFKA_PORT, MF_PG_PORT, MF_STATE_DIR, ...).
.PHONY: up down status test bench lint venv system

VENV ?= .venv

up:  ## install what is missing (system packages, venv), start Kafka + PostgreSQL (+ migrations), print where they are
	deploy/local/up.sh

down:  ## stop exactly what `make up` started
	deploy/local/down.sh

status:
	@for svc in $$(grep -Ev '^\s*(#|$$)' deploy/local/services); do deploy/local/$$svc.sh status || true; done

system:  ## the Debian packages the services and tests need (PostgreSQL, Prometheus/promtool)
	deploy/local/system-packages.sh install

venv:
	deploy/local/venv.sh

test: system venv  ## every test (unit + integration against the running services)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: venv  ## every benchmark in bench/bench_*.py
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src
