# `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/pip
STAMP   = $(VENV)/.installed
DEMO_ARGS ?=

.PHONY: demo test test-fast system-deps lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/incidentbook demo $(DEMO_ARGS)

# Debian packages for the real components the tests start (needs root; skipped otherwise,
# and the tests then say what they could not start).
system-deps:
	@bash scripts/install-system-deps.sh

test: $(STAMP) system-deps
	$(PY) -m pytest -q -n 2 --dist loadgroup
	INCIDENTBOOK_HOME=$$(mktemp -d) $(PY) -m pytest -q --nbmake runbooks/ templates/ -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check incidentbook tests bench

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build dist .pytest_cache
