# meshbatch: everything a fresh machine with python3 and pip needs goes through these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

COMPILED := $(VENV)/compiled
HOT_SOURCES := $(shell find src -name '*.py' 2>/dev/null)

.PHONY: all venv demo test test-compiled compiled lint typecheck bench bench-deps clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv (a pinned PyPI package) makes installs fast; plain pip is the fallback.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9 || true
	if [ -x $(BIN)/uv ]; then \
		$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'; \
	else \
		$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'; \
	fi
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/meshbatch demo

test: $(STAMP) bench-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) test-compiled

# The hot path compiled with mypyc (setup.py) into its own directory; the editable install stays pure Python.
$(COMPILED)/.stamp: $(STAMP) setup.py $(HOT_SOURCES)
	rm -rf $(COMPILED) build
	MESHBATCH_COMPILE=1 $(BIN)/python -m pip install -q --disable-pip-version-check --no-deps \
		--no-build-isolation --target $(COMPILED) .
	rm -rf build
	touch $@

compiled: $(COMPILED)/.stamp

# The same unit and integration tests against the compiled build (subprocesses inherit PYTHONPATH).
test-compiled: compiled
	PYTHONPATH=$(CURDIR)/$(COMPILED) $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/integration

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench || true
	$(BIN)/mypy

# The peers the benchmarks run against (Debian packages), installed when missing and we are allowed to.
bench-deps:
	@missing=""; \
	for tool in nginx:nginx-light haproxy:haproxy wrk:wrk; do \
		bin=$${tool%%:*}; pkg=$${tool##*:}; \
		command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
				|| echo "warning: could not install$$missing"; \
		else \
			echo "warning: missing$$missing (install them with apt-get as root)"; \
		fi; \
	fi

bench: $(STAMP) bench-deps compiled
	PYTHONPATH=$(CURDIR)/$(COMPILED) $(BIN)/meshbatch bench all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
