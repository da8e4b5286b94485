# Two commands on a fresh machine: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` runs the tour (all three systems; 3 min on 2 idle cores); `make run ARGS="experiment=pfn"` runs another.
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
# the cost-growth sweep, which writes docs/benchmarks.md and its plots. The reduced settings (full versions:
# docs/<room>.md): SCM 3 rounds instead of 7; discovery d = 10, 20 with 4 graphs each; PFN time-to-quality 2 min
# per pipeline instead of 10; intervene one SCM, N = 100, 1000, 2 seeds, 4 arms; JEPA-DML 3 replicates of
# N = 500 at 2 JEPA / 5 nuisance epochs with 50-tree forests. Each step run separately on the shared 2-core
# machine (load ~8): scm 34 s, discovery 524 s (PC on the er_d20 graphs), intervene 194 s, pfn 295 s, dml 49 s,
# costs 6.6 min; about 25 min in all, less on idle cores.
BENCH_QUICK := outputs/bench_quick

bench: $(STAMP)
	rm -rf $(BENCH_QUICK)
	$(BIN)/python scripts/bench_scm.py --repeats 3 --out $(BENCH_QUICK)/scm
	$(BIN)/python scripts/bench_discovery.py --sets er_d10 er_d20 --graphs 4 --out $(BENCH_QUICK)/discovery
	$(BIN)/python scripts/bench_pfn.py --minutes 2 --eval-every 1 --graphs 8 --out $(BENCH_QUICK)/pfn
	$(BIN)/python scripts/bench_intervene.py --scms nonlin_simpson --ns 100 1000 --seeds 2 --arms M1 M2 M3 M4-20 \
		--out $(BENCH_QUICK)/intervene
	$(BIN)/python scripts/bench_dml.py --replicates 3 --workers 2 --rf-trees 50 --out $(BENCH_QUICK)/dml \
		data.n_samples=500 dml.jepa_epochs=2 dml.convergence.patience=5
	$(BIN)/python scripts/bench_costs.py

clean:
	rm -rf $(VENV) outputs
