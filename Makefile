# SynTumor: `make run` starts the demo, `make test` runs the test suite.
# Both set up everything they need on a fresh machine, idempotently.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LITS_PACKAGE := liver-ct-segmentation-package==1.6.0
PYTEST_ARGS ?= -n 2

NODE_STAMP := node_modules/.installed

.PHONY: setup system-packages run test test-postgres lint bench docker-check clean

setup: $(STAMP) $(NODE_STAMP)

# The browser viewer (NiiVue) from npm, pinned by package-lock.json; served, never built.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The local CPU build of torch first: anything that pulls torch later finds it installed.
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	# The real LiTS case 117 (its declared dependencies pin an ancient torch: --no-deps).
	$(PY) -m pip install --quiet --no-deps $(LITS_PACKAGE)
	touch $(STAMP)

run: $(STAMP) $(NODE_STAMP)
	$(PY) -m app.cli serve --demo

# Chromium, g++ and PostgreSQL's programs from Debian (installed when root, else the command
# to run is printed and the tests do not start).
system-packages:
	@bash scripts/system-packages.sh

test: $(STAMP) $(NODE_STAMP) system-packages
	$(PY) -m pytest $(PYTEST_ARGS) tests

# The web app's API, worker and migration tests again on PostgreSQL (`.ci/run` makes a throw-away
# cluster): SYNTUMOR_TEST_DATABASE_URL names a database on a server where the tests may create
# databases, e.g. postgresql+psycopg://syntumor@127.0.0.1:5432/postgres.
PG_TESTS := tests/app/test_api_*.py tests/app/test_worker*.py tests/app/test_migrations.py tests/app/test_postgres*.py
test-postgres: $(STAMP) $(NODE_STAMP) system-packages
	@test -n "$$SYNTUMOR_TEST_DATABASE_URL" || { echo "set SYNTUMOR_TEST_DATABASE_URL=postgresql+psycopg://user@host:port/postgres"; exit 2; }
	$(PY) -m pytest $(PYTEST_ARGS) -m "not slow" $(PG_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check syntumor_core app tests benchmarks
	$(VENV)/bin/ruff format --check syntumor_core app tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/synthesis.py

# Build the Docker image and use it for real: `/`, `/docs` and a segmentation job in a container
# on a fresh volume (as root it installs Debian's docker.io and debootstrap and starts dockerd
# when missing; the base image is Debian from debootstrap, no Docker Hub needed).
docker-check:
	@bash scripts/docker-check.sh

clean:
	rm -rf $(VENV) var .pytest_cache node_modules
