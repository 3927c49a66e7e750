# The two commands of the README's quick start: `make demo` and `make test`.
# Each installs tfbrats into .venv first, with the exact versions of the newest tested stack
# (requirements/newest.txt); nothing is downloaded at run time. `make test` then also runs the
# short job on the oldest supported stack (requirements/oldest.txt) in .venv-oldest.
VENV ?= .venv
OLDEST_VENV ?= .venv-oldest
PYTHON ?= python3
PY := $(VENV)/bin/python
OLDEST_PY := $(OLDEST_VENV)/bin/python
DEMO_OUT ?= demo_output
# What the oldest stack covers that the newest cannot: tensorflow-io's DICOM reader, the TF-TRT
# tool's checks, the lesion-wise metrics (panoptica needs numpy < 2.3); and what must hold on both:
# FoldedConv3D's gradients (TF 2.16's oneDNN once got a strided 1x1 one wrong), the tf.data exit
# mechanism (private tf.data attributes) and a data -> train -> predict -> evaluate run.
OLDEST_TESTS ?= tests/clinical/test_dicom.py tests/serving/test_tftrt.py tests/evaluation/test_lesionwise.py \
	tests/evaluation/test_lesionwise_cavity.py \
	tests/models/test_layers.py \
	tests/data/test_data_exit.py tests/test_demo.py

.PHONY: install test test-newest test-oldest demo lint

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The demo's install: the core and the plots its report draws.
$(VENV)/.installed-demo: setup.cfg pyproject.toml requirements/newest.txt | $(VENV)/bin/python
	$(PY) -m pip install -c requirements/newest.txt -e '.[plots]'
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml requirements/newest.txt | $(VENV)/bin/python
	$(PY) -m pip install -c requirements/newest.txt -e '.[test]'
	touch $@

$(OLDEST_VENV)/.installed: setup.cfg pyproject.toml requirements/oldest.txt
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_PY) -m pip install --quiet --upgrade pip
	$(OLDEST_PY) -m pip install -c requirements/oldest.txt -e '.[tfio,tftrt,plots,lesionwise]' pytest
	touch $@

install: $(VENV)/.installed-test

test: test-newest test-oldest

test-newest: $(VENV)/.installed-test
	$(PY) -m ruff check tfbrats tools tests
	$(PY) -m pytest -q -rs

test-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_PY) -m pytest -q -rs $(OLDEST_TESTS)

demo: $(VENV)/.installed-demo
	$(PY) -m tfbrats.demo --out=$(DEMO_OUT)
