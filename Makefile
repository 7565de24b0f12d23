# The two commands of the README: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DURATION ?= 30

.PHONY: demo simulate test lint typecheck check bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

## Run the follower against the embedded simulator (DURATION=0 runs until Ctrl-C).
demo: $(STAMP)
	$(BIN)/follower demo --duration $(DURATION)

## Serve the simulator on 127.0.0.1:$(PORT) (key sim-key) for `follower run/tail/pipelines/check`
## in another terminal; it prints the commands to paste.
PORT ?= 8080
simulate: $(STAMP)
	$(BIN)/follower simulate --port $(PORT)

## The whole test suite, then lint and types: what CI runs.
test: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term:skip-covered
	$(BIN)/ruff check follower tests bench
	$(BIN)/mypy --strict follower

lint: $(STAMP)
	$(BIN)/ruff check follower tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict follower

bench: $(STAMP)
	$(BIN)/python bench/differ.py
	$(BIN)/python bench/sink.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .hypothesis
