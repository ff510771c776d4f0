# Two commands do all set-up on a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint clean

# (Re)install when pyproject.toml changes. torch==2.13.0 resolves to the local CPU wheel.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Main job: the default encoder zero-shot on all four tasks x all languages (first 100 examples per language),
# then a Markdown report.
demo: $(STAMP)
	$(BIN)/bench run --backend encoder --tasks all --langs all --limit 100 --output results/demo
	$(BIN)/bench report results/demo --out reports/demo.md --title "statement-bench demo" > /dev/null

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --durations=15 tests

lint: $(STAMP)
	$(BIN)/ruff check harness tests scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
