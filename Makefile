# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make demo   - the main job: Temporal dev server + worker + an example session, end to end
#   make test   - the whole test suite (lint, types, schemas, pytest against real servers)
# Every Python package comes from the committed lock file (uv.lock), installed by uv into .venv.
# `make lock-upgrade` moves the lock to the newest allowed versions and runs the suite on them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# uv itself is pinned here (the one version not in uv.lock); it installs everything else.
UV_VERSION := 0.13.10
UV := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never $(BIN)/uv

.PHONY: demo test lint bench system-deps lock-upgrade clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --locked: fail if uv.lock no longer matches pyproject.toml (run `make lock-upgrade` or `uv lock`).
# --inexact: keep uv and pip, which live in the same venv but not in the lock.
$(BIN)/.installed: $(BIN)/uv uv.lock pyproject.toml
	$(UV) sync --locked --inexact --extra dev --quiet
	@command -v bwrap >/dev/null 2>&1 || echo "note: bubblewrap (bwrap) is not installed: the demo runs agents' \
	bash commands unsandboxed, with a warning (sudo apt-get install bubblewrap)."
	touch $@

demo: $(BIN)/.installed
	$(BIN)/managed-agents demo

# bubblewrap and PostgreSQL come from the system's packages: installed when root, else a clear stop.
system-deps:
	@scripts/system-deps.sh

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/managed-agents schema --check

test: system-deps lint
	$(BIN)/pytest

bench: $(BIN)/.installed
	$(BIN)/python bench/session_steps.py

lock-upgrade: $(BIN)/uv
	$(UV) lock --upgrade
	$(MAKE) test

clean:
	rm -rf $(VENV) .managed-agents .pytest_cache .mypy_cache .ruff_cache
