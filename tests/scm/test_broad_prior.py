"""The broad PFN prior: every family is drawn at its configured share, interventions cut or keep parents as
their kind says, and the counterfactual deltas are exact."""

from __future__ import annotations

import math

import pytest
import torch

from causal_engine.graphs import descendants
from causal_engine.scm.families import MECHANISM_FAMILIES, NOISE_FAMILIES, BroadSCM
from causal_engine.scm.graphs import GRAPH_TYPES, sample_dags
from causal_engine.scm.prior import BroadPrior, PriorError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_every_family_is_drawn_at_its_configured_share() -> None:
    mix = {
        "linear": 3.0,
        "rff": 1.0,
        "mlp_additive": 1.0,
        "mlp": 1.0,
        "sigmoid": 1.0,
        "polynomial": 1.0,
        "notebook": 2.0,
    }
    prior = BroadPrior(mechanisms=mix, num_obs=(20, 20), num_int_per_regime=(2, 2), num_queries=1)
    counts = dict.fromkeys(MECHANISM_FAMILIES, 0)
    noise_counts = torch.zeros(len(NOISE_FAMILIES))
    n = 0
    for seed in range(40):
        _, scms, noise = prior.sample_with_truth(25, 5, generator=gen(seed))
        for scm in scms:
            counts[scm.family] += scm.adjacency.shape[0]
        noise_counts += torch.bincount(noise, minlength=len(NOISE_FAMILIES))
        n += 25
    total = sum(mix.values())
    for family, weight in mix.items():
        p = weight / total
        assert abs(counts[family] / n - p) < 4 * math.sqrt(p * (1 - p) / n), family  # 4 binomial SEs
    p = 1 / len(NOISE_FAMILIES)
    assert ((noise_counts / n - p).abs() < 4 * math.sqrt(p * (1 - p) / n)).all()


def test_obs_only_share_hides_regimes_at_its_rate() -> None:
    prior = BroadPrior(obs_only_share=0.3, num_obs=(20, 20), num_int_per_regime=(2, 2), num_queries=1)
    hidden = torch.cat([~prior.sample(50, 6, generator=gen(s)).regime_mask.any(1) for s in range(8)]).float()
    se = math.sqrt(0.3 * 0.7 / hidden.numel())
    assert abs(hidden.mean().item() - 0.3) < 4 * se


@pytest.mark.parametrize("graph", GRAPH_TYPES)
def test_every_graph_family_is_acyclic_with_the_asked_density(graph: str) -> None:
    adj = sample_dags(200, 30, graph=graph, expected_parents=2.0, generator=gen(1))
    assert (torch.linalg.matrix_power(adj, 30) == 0).all()  # no directed cycle
    assert abs(adj.sum((1, 2)).mean().item() / 30 - 2.0) < 0.25  # ~2 parents per node (sw: a bit fewer)


def _linear_truth(scm: BroadSCM) -> torch.Tensor:
    """Effective weights W [B, d, d] (parent -> child) of a linear-family SCM: gain_j * w_kj."""
    batch, d, _ = scm.adjacency.shape
    w = torch.zeros(batch, d, d)  # [B, child, parent]
    w.scatter_(2, scm.parents, scm.params["w"] * scm.valid)
    return (w * scm.gain[:, :, None]).transpose(1, 2)


def test_linear_deltas_equal_the_total_effect_exactly() -> None:
    """Homoscedastic linear SCMs: delta_j = (v - x_t) [(I - W)^-1]_tj, the path-sum total effect."""
    prior = BroadPrior(
        mechanisms={"linear": 1}, hetero_share=0.0, num_obs=(300, 300), num_queries=4, intervention_z=(1.0, 1.5)
    )
    batch, scms, _ = prior.sample_with_truth(16, 7, generator=gen(3))
    (scm,) = scms
    total = torch.linalg.inv(torch.eye(7) - _linear_truth(scm).double())  # [B, d, d]
    target = batch.query_targets.float().argmax(-1)  # [B, Q]
    push = (batch.query_values - batch.query).double()[batch.query_targets].view(16, 4)  # [B, Q]
    expected = push[..., None] * total.gather(1, target[..., None].expand(-1, -1, 7))  # [B, Q, d]
    clamp_free = (batch.query.abs() < 19).all(-1) & ((batch.query + batch.delta).abs() < 19).all(-1)
    torch.testing.assert_close(batch.delta.double()[clamp_free], expected[clamp_free], rtol=1e-4, atol=1e-4)
    assert clamp_free.float().mean() > 0.9


