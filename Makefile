# SPDX-License-Identifier: GPL-2.0-or-later
# The two commands of README.md: `make fuzz` (the main job) and `make test` (the tests), and
# `make check` (the long checks CI runs after `make test`). Each creates what it needs: a
# virtualenv in .venv, the Python tools, and an editable meson-python install of recvmap (the
# C is rebuilt on import when its sources change).
#
# Wheels only (--only-binary=:all:): a dependency that would have to be built from a source
# archive fails here, on every machine, instead of passing where pip's cache holds a wheel
# built earlier. recvmap itself is the one package built from source.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.recvmap-installed
EXTRAS ?= test,fuzz,qemu-tree,mutation,accel,dev
# pytest-xdist workers for the tests: one per core (`make test JOBS=0` runs in one process)
JOBS ?= auto
INSTALL := $(PY) -m pip install -q --disable-pip-version-check --only-binary=:all:
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: fuzz test check bench lint system clean

$(STAMP): pyproject.toml meson.build qemu_ref/meson.build Makefile tests/extras.py
	@command -v gcc >/dev/null || { echo "make: gcc is missing (Debian: apt-get install gcc, or make system)" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "make: $(PYTHON) -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 2; }
	$(INSTALL) $$($(PY) tests/extras.py build-requires)
	@reqs="$$($(PY) tests/extras.py no-deps $(EXTRAS))"; \
	  if [ -n "$$reqs" ]; then echo "$(INSTALL) --no-deps $$reqs"; $(INSTALL) --no-deps $$reqs; fi
	$(INSTALL) --no-build-isolation -e '.[$(EXTRAS)]'
	@touch $@

fuzz: $(STAMP)
	$(VENV)/bin/recvmap fuzz --strict $(ARGS)

# The fast suite: everything but the tests marked slow, in parallel.
test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) --dist worksteal -m "not slow" tests $(ARGS)

# The long checks: the tests marked slow (long campaigns, every QEMU release, cross-host
# sweeps, the fresh virtualenv with only the test extra).
check: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) --dist worksteal -m slow tests $(ARGS)

bench: $(STAMP)
	$(PY) bench/figures.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check pymodel qemu_ref fuzz tests bench
	$(VENV)/bin/ruff check pymodel qemu_ref fuzz tests bench
	$(VENV)/bin/mypy pymodel

# The Debian packages the optional parts need (clang's fuzzer and sanitizers for --native,
# cross compilers and qemu-user for --host, glib for the GTest export); as root, or with sudo.
SYSTEM_PACKAGES := $(shell cat .ci/packages)
system:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); fi

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
