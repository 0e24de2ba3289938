# `make test` and `make demo` bootstrap everything they need on a fresh machine (venv, pip, npm).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
BROWSER_STAMP := .venv/.browser

.PHONY: deps run demo test test-unit test-infra lint format bench clean

$(PIP_STAMP): requirements.txt requirements-dev.txt
	@echo "make: installing the Python packages (requirements-dev.txt) into $(VENV) - about a minute on a fresh machine"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NPM_STAMP): package.json package-lock.json
	@echo "make: installing Azurite (the local Azure Storage) from npm - under a minute"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(PIP_STAMP) $(NPM_STAMP)

# Debian's chromium drives the status-page test headless (never a downloaded browser build).
$(BROWSER_STAMP): $(PIP_STAMP)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "make: installing Debian's chromium (the status-page test drives it headless) - a minute or two"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "make: chromium could not be installed (apt-get needs root); the browser test will be skipped"; }
	touch $@

## run: Azurite + the emulator + the function app (func start if installed, else devhost) until Ctrl-C
## (TARGET=azureml: the app retrains the Azure ML stand-in's online endpoints instead of Studio (classic))
run: deps
	$(PY) -m tools.localdev.run $(if $(TARGET),--target $(TARGET)) $(RUN_ARGS)

## demo: the whole story on synthetic census data, with progress; exits non-zero if a step fails (TARGET=azureml too)
demo: deps
	$(PY) -m tools.localdev.demo $(if $(TARGET),--target $(TARGET)) $(DEMO_ARGS)

## test: every test (unit, integration, e2e); starts Azurite itself and stops it afterwards. The suite mostly waits on
## services, so it runs on TEST_WORKERS pytest-xdist workers (each with its own Azurite and emulators), a test file
## to a worker (its module-scoped stacks stay in one process); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: deps $(BROWSER_STAMP)
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

## test-unit: the fast tests alone - decisions, records, every use case on the fakes (no Azurite, no emulator;
## under 10 s); pytest prints the time
test-unit: deps
	$(PY) -m pytest -m unit -q $(PYTEST_ARGS)

## test-infra: infra/, azure.yaml and the azd hooks checked against the code (no services; ~15 s)
test-infra: deps
	$(PY) -m pytest -m infra -q $(PYTEST_ARGS)

lint: deps
	$(PY) -m ruff check .
	$(PY) -m mypy .
	$(VENV)/bin/actionlint -shellcheck= -pyflakes= .github/workflows/*.yml

format: deps
	$(PY) -m ruff check --fix .

bench: deps
	$(PY) -m bench.emulator_throughput
	$(PY) -m bench.fanout --endpoints 10000
	$(PY) -m bench.validation --size-mb 1024
	$(PY) -m bench.ledger_scale

clean:
	rm -rf $(VENV) node_modules .local .test-runs .pytest_cache .mypy_cache .ruff_cache
