# voltstack — the two commands a newcomer needs:
#   make demo   build, then run the main job on embedded defaults
#   make test   install what the tests need, lint, run every test (twice for codecs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the dependency list changes; rebuild when a .pyx changes
# (editable installs do not notice .pyx edits by themselves).
INSTALLED := $(VENV)/.installed-dev
PYX := $(wildcard fastcodec/*.pyx)

.PHONY: all build demo test lint typecheck pytest bench clean system-deps-build system-deps-test

all: build

system-deps-build:
	@PYTHON=$(PYTHON) scripts/system-deps.sh build

system-deps-test:
	@PYTHON=$(PYTHON) scripts/system-deps.sh test

$(BIN)/python: | system-deps-build
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'setuptools>=77'

$(INSTALLED): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $@

build: $(INSTALLED) $(PYX)
	$(BIN)/python setup.py --quiet build_ext --inplace
	@$(BIN)/python -c "import fastcodec; print('fastcodec implementation:', fastcodec.IMPLEMENTATION)"

demo: build
	$(BIN)/voltstack demo

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

pytest: build system-deps-test
	$(BIN)/pytest
	FASTCODEC_NO_EXTENSIONS=1 $(BIN)/pytest -m codec

test: lint typecheck pytest

bench: build
	$(BIN)/python -m bench all

clean:
	rm -rf build dist *.egg-info fastcodec/_*_c.c fastcodec/*.so
