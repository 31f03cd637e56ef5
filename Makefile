# SPDX-License-Identifier: GPL-2.0-or-later
# The two commands of README.md: `make fuzz` (the main job) and `make test`.
# Both create what they need: a virtualenv in .venv, the Python tools, and an
# editable meson-python install of recvmap (C rebuilt on import when sources change).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.recvmap-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: fuzz test check bench lint clean

$(STAMP): pyproject.toml meson.build qemu_ref/meson.build
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check \
	  meson-python meson ninja 'atheris==3.0.0' 'hypothesis>=6.100' 'pytest>=8' ruff mypy
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation -e '.[test,fuzz,qemu-tree,mutation,accel]'
	@touch $@

fuzz: $(STAMP)
	$(VENV)/bin/recvmap fuzz --strict $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q tests $(ARGS)

# The longer job: the suite and the tests marked slow (every QEMU tag of the history).
check: $(STAMP)
	$(PY) -m pytest -q tests --run-slow $(ARGS)

bench: $(STAMP)
	$(PY) bench/figures.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check pymodel qemu_ref fuzz tests bench
	$(VENV)/bin/ruff check pymodel qemu_ref fuzz tests bench
	$(VENV)/bin/mypy pymodel

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
