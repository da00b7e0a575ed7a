# The README's two commands. `make test` and `make demo` create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e . --group test --group oracle
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check kizzasi_lite tests examples asv_bench
	$(BIN)/ruff format --check kizzasi_lite tests examples asv_bench
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	$(BIN)/python -c "import asv" 2>/dev/null || $(BIN)/python -m pip install --quiet --group bench
	cd asv_bench && ../$(BIN)/asv check --python=same

demo: $(STAMP)
	$(BIN)/kizzasi demo

lint: $(STAMP)
	$(BIN)/ruff check --fix kizzasi_lite tests examples
	$(BIN)/ruff format kizzasi_lite tests examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
