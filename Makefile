VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck pytest chaos docs bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,redis,postgres,rabbitmq,flower,ui,docs]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m example_project.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check celery_durable tests example_project bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

# the long reliability runs (tests marked chaos): worker kills, lost messages, restarts
chaos: $(STAMP)
	$(VENV)/bin/pytest -q -s -m chaos tests/reliability

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PIP) install -q -e '.[bench]'
	touch $(BENCH_STAMP)

# make bench: every workload, ours and plain Celery side by side (~10 min);
# make bench QUICK=1: the same workloads at small N (under 3 min)
bench: $(BENCH_STAMP)
	$(PY) bench/run.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
