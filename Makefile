# The two commands a new user needs: `make demo` and `make test`. Both build their own .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DEMO_DIR ?= .cache/demo

.PHONY: install install-test install-bench demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

install-test: $(VENV)/.installed-test

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(PIP) install -q -e '.[bench]'
	touch $@

install-bench: $(VENV)/.installed-bench

demo: install
	$(PY) -m itchflow.cli.demo --dir $(DEMO_DIR)

test: install-test
	$(PY) -m pytest -q

bench: install-bench
	$(PY) benchmarks/decode.py

clean:
	rm -rf $(VENV) .cache build src/*.egg-info
