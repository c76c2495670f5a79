# pivotal: every target does its own set-up (virtual environment, pinned torch, the project).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SHARED_DATA ?= $(wildcard ../shared/data)
DEMO_DIR ?= out/demo
PYTEST_WORKERS ?= 2

.PHONY: help setup demo test test-slow lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: an unpinned torch would pull the CUDA build (gigabytes)
	$(BIN)/pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install pivotal with its dev tools

demo: $(STAMP)  ## the main job: import real data (or download, or simulate) and summarise it
	$(BIN)/pivotal demo --data-dir $(DEMO_DIR) $(if $(SHARED_DATA),--data $(SHARED_DATA))

# the dashboard's browser tests drive Debian's chromium (Playwright with its executable_path)
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):  # without it (no apt, no root) the browser tests skip and say why
	-$(SUDO) apt-get update
	-$(SUDO) apt-get install -y chromium

test: $(STAMP) $(CHROMIUM)  ## lint, layer contract and the test suite (slow tests excluded)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest -m "not slow" -n $(PYTEST_WORKERS) -q

test-slow: $(STAMP) $(CHROMIUM)  ## the slow tests only
	$(BIN)/pytest -m slow -q

bench: $(STAMP)  ## performance figures beside peer libraries (installs the peers: vectorbt)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev,bench]"
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks && $(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks && $(BIN)/ruff check --fix src tests benchmarks

clean:  ## remove the virtual environment and outputs
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis
