# Caselle Portal Sync: developer entry points. See docs/setup.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
LOCK_VENV ?= /tmp/cps-lockvenv

.PHONY: help setup setup-system setup-python airflow-init demo test lint airflow-up airflow-down airflow-status lock clean

help:
	@echo "make setup         system packages, .venv, Airflow metadata DB + connections"
	@echo "make demo          setup, then scripts/demo.sh"
	@echo "make test          system packages + .venv, then the test suite (ARGS='-k x' for pytest)"
	@echo "make lint          ruff check"
	@echo "make airflow-up    start api-server, scheduler, dag-processor, triggerer (UI on :8080, admin/admin)"
	@echo "make airflow-down  stop them"
	@echo "make lock          re-resolve requirements.txt from requirements.in"
	@echo "make clean         remove .airflow/ and .demo/"

setup: setup-system setup-python airflow-init

setup-system:
	scripts/setup-system.sh

setup-python:
	scripts/setup-python.sh

airflow-init: setup-system setup-python
	scripts/airflow-init.sh

demo: setup
	scripts/demo.sh

test: setup-system setup-python
	scripts/test.sh $(ARGS)

lint: setup-python
	.venv/bin/ruff check .

airflow-up: airflow-init
	scripts/airflow-services.sh start

airflow-down:
	scripts/airflow-services.sh stop

airflow-status:
	scripts/airflow-services.sh status

# Full lock: resolve requirements.in in a clean Python 3.11 venv and freeze it.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements.in
	$(LOCK_VENV)/bin/python -m pip check
	{ echo "# Full lock of requirements.in for Python 3.11 (pip freeze of a clean venv)."; \
	  echo "# Do not edit by hand: edit requirements.in, then \`make lock\` (see docs/setup.md)."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable --disable-pip-version-check; } > requirements.txt.new
	mv requirements.txt.new requirements.txt
	rm -rf $(LOCK_VENV)
	@echo "requirements.txt: $$(grep -c '==' requirements.txt) pinned packages; now run: make setup-python"

clean:
	@if [ -d .airflow/run ] && ls .airflow/run/*.pid >/dev/null 2>&1; then scripts/airflow-services.sh stop; fi
	rm -rf .airflow .airflow-celery .demo
