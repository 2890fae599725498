# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/dagster_home

.PHONY: setup demo test test-fast bench lint dev clean

setup: $(STAMP) system-deps node-deps

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Debian packages the tests need: PostgreSQL server binaries, chromium for browser tests, podman &
# co. for the images.
system-deps:
	@bash scripts/system-deps.sh

# npm packages (ganache, OpenZeppelin merkle-tree, dclint) into ./node_modules, no lock file.
node-deps:
	@bash scripts/node-deps.sh

demo: setup
	$(VENV)/bin/noderr demo

test: setup
	$(PY) -m pytest -ra --timeout=1800 --durations=25

test-fast: setup
	$(PY) -m pytest -ra -m "not slow and not browser" --timeout=900

# Container images with podman (node, API, pipelines; cached layers): see docs/DEPLOYMENT.md.
.PHONY: images
images: setup
	$(VENV)/bin/noderr images build

bench: setup
	$(PY) -m bench

dev: setup
	$(VENV)/bin/noderr dev up

lint: setup
	$(VENV)/bin/hadolint $$(git ls-files '*Dockerfile*')

clean:
	rm -rf .noderr test-artifacts
