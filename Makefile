# Two commands do all the set-up on a fresh machine:
#   make quickstart   # install, then run the quickstart on the embedded model
#   make test         # install, then run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup quickstart test test-fast lint bench

setup:
	bash scripts/setup.sh

quickstart: setup
	bash examples/quickstart.sh

test: setup
	bash scripts/setup-chromium.sh
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not integration"

lint: setup
	$(BIN)/ruff check cai tests benchmarks

bench: setup
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/scoring.py
	$(BIN)/python benchmarks/labeling.py
	$(BIN)/python benchmarks/critique.py
	$(BIN)/python benchmarks/dpo_precompute.py
	$(BIN)/python benchmarks/label_memory.py
	$(BIN)/python benchmarks/quickstart.py
