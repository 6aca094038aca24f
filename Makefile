# authserver: `make run` serves with defaults, `make test` runs the whole suite, `make bench` the benchmarks.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test venv lint bench clean

$(VENV)/.installed: setup.cfg requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# The issuer follows HOST and PORT unless AUTHSERVER_ISSUER is set.
run: export AUTHSERVER_ISSUER ?= http://$(HOST):$(PORT)
run: venv
	$(BIN)/authserver db upgrade
	$(BIN)/authserver seed --url $(AUTHSERVER_ISSUER)
	$(BIN)/authserver serve --host $(HOST) --port $(PORT)

test: venv
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# Every benchmark (docs/benchmarks.md): SQLite, and PostgreSQL when AUTHSERVER_BENCH_DATABASE_URL
# names a database it may empty; then the Node peer (../shared/peer/oidc-provider) when it and node are
# there. Needs wrk. BENCH_ARGS e.g. "--duration 5 --verify-sizes 1000", "--no-peer", "--update-docs".
bench: venv
	PYTHONPATH=. $(PY) bench/run_all.py $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check authserver keyvault tests bench

clean:
	rm -rf $(VENV) build *.egg-info
