# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make demo   - the main job: Temporal dev server + worker + an example session, end to end
#   make test   - the whole test suite (lint, types, schemas, pytest against real servers)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	@command -v bwrap >/dev/null 2>&1 || echo "note: bubblewrap (bwrap) is not installed: agents' bash commands \
	cannot be isolated (sudo apt-get install bubblewrap). The demo then runs them unsandboxed, with a warning; \
	the isolation tests are skipped and tests that run bash fail."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/managed-agents demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/managed-agents schema --check

test: lint
	$(BIN)/pytest

bench: $(BIN)/.installed
	$(BIN)/python bench/session_steps.py

clean:
	rm -rf $(VENV) .managed-agents .pytest_cache .mypy_cache .ruff_cache
