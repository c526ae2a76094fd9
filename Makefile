# The two commands of the README: `make demo` and `make test`. Only Python 3.11+
# and make are needed; everything else is installed into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

# mysqlclient compiles against the MySQL/MariaDB client library; without it the
# MySQL backend is skipped (and reported) instead of breaking the install.
HAVE_MYSQL_LIB := $(shell pkg-config --exists mysqlclient 2>/dev/null || pkg-config --exists mariadb 2>/dev/null && echo yes)
comma := ,
EXTRAS := dev,docs$(if $(HAVE_MYSQL_LIB),$(comma)mysql)
# Named after the extras: installing the MySQL library later reinstalls with mysqlclient.
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: help install demo demo-asgi demo-client demo-script test test-only test-fast lint typecheck check-migrations matrix compat bench bench-smoke bench-http bench-pgbench docs clean

help:
	@echo "make demo    set up and start the sample project on http://127.0.0.1:8000/"
	@echo "make test    set up and run lint, type checks and the tests on every reachable database"

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check django_idempotency

typecheck: $(STAMP)
	$(BIN)/mypy

check-migrations: $(STAMP)
	PYTHONPATH=. DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/django-admin makemigrations --check --dry-run

test: lint typecheck check-migrations test-only

test-only: $(STAMP)
	$(BIN)/python tests/run_backends.py $(ARGS)

# The edit-test loop: every reachable backend, without the tests that start
# server processes.
test-fast: $(STAMP)
	$(BIN)/python tests/run_backends.py -m "not processes" $(ARGS)

# tox finds the other Pythons on PATH; pyenv keeps them out of it unless selected.
PYENV_BINS := $(shell root=$$(pyenv root 2>/dev/null) && ls -d $$root/versions/3.1[1-9]*/bin 2>/dev/null | tr '\n' ':')

matrix: $(STAMP)
	PATH="$(PYENV_BINS)$$PATH" $(BIN)/tox

# The oldest supported Django on the oldest Python (from the built wheel) and
# the newest on the newest, on PostgreSQL: what CI runs besides `make test`.
# A missing interpreter fails the run.
compat: $(STAMP)
	PATH="$(PYENV_BINS)$$PATH" IDEMPOTENCY_TEST_DB=postgresql $(BIN)/tox --skip-missing-interpreters false -e py311-django52,py313-django61 -- -q -p no:cacheprovider

demo: $(STAMP)
	$(MAKE) -C sample_project demo PYTHON=$(abspath $(BIN)/python)

demo-asgi: $(STAMP)
	$(MAKE) -C sample_project demo-asgi PYTHON=$(abspath $(BIN)/python)

demo-client: $(STAMP)
	$(MAKE) -C sample_project demo-client PYTHON=$(abspath $(BIN)/python)

demo-script: $(STAMP)
	$(MAKE) -C sample_project demo-script PYTHON=$(abspath $(BIN)/python)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(ARGS)

bench-smoke: $(STAMP)
	$(BIN)/python benchmarks/run.py --smoke

# Over HTTP: gunicorn and wrk, every configuration side by side (minutes; by hand).
bench-http: $(STAMP)
	$(BIN)/python benchmarks/http_run.py $(ARGS)

# The app's claim and completion under pgbench: app servers per database. Run
# after bench-http, whose per-server throughput it divides by.
bench-pgbench: $(STAMP)
	$(BIN)/python benchmarks/pgbench.py $(ARGS)

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d build/site

clean:
	rm -rf $(VENV) .tox build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
