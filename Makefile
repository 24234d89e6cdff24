# meshbatch: everything a fresh machine with python3 and pip needs goes through these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

COMPILED := $(VENV)/compiled
HOT_SOURCES := $(shell find src -name '*.py' 2>/dev/null)

# Exact versions of every dependency, every extra and the dev tools (pyproject.toml has the ranges).
LOCK := requirements/lock.txt
UV_VERSION := 0.13.9

.PHONY: all venv lock demo test test-compiled compiled lint typecheck bench bench-deps system-deps browser-deps chaos \
	clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The lock first, then the project itself, editable, without resolving anything again (its build needs only
# setuptools and wheel, which the lock has). uv (a pinned PyPI package) makes installs fast; plain pip is the
# fallback.
$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) || true
	if [ -x $(BIN)/uv ]; then \
		$(BIN)/uv pip install -q --python $(BIN)/python -r $(LOCK) && \
		$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e .; \
	else \
		$(BIN)/python -m pip install -q --disable-pip-version-check -r $(LOCK) && \
		$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .; \
	fi
	touch $(STAMP)

venv: $(STAMP)

# Resolve pyproject.toml's ranges again (all extras and the dev tools) into exact pins for every platform.
lock: | $(BIN)/python
	[ -x $(BIN)/uv ] || $(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip compile -q --universal --python-version 3.11 --all-extras --no-emit-package meshbatch \
		--custom-compile-command 'make lock' -o $(LOCK) pyproject.toml

# The demo runs the build a user gets from `pip install meshbatch`: compiled where a C compiler is present.
demo: compiled
	PYTHONPATH=$(CURDIR)/$(COMPILED) $(BIN)/meshbatch demo

# The suite in two parts: most of it spread over TEST_WORKERS processes (pytest-xdist, a file's tests in one
# process), then the `serial` tests alone (timed bars, benchmarks' quick runs, the short chaos scenarios).
TEST_WORKERS ?= 3
XDIST = -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP) system-deps
	$(BIN)/ruff check src tests testbed bench chaos
	$(BIN)/mypy
	$(BIN)/python -m pytest $(XDIST) -m "not serial" --durations=15 $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m serial --durations=10 $(PYTEST_ARGS)
	$(MAKE) test-compiled

# The build `pip install meshbatch` gives, into its own directory: the hot path compiled with mypyc where a C
# compiler is present, else pure Python with a warning (setup.py); the editable install stays pure Python.
$(COMPILED)/.stamp: $(STAMP) setup.py $(HOT_SOURCES)
	rm -rf $(COMPILED) build
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps \
		--no-build-isolation --target $(COMPILED) .
	PYTHONPATH=$(CURDIR)/$(COMPILED) $(BIN)/meshbatch --version
	rm -rf build
	touch $@

compiled: $(COMPILED)/.stamp

# The compiled modules' own tests again against the compiled build: unit tests, and the data-plane, batching
# and ingest (kill -9 mid-flush, hostile NDJSON) integration tests (subprocesses inherit PYTHONPATH, so `meshbatch
# run` is the compiled build too); as in `test`, the `serial` ones alone after the parallel part.
COMPILED_TESTS := tests/unit tests/fuzz tests/integration/test_proxy_*.py tests/integration/test_batching_*.py \
	tests/integration/test_smuggling.py tests/integration/test_lifecycle.py tests/integration/test_admin.py \
	tests/integration/test_ingest_crash.py tests/integration/test_ingest_pipeline.py

test-compiled: compiled
	PYTHONPATH=$(CURDIR)/$(COMPILED) $(BIN)/python -m pytest -q -p no:cacheprovider $(XDIST) -m "not serial" \
		$(COMPILED_TESTS)
	PYTHONPATH=$(CURDIR)/$(COMPILED) $(BIN)/python -m pytest -q -p no:cacheprovider -m serial $(COMPILED_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check src tests testbed bench chaos
	$(BIN)/ruff format --check src tests testbed bench chaos || true
	$(BIN)/mypy

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian packages: the peers the benchmarks run against (nginx, haproxy, wrk) and the real services some tests
# start themselves (etcd, a 3-node NATS cluster), iproute2 and iptables (the multi-host chaos scenario's network
# namespaces, and its delay and loss through NFQUEUE on kernels without tc netem), kubectl (kustomize builds of
# deploy/, validated offline), and the headless browser of the dashboard test (chromium, driven through the
# system chromedriver). Installed when missing and we are root; otherwise a warning (tests that need them say
# so, and fail under MESHBATCH_REQUIRE_SERVICES).
SYSTEM_TOOLS := nginx:nginx-light haproxy:haproxy wrk:wrk etcd:etcd-server chromium:chromium \
	chromedriver:chromium-driver kubectl:kubectl h2load:nghttp2-client nats-server:nats-server ip:iproute2 \
	iptables:iptables

system-deps:
	@missing=""; \
	for tool in $(SYSTEM_TOOLS); do \
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

# The batching scenario's peers, Ray Serve and BentoML (exact pins in bench/batching_targets.py), each in its own
# virtual environment under bench/.peers/ (gitignored), never a dependency of meshbatch. Without network the
# install fails and the scenario reports the peer as "not installed"; so this target never fails the build.
bench-deps: system-deps $(STAMP)
	$(BIN)/meshbatch bench deps || echo "warning: a batching peer could not be installed (see above)"

browser-deps: system-deps

bench: $(STAMP) bench-deps compiled
	PYTHONPATH=$(CURDIR)/$(COMPILED) $(BIN)/meshbatch bench all

# The chaos and soak suite, full length (about 20 minutes; a short version runs in `make test`), results in
# chaos/results/latest.md (docs/reliability.md).
chaos: $(STAMP)
	$(BIN)/meshbatch chaos

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
