# Two commands on a fresh machine: `make run` (the demo on SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
DEMO_DB ?= $(CURDIR)/instance/demo.sqlite
# The demo's printed card sheet, written beside its database.
CARDS ?= $(dir $(DEMO_DB))cards.html
URL := http://$(HOST):$(PORT)

.PHONY: run test lint bench clean translations

$(BIN)/points: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,pg]'
	touch $@

# A fresh demo database every time: migrated, loaded, then served by gunicorn.
run: $(BIN)/points
	mkdir -p instance
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	POINTS_DATABASE_URL=sqlite:///$(DEMO_DB) $(BIN)/points db upgrade
	POINTS_DATABASE_URL=sqlite:///$(DEMO_DB) $(BIN)/points demo load --base-url $(URL)
	POINTS_DATABASE_URL=sqlite:///$(DEMO_DB) $(BIN)/points cards print --district longtan \
		--out $(CARDS) --base-url $(URL)
	@echo "Pages:"
	@echo "  volunteers  $(URL)/me  (sign in with a card code and PIN above)"
	@echo "  kiosk       $(URL)/kiosk  (pair it once at $(URL)/kiosk/pair with the code above)"
	@echo "  providers   $(URL)/provider  (open the provider link above once first)"
	@echo "  office      $(URL)/office  (sign in with a console account above)"
	@echo "  card sheet  $(CARDS)  (print it; or $(URL)/office/cards)"
	@echo "Serving the API on $(URL)/api/v1 (docs: $(URL)/api/v1/docs)"
	POINTS_DATABASE_URL=sqlite:///$(DEMO_DB) $(BIN)/gunicorn --bind $(HOST):$(PORT) \
		--workers 2 --worker-class sync wsgi:app

# The whole suite; PostgreSQL tests run when POINTS_TEST_DATABASE_URL is set.
test: $(BIN)/points
	$(BIN)/pytest

lint: $(BIN)/points
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Compile the pages' message catalogues (.po -> .mo); tests fail when a .mo is stale.
translations: $(BIN)/points
	for po in points/translations/*/LC_MESSAGES/*.po; do \
		$(BIN)/pybabel compile --use-fuzzy -i $$po -o $${po%.po}.mo || exit 1; done

bench: $(BIN)/points
	$(BIN)/python bench/ledger.py

clean:
	rm -rf $(VENV) instance/demo.sqlite* .pytest_cache
