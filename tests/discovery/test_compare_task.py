"""task=compare logs like every other run: scalars per method and set, and one HParams session per method."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from causal_engine.discovery.models import ModelD


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = ModelD(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=12)
    path = tmp_path / "pfn.pt"
    torch.save({"net_spec": net.net_spec(), "state_dict": net.state_dict()}, path)
    return path


def events(directory: Path) -> EventAccumulator:
    files = list(directory.glob("events.out.tfevents.*"))
    assert files, f"no TensorBoard events in {directory}"
    return EventAccumulator(str(directory)).Reload()


def test_compare_writes_scalars_and_hparams_for_each_method(run_experiment, checkpoint, tmp_path) -> None:
    metrics = run_experiment(
        [
            "task=compare",
            "data=scm_prior",
            f"task.checkpoint={checkpoint}",
            "task.sets=[er_d10]",
            "task.methods=[abs-corr,empty]",
            "task.graphs=2",
        ]
    )
    board = tmp_path / "run" / "tensorboard"
    scalars = events(board).Tags()["scalars"]
    for method in ("pfn", "abs-corr", "empty"):
        for key in ("auroc", "shd", "s_per_graph"):
            tag = f"compare/er_d10/{method}/{key}"
            assert tag in scalars and tag in metrics
        session = events(board / "er_d10" / method)
        assert {"hp/auroc", "hp/shd", "hp/s_per_graph"} <= set(session.Tags()["scalars"])
        plugins = session.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in plugins
    empty = events(board / "er_d10" / "empty").Scalars("hp/auroc")[0].value
    assert empty == pytest.approx(metrics["compare/er_d10/empty/auroc"]) == pytest.approx(0.5)
