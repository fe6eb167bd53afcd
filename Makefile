VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Two installs into the one venv, each with its stamp. The demo's: the package with the redis and
# postgres extras (README's demo on real servers), no test, docs or browser tools. The full one,
# for make test, docs, chaos and bench: every extra those use; it holds the demo's, so it renews
# both stamps. A `make demo` then `make test` installs the test extras; a `make test` then
# `make demo` installs nothing more.
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck pytest chaos docs bench clean

define new-venv
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
endef

$(DEMO_STAMP): pyproject.toml
	$(new-venv)
	$(PIP) install -q -e '.[redis,postgres]'
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml
	$(new-venv)
	$(PIP) install -q -e '.[test,redis,postgres,rabbitmq,mysql,flower,ui,docs]'
	touch $(STAMP) $(DEMO_STAMP)

venv: $(STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m example_project.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check celery_durable tests example_project bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

# the long runs (tests marked chaos): worker kills, lost messages, restarts, every crash point on
# every backend, the worker-memory run
chaos: $(STAMP)
	$(VENV)/bin/pytest -q -s -m chaos tests/reliability tests/entities tests/perf

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PIP) install -q -e '.[bench]'
	touch $(BENCH_STAMP)

# make bench: every workload, ours and plain Celery side by side (~17 min);
# make bench QUICK=1: the same workloads at small N (under 3 min)
bench: $(BENCH_STAMP)
	$(PY) bench/run.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
