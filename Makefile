# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MPLBACKEND := Agg

.PHONY: demo test lint lab bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(VENV)/.core $@

$(VENV)/.bench: pyproject.toml $(VENV)/.dev
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

demo: $(VENV)/.core
	$(BIN)/expkit demo

test: $(VENV)/.dev
	$(BIN)/ruff check expkit tests benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadfile -q --nbval-lax --nbval-cell-timeout=900 tests templates notebooks

lint: $(VENV)/.dev
	$(BIN)/ruff check expkit tests benchmarks

# the project root is the server's root (so runs/ reports open from the RunBrowser); it opens notebooks/
lab: $(VENV)/.dev
	$(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks

bench: $(VENV)/.bench
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/tournament.py
	$(BIN)/python benchmarks/scoring.py
	$(BIN)/python benchmarks/runs.py
	$(BIN)/python benchmarks/sql.py --repeat 3

clean:
	rm -rf $(VENV) .pytest_cache
