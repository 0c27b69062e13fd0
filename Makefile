# CardioQuant developer commands. Each target creates .venv (Python 3.12) on first use.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_output
# Disk a new environment needs: .venv is 6.5 GB, and pip keeps the wheels it fetched beside it.
NEEDED_GB := 8

# Python 3.12: the one Slicer 5.12 ships. On pyenv machines pick the newest 3.12 it has.
PYTHON312 := $(shell if command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | grep -q '^3\.12'; then \
	PYENV_VERSION=$$(pyenv versions --bare | grep '^3\.12' | tail -1) pyenv which python3.12; \
	else command -v python3.12; fi)

.PHONY: venv demo test test-slow bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON312)" || { echo "python3.12 not found: install Python 3.12 (Slicer 5.12's version)" >&2; exit 2; }
	@free_gb=$$(df -Pk . | awk 'NR == 2 {print int($$4 / 1048576)}'); test -x $(BIN)/python || test "$$free_gb" -ge $(NEEDED_GB) \
		|| { echo "only $$free_gb GB of disk free here: a new environment needs about $(NEEDED_GB) GB (PyTorch with its" \
		"CUDA libraries); free some and run make again" >&2; exit 2; }
	$(PYTHON312) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cardioquant demo -o $(DEMO_OUT) --overwrite

# The tests run on two workers, a file's tests on one (its module fixtures are built once), each worker's
# PyTorch and BLAS on one thread: two of them at two threads each on two cores oversubscribe (8.1 against 9.2 min).
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

test: $(STAMP)
	$(PYTEST)

test-slow: $(STAMP)
	$(PYTEST) -m slow  # real-data checks (skipped where ../shared/data is absent)

bench: $(STAMP)  # one analysis only: make bench ONLY=calcium (bmd, scar, ffr, batch, memory)
	$(BIN)/python scripts/bench.py $(if $(ONLY),--only $(ONLY))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
