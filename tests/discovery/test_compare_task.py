"""task=compare logs like every other run: scalars per method and set, one HParams session per method and the PFN's
reliability diagram; it reads the PFN's graph from calibrated probabilities, as task=discover does; the delta RMSE
it reports splits by how far the do-values reach."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from causal_engine.discovery.baselines import zero_delta
from causal_engine.discovery.calibration import Calibration, TableCalibration, write_calibration
from causal_engine.discovery.checkpoint import load_pfn
from causal_engine.discovery.compare import delta_rmse, run_pfn
from causal_engine.discovery.data import fixed_set
from causal_engine.discovery.discover import do_distance
from causal_engine.discovery.loss import delta_mask
from causal_engine.discovery.models import ModelD
from causal_engine.metrics import expected_calibration_error
from causal_engine.scm.prior import SeedPrior


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


def test_compare_writes_scalars_hparams_and_the_reliability_diagram(run_experiment, checkpoint, tmp_path) -> None:
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
    assert "compare/er_d10/reliability" in events(board).Tags()["images"]  # the PFN's reliability diagram
    assert (tmp_path / "run" / "figures" / "reliability_er_d10.png").stat().st_size > 0


def test_delta_rmse_splits_by_the_do_distance_into_parts_that_add_up() -> None:
    batches = fixed_set(num_graphs=4, batch_size=2, num_nodes=6, prior=SeedPrior(), seed=0)
    far = [do_distance(b) > 3.0 for b in batches]  # [B, Q] each
    assert any(f.any() for f in far) and any((~f).any() for f in far)  # the seed prior's do-values: both kinds
    near_rmse = delta_rmse(batches, zero_delta, lambda b: do_distance(b) <= 3.0)
    far_rmse = delta_rmse(batches, zero_delta, lambda b: do_distance(b) > 3.0)
    entries = [int((delta_mask(b) & f[..., None]).sum()) for b, f in zip(batches, far, strict=True)]
    total = sum(int(delta_mask(b).sum()) for b in batches)
    n_far = sum(entries)
    combined = ((total - n_far) * near_rmse**2 + n_far * far_rmse**2) / total
    assert combined == pytest.approx(delta_rmse(batches, zero_delta) ** 2)
    assert np.isnan(delta_rmse(batches, zero_delta, lambda b: do_distance(b) < 0))


def test_run_pfn_reads_the_graph_from_the_calibrated_probabilities(checkpoint) -> None:
    batches = fixed_set(num_graphs=4, batch_size=2, num_nodes=6, prior=SeedPrior(), seed=0)
    raw = run_pfn(checkpoint, batches, repeats=1)
    # a map that sends every probability below 0.2: no pair reaches p(i->j) + p(j->i) >= 0.5, so the graph is empty
    squash = Calibration((6,), ((0.0, 1.0),), ((0.0, 0.2),))
    write_calibration(checkpoint, TableCalibration(squash, squash), {})
    squashed = run_pfn(checkpoint, batches, repeats=1)
    edges = np.mean([int(b.adjacency[g].sum()) for b in batches for g in range(b.num_graphs)])
    assert squashed["shd"] == pytest.approx(edges) and squashed["f1"] == 0.0
    assert raw["shd"] != pytest.approx(edges)
    assert squashed["auroc"] == pytest.approx(raw["auroc"])  # a monotone map keeps the ranking
    probs = [torch.sigmoid(load_pfn(checkpoint).context(b).edge_logits).detach() for b in batches]
    labels = np.concatenate(
        [b.adjacency[g][~torch.eye(6, dtype=torch.bool)].numpy() for b in batches for g in range(2)]
    )
    scores = np.concatenate([0.2 * p[g][~torch.eye(6, dtype=torch.bool)].numpy() for p in probs for g in range(2)])
    assert squashed["ece"] == pytest.approx(expected_calibration_error(scores, labels), abs=1e-6)
