# The README's commands: `make demo` and `make test`. Each creates or reuses .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SOURCES := $(shell find xray_autoinst sitecustomize -name '*.py' 2>/dev/null) pyproject.toml
STAMP  := $(VENV)/.installed
# the other CPythons tox runs (py310, py312, py313; oldest on 3.10): pyenv's interpreters, on
# PATH after the rest (pyenv's shims for them do not resolve unless selected, so tox would not find them).
# `--` only with ARGS: an empty `--` would replace each environment's default pytest arguments.
PYENV_ROOT ?= $(HOME)/.pyenv
PYENV_BINS := $(wildcard $(PYENV_ROOT)/versions/3.1[0-3].*/bin)
empty :=
space := $(empty) $(empty)
export PATH := $(PATH)$(if $(PYENV_BINS),:$(subst $(space),:,$(PYENV_BINS)))

.PHONY: test demo services system-deps lint bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# tools, the demo's stand-ins (moto server, boto3), and the agent itself as a real install
$(STAMP): $(BIN)/python $(SOURCES) requirements-demo.txt
	$(BIN)/python -m pip install -q tox ruff -r requirements-demo.txt
	$(BIN)/python -m pip install -q --force-reinstall --no-deps .
	@touch $(STAMP)

services:
	@bash scripts/services.sh

# system packages (MariaDB client headers for mysqlclient, chromium for the console's tests)
system-deps:
	@bash scripts/system-deps.sh

test: $(STAMP) system-deps services
	$(BIN)/tox -e py311 $(if $(ARGS),-- $(ARGS))
	$(BIN)/tox -e py310,py312,py313 $(if $(ARGS),-- $(ARGS))
	$(BIN)/tox -e oldest $(if $(ARGS),-- $(ARGS))

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) .tox build *.egg-info
