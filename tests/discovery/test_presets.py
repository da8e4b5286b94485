"""Every discovery model preset composes and runs end to end with fast_dev_run (tiny fixed sets)."""

from __future__ import annotations

import pytest

TINY = [
    "data.val_graphs=2",
    "data.val_set.num_nodes=8",
    "data.prior.num_obs=[50,100]",
    "data.test_graphs=2",
    "~data.test_sets",
    "+data.test_sets={er_d6: {num_nodes: 6}, sf_d9: {num_nodes: 9, graphs: {sf: 1}}}",
]


@pytest.mark.parametrize("model", ["pfn_a", "pfn_b", "pfn_c", "pfn_d", "pfn_e"])
def test_every_variant_runs_fast_dev_run(run_experiment, model: str) -> None:
    metrics = run_experiment(["experiment=pfn", f"model={model}", "trainer=debug", *TINY])
    names = {f"test/{s}/{m}" for s in ("er_d6", "sf_d9") for m in ("shd", "auroc", "delta_rmse", "delta_r2")}
    assert names <= set(metrics)
    assert 0.0 <= metrics["test/er_d6/auroc"] <= 1.0
    assert metrics["test/er_d6/shd"] != metrics["test/sf_d9/shd"]  # per-set metrics, not one value copied