def test_deltas_are_zero_off_descendants_and_exact_on_the_target_for_every_family() -> None:
    prior = BroadPrior(num_obs=(50, 50), num_queries=3)
    batch = prior.sample(64, 8, generator=gen(4))
    reach = descendants(batch.adjacency)
    target = batch.query_targets.float().argmax(-1)
    reach_q = reach.gather(1, target[..., None].expand(-1, -1, 8))
    assert (batch.delta[~reach_q & ~batch.query_targets] == 0).all()
    torch.testing.assert_close(
        batch.delta[batch.query_targets], (batch.query_values - batch.query)[batch.query_targets]
    )
    assert (batch.delta[reach_q] != 0).float().mean() > 0.5


def _regime_parent_pairs(soft_share: float):
    prior = BroadPrior(
        mechanisms={"linear": 1},
        soft_share=soft_share,
        obs_only_share=0.0,
        multi_target_share=0.0,
        hetero_share=0.0,
        num_obs=(100, 100),
        num_int_per_regime=(200, 200),
        intervention_fraction=(1.0, 1.0),
    )
    batch = prior.sample(8, 6, generator=gen(5))
    pairs = []  # (regime samples of the target [S], of one of its parents [S]) for each targeted node with a parent
    for b in range(8):
        for r in range(batch.regime_targets.shape[1]):
            t = int(batch.regime_targets[b, r].float().argmax())
            parents = batch.adjacency[b, :, t].nonzero().flatten()
            if parents.numel():
                pairs.append((batch.interventional[b, r, :, t], batch.interventional[b, r, :, int(parents[0])]))
    return pairs


def test_hard_interventions_cut_parents_and_soft_ones_keep_them() -> None:
    hard = _regime_parent_pairs(0.0)
    assert hard and all((target == target[0]).all() for target, _ in hard)  # do(x_t = v): one value, no parents
    soft = _regime_parent_pairs(1.0)
    # a shift keeps x_t's dependence on its parents: the residual after the parents' term is noise only
    corr = [torch.corrcoef(torch.stack([t, p]))[0, 1].abs() for t, p in soft]
    assert all(t.std() > 0 for t, _ in soft)
    assert torch.stack(corr).mean() > 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mechanisms": {"linear": 1, "relu": 1}}, r"data\.prior\.mechanisms.*relu"),
        ({"noises": {"gaussian": -1}}, r"data\.prior\.noises"),
        ({"graphs": {}}, r"data\.prior\.graphs"),
        ({"num_obs": (100, 50)}, r"data\.prior\.num_obs"),
        ({"intervention_fraction": (0.2, 1.5)}, r"data\.prior\.intervention_fraction"),
        ({"soft_share": 1.2}, r"data\.prior\.soft_share"),
        ({"num_queries": -1}, r"data\.prior\.num_queries"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict, match: str) -> None:
    with pytest.raises(PriorError, match=match):
        BroadPrior(**kwargs)


def test_values_stay_finite_at_d100_with_2000_rows() -> None:
    batch = BroadPrior(num_obs=(2000, 2000)).sample(4, 100, generator=gen(6))
    for t in (batch.observational, batch.interventional, batch.query, batch.delta, batch.regime_values):
        assert torch.isfinite(t).all()
    assert batch.observational.shape == (4, 2000, 100)
