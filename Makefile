# Two commands on a fresh machine: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` runs the tour (all three systems); `make run ARGS="experiment=pfn"` runs another.
ARGS ?= experiment=tour

.PHONY: setup run test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[baselines,sweep,slurm,dev]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/causal-engine $(ARGS)

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts docs README.md

# Every benchmark in a quick/reduced mode (results under outputs/bench_quick/, not the full runs' folders), then
# the cost-growth sweep, which writes docs/benchmarks.md and its plots. The full versions and their commands are in
# docs/<system>.md, Results.
BENCH_QUICK := outputs/bench_quick

bench: $(STAMP)
	rm -rf $(BENCH_QUICK)
	$(BIN)/python scripts/bench_scm.py --repeats 3 --out $(BENCH_QUICK)/scm
	$(BIN)/python scripts/bench_discovery.py --sets er_d10 er_d20 --graphs 4 --out $(BENCH_QUICK)/discovery
	$(BIN)/python scripts/bench_pfn.py --minutes 2 --eval-every 1 --graphs 8 --out $(BENCH_QUICK)/pfn
	$(BIN)/python scripts/bench_intervene.py --scms nonlin_simpson --ns 100 1000 --seeds 2 --arms mlp_substitution mlp_backdoor structural_observational structural_do20 \
		--out $(BENCH_QUICK)/intervene
	$(BIN)/python scripts/bench_dml.py --replicates 3 --workers 2 --rf-trees 50 --out $(BENCH_QUICK)/dml \
		data.n_samples=500 dml.jepa_epochs=2 dml.convergence.patience=5
	$(BIN)/python scripts/bench_costs.py

clean:
	rm -rf $(VENV) outputs
