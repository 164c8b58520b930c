# Flywheel: `make run` to try it, `make test` to check it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench e2e clean

install: $(STAMP)

# The project, and the Python client (client/, stdlib only) that the README's client
# examples import: installed as a package, reinstalled when its code changes.
$(STAMP): pyproject.toml client/pyproject.toml $(wildcard client/flywheel_client/*.py)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet ./client
	touch $(STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo
	$(BIN)/python manage.py setup_schedules
	@$(BIN)/python scripts/run.py --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: install
	bash scripts/system_deps.sh
	bash scripts/with_postgres.sh $(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	bash scripts/system_deps.sh
	bash scripts/with_postgres.sh $(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) db.sqlite3 var test-artifacts
