# The two commands a new user needs: `make demo` and `make test`. Both build their own .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DEMO_DIR ?= .cache/demo

.PHONY: install install-test install-bench system-tools demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

install: $(VENV)/.installed

# System tools the tests use when they can: perf counts system calls (itchflow compare, bench
# net). Installed only as root with apt (CI, a fresh VM); without them those checks say why.
system-tools:
	@if ! command -v perf >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null) \
		|| echo "note: could not install linux-perf; system-call counts will be reported as unavailable"; fi

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

test: install-test system-tools
	$(PY) -m pytest -q

bench: install-bench
	$(PY) benchmarks/decode.py

clean:
	rm -rf $(VENV) .cache build src/*.egg-info
