# Two entry points for a newcomer: `make run` (the nightly pipeline once, on demo data) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup run test clean

$(VENV)/bin/python:
	$(shell command -v $(PYTHON) || echo python3) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

run: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/unisem run

test: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .unisem
