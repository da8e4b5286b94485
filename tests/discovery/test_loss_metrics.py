"""The loss ignores padding; acyclicity is zero exactly on DAGs; graph metrics match hand-computed values."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import pytest
import torch
from torchmetrics.functional.classification import binary_auroc, binary_f1_score

from causal_engine import metrics as M
from causal_engine.discovery.batch import DiscoveryBatch, collate
from causal_engine.discovery.loss import PFNLoss, acyclicity
from causal_engine.discovery.models import ModelA, PFNOutput
from causal_engine.discovery.module import DiscoveryMetrics, true_delta_z
from causal_engine.graphs import predicted_edges

from .conftest import small_batch


def first_graphs(batch: DiscoveryBatch, n: int) -> DiscoveryBatch:
    return replace(batch, **{f.name: getattr(batch, f.name)[:n] for f in fields(batch)})


def test_loss_ignores_padding() -> None:
    small, large = small_batch(sizes=(5,), seed=3), small_batch(sizes=(8,), seed=4)
    padded = collate([small, large])
    torch.manual_seed(0)
    net = ModelA(d_model=32, n_heads=4, n_layers=1, n_delta_layers=1).eval()
    loss = PFNLoss(acyclic_warmup_steps=0, acyclic_ramp_steps=1)
    valid_pair = padded.node_mask[:, :, None] & padded.node_mask[:, None]
    with torch.no_grad():
        out = net(padded)
        # Garbage in every padded position must not move any term of the loss.
        noisy = PFNOutput(
            torch.where(valid_pair, out.edge_logits, 99.0), torch.where(padded.node_mask[:, None], out.delta, -77.0)
        )
        a = loss(out, padded, true_delta_z(padded), step=10)
        b = loss(noisy, padded, true_delta_z(padded), step=10)
        # The 5-node graphs padded to 8 nodes give the same loss as on their own.
        head = first_graphs(padded, 2)
        padded_small = loss(PFNOutput(out.edge_logits[:2], out.delta[:2]), head, true_delta_z(head), step=10)
        alone = loss(net(small), small, true_delta_z(small), step=10)
    for key in a:
        assert a[key].item() == pytest.approx(b[key].item(), abs=1e-6), key
        assert padded_small[key].item() == pytest.approx(alone[key].item(), rel=1e-4, abs=1e-5), key


def test_acyclicity_is_zero_on_a_dag_and_positive_on_a_cycle() -> None:
    dag = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.float)
    cycle = torch.tensor([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float)
    mask = torch.ones(2, 3, dtype=torch.bool)
    h = acyclicity(torch.stack([dag, cycle]), mask)
    assert h[0] == pytest.approx(0.0, abs=1e-6)
    # tr(exp(C)) for a 3-cycle C = sum_k tr(C^k)/k! = 3 * sum_m 1/(3m)! ; h = that - 3.
    trace = 3 * sum(1 / math.factorial(3 * m) for m in range(6))
    assert h[1] == pytest.approx(math.log1p((trace - 3) / 3), rel=1e-5)


def test_acyclicity_weight_warms_up_then_ramps() -> None:
    loss = PFNLoss(acyclic=0.4, acyclic_warmup_steps=100, acyclic_ramp_steps=200)
    assert [loss.acyclic_weight(s) for s in (0, 100, 200, 300, 10_000)] == pytest.approx([0, 0, 0.2, 0.4, 0.4])


def test_shd_counts_missing_extra_and_reversed_edges_once() -> None:
    true = torch.zeros(1, 4, 4)
    true[0, 0, 1] = true[0, 1, 2] = true[0, 2, 3] = 1  # 0->1->2->3
    pred = torch.zeros(1, 4, 4)
    pred[0, 1, 0] = 1  # reversed: 1
    pred[0, 1, 2] = 1  # correct
    pred[0, 0, 3] = 1  # extra: 1  (and 2->3 missing: 1)
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert M.shd(pred, true, mask).tolist() == [3.0]
    both = pred.clone()
    both[0, 0, 1] = 1  # 0<->1 predicted both ways where the truth is 0->1: one wrong pair
    assert M.shd(both, true, mask).tolist() == [3.0]


def test_shd_ignores_padding_and_diagonal() -> None:
    true = torch.zeros(1, 3, 3)
    pred = torch.ones(1, 3, 3)  # diagonal and padding full of edges
    mask = torch.tensor([[True, True, False]])
    assert M.shd(pred, true, mask).tolist() == [1.0]  # only the pair {0, 1} (predicted both ways)


def test_is_cyclic_on_hand_made_graphs() -> None:
    chain = torch.zeros(5, 5)
    chain[0, 1] = chain[1, 2] = chain[2, 3] = chain[3, 4] = 1
    long_cycle = chain.clone()
    long_cycle[4, 0] = 1
    padded_cycle = torch.zeros(5, 5)
    padded_cycle[3, 4] = padded_cycle[4, 3] = 1  # a 2-cycle among padding nodes
    mask = torch.tensor([[True] * 5, [True] * 5, [True, True, True, False, False]])
    assert M.is_cyclic(torch.stack([chain, long_cycle, padded_cycle]), mask).tolist() == [False, True, False]


def test_edge_scores_and_delta_errors_match_hand_computation() -> None:
    true = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    probs = torch.tensor([[[0.9, 0.8, 0.3], [0.4, 0.1, 0.2], [0.7, 0.6, 0.9]]])
    scores, target = M.masked_edges(probs, true, torch.ones(1, 3, dtype=torch.bool))
    assert scores.tolist() == pytest.approx([0.8, 0.3, 0.4, 0.2, 0.7, 0.6])
    # positives 0.8, 0.7; negatives 0.3, 0.4, 0.2, 0.6: every positive outranks every negative
    assert binary_auroc(scores, target).item() == pytest.approx(1.0)
    pred, tgt = torch.tensor([1.0, 2.0, 3.0, 99.0]), torch.tensor([1.0, 2.0, 5.0, 0.0])
    mask = torch.tensor([True, True, True, False])
    assert M.delta_rmse(pred, tgt, mask).item() == pytest.approx(math.sqrt(4 / 3))
    # SS_res = 4, mean 8/3, SS_tot = (25 + 4 + 49) / 9 = 78 / 9
    assert M.delta_r2(pred, tgt, mask).item() == pytest.approx(1 - 4 / (78 / 9))


def test_split_metrics_agree_with_the_pure_functions(mixed_batch) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        out = ModelA(d_model=32, n_heads=4, n_layers=1, n_delta_layers=1).eval()(mixed_batch)
    metric = DiscoveryMetrics()
    metric.update(out, mixed_batch, true_delta_z(mixed_batch))
    values = metric.compute()
    pred = predicted_edges(out.edge_probs, 0.5)
    assert values["shd"].item() == pytest.approx(
        M.shd(pred, mixed_batch.adjacency, mixed_batch.node_mask).mean().item()
    )
    scores, target = M.masked_edges(out.edge_probs, mixed_batch.adjacency, mixed_batch.node_mask)
    assert values["auroc"].item() == pytest.approx(binary_auroc(scores, target).item())
    predicted = M.masked_edges(pred.float(), mixed_batch.adjacency, mixed_batch.node_mask)[0]
    assert values["f1"].item() == pytest.approx(binary_f1_score(predicted, target).item())
    assert scores.numel() == 2 * (5 * 4) + 2 * (8 * 7)
