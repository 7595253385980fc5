# The two commands a newcomer needs: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi

.PHONY: serve test lint bench clean mutation

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

serve: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) trial demo --if-empty
	@echo "--- demo users and API tokens (also in instance/demo-tokens.txt) ---"
	@cat instance/demo-tokens.txt
	@echo "--- pages: open http://127.0.0.1:5000/ and sign in as coordinator.s01 (or investigator.s01, ...) with the demo password above ---"
	@echo "--- serving the pages on http://127.0.0.1:5000/ and the API on http://127.0.0.1:5000/api/v1 (Ctrl-C stops) ---"
	@echo "--- e-mail notifications: sent beside it by 'notifications send --watch' (without SMTP_HOST they wait in the outbox: flask --app wsgi notifications list) ---"
	@# The sender runs in the background of this one shell; it is stopped (SIGTERM) however
	@# the server ends: Ctrl-C, a kill of make, or gunicorn failing to start.
	$(FLASK) notifications send --watch & sender=$$!; \
	trap 'kill $$sender 2>/dev/null' INT TERM EXIT; \
	$(BIN)/gunicorn --workers 2 --bind 127.0.0.1:5000 --access-logfile - wsgi:app

# Tests run in parallel worker processes (one per core, at most 4); each worker has its own
# databases. PYTEST_ARGS adds options, e.g. PYTEST_ARGS="-n 0 -k exports" for one process.
test: $(VENV)/.installed
	$(BIN)/pytest -n auto --maxprocesses 4 $(PYTEST_ARGS)

# Mutation testing of the safety-critical modules (mutation.toml), not part of `make test`: one
# module at a time, one worker process, SQLite only; prints each module's score and survivors.
# MODULES="chain counting" runs some of them.
$(VENV)/.mutation-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test,mutation]'
	touch $@

mutation: $(VENV)/.mutation-installed
	$(BIN)/python tools/mutation.py $(MODULES)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache *.egg-info
