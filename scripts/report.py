"""Collate a Hydra multirun into report.md and PNG charts (`causal_engine.sweeps`; `--help` lists the options).

python scripts/report.py outputs/multiruns/<date>/<time> [--metrics ...] [--over seed] [--curves ...]
"""

from causal_engine.sweeps import main

if __name__ == "__main__":
    main()
