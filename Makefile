# The two commands of the README's quick start: `make demo` and `make test`.
# Both install tfbrats and its pinned dependencies into .venv first (nothing is downloaded at run time).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_output

.PHONY: install test demo lint

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m ruff check tfbrats tools tests
	$(PY) -m pytest -q -rs

demo: $(VENV)/.installed
	$(PY) -m tfbrats.demo --out=$(DEMO_OUT)
