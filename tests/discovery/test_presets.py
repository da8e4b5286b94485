"""Every discovery model preset composes and runs end to end with fast_dev_run (tiny fixed sets)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from causal_engine.discovery import models

TINY = [
    "data.val_graphs=2",
    "data.val_set.num_nodes=8",
    "data.prior.num_obs=[50,100]",
    "data.test_graphs=2",
    "~data.test_sets",
    "+data.test_sets={er_d6: {num_nodes: 6}, sf_d9: {num_nodes: 9, graphs: {sf: 1}}}",
]


VARIANTS = {
    "pfn_a": "pfn_mlp_delta",
    "pfn_b": "pfn_node_experts",
    "pfn_c": "pfn_gumbel_edges",
    "pfn_d": "pfn_dag_attention",
    "pfn_e": "pfn_hyper_delta",
}


@pytest.mark.parametrize(("letter", "name"), VARIANTS.items())
def test_the_letter_of_each_variant_is_an_alias_of_its_descriptive_config(compose, letter: str, name: str) -> None:
    by_letter, by_name = (
        compose(["experiment=pfn", f"model={letter}"]).model,
        compose(["experiment=pfn", f"model={name}"]).model,
    )
    assert OmegaConf.to_container(by_letter) == OmegaConf.to_container(by_name)
    cls = by_name.net._target_.rpartition(".")[2]
    assert getattr(models, f"Model{letter[-1].upper()}") is getattr(models, cls)


@pytest.mark.parametrize("model", VARIANTS.values())
def test_every_variant_runs_fast_dev_run(run_experiment, model: str) -> None:
    metrics = run_experiment(["experiment=pfn", f"model={model}", "trainer=debug", *TINY])
    names = {f"test/{s}/{m}" for s in ("er_d6", "sf_d9") for m in ("shd", "auroc", "delta_rmse", "delta_r2")}
    assert names <= set(metrics)
    assert 0.0 <= metrics["test/er_d6/auroc"] <= 1.0
    assert metrics["test/er_d6/shd"] != metrics["test/sf_d9/shd"]  # per-set metrics, not one value copied
