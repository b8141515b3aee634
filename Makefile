# Two entry points for a newcomer: `make run` (the nightly pipeline once, on demo data) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
# The venv first on PATH, so subprocesses (spark-submit, Spark's Python workers, airflow) use its Python.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run test cluster-test clean

$(VENV)/bin/python:
	$(shell command -v $(PYTHON) || echo python3) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# The nightly DAG once through Airflow (SQLite, `airflow dags test`) on demo data with the fast profile.
# RUN_ARGS passes more options, e.g. make run RUN_ARGS="--date 2026-01-01" or RUN_ARGS="--set training.max_epochs=50".
run: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/unisem run --config configs/demo.yaml $(RUN_ARGS)

# The suite without the cluster tests (those start real services: `make cluster-test`; CI runs both).
test: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -m "not cluster" $(PYTEST_ARGS)

# The nightly DAG and the fault drills on real services on loopback: Spark standalone, a Ray head (Jobs API),
# an MLflow server, PostgreSQL + Airflow scheduler/dag-processor/api-server (needs PostgreSQL's binaries).
cluster-test: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -m cluster tests/cluster $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .unisem
