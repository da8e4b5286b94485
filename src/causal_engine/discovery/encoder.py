"""From samples to tokens: per-variable standardisation, node features, pairwise features, biased attention.

Everything here is permutation-equivariant: no feature depends on a node's index, so permuting the input
nodes permutes the tokens, the pairwise features and therefore every output. Every statistic is computed
on data standardised with the *observational* mean and standard deviation of each variable, so a column
measured in other units (x -> a x + c, a > 0) gives exactly the same features.

Node features (the notebook's six, made scale-free, plus two):
    0 obs_location   median of the standardised observational column (the notebook's b_mean, which is 0 after
                     standardisation; the median keeps the "where is the mass" information as skew)
    1 obs_spread     log(IQR / 1.349) (the notebook's b_std, which is 1 after standardisation; this is 0 for
                     a Gaussian and says how heavy or saturated the column is)
    2 int_shift      mean over regimes not targeting the node of the standardised mean shift (norm_i_mean)
    3 int_logstd     mean over those regimes of log(std_int / std_obs) (norm_i_std)
    4 query_value    the query row, standardised (norm_target)                          [query feature]
    5 query_target   1 where the query intervenes (int_mask)                               [query feature]
    6 query_do       the query's intervention value, standardised (0 elsewhere)         [query feature]
    7 int_max_shift  max over those regimes of |shift|;  8 targeted: share of regimes targeting the node;
    9 no_int         1 when the graph has no interventional regime at all.
Pairwise features for the ordered pair (i, j), i the candidate parent, j the candidate child:
    Pearson, Spearman and shrunk partial correlation of the observational columns; the standardised shift of j
    under do(i) (mean and mean |.|) and its slope per unit of standardised intervention value; log std ratio
    of j under do(i); whether i was intervened on at all; the transposed shift features (j's effect on i);
    and a diagonal flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from causal_engine.discovery.batch import DiscoveryBatch

NUM_NODE_FEATURES = 7  # context features 0-3, 7-9 (query features are separate)
NUM_QUERY_FEATURES = 3
NUM_PAIR_FEATURES = 12
_CLIP = 50.0  # standardised values beyond this carry no extra information and would only destabilise training
_EPS = 1e-6


@dataclass
class Standardised:
    """A batch in observational z-units, with the per-variable location and scale used to get there."""

    observational: Tensor  # [B, S_obs, d]
    interventional: Tensor  # [B, R, S_int, d]
    query: Tensor  # [B, Q, d]
    query_values: Tensor  # [B, Q, d]
    regime_values: Tensor  # [B, R, d]
    mean: Tensor  # [B, d]
    std: Tensor  # [B, d]


def _z(x: Tensor, mean: Tensor, std: Tensor, mask: Tensor) -> Tensor:
    return ((x - mean) / std).clamp(-_CLIP, _CLIP) * mask


def standardise(batch: DiscoveryBatch) -> Standardised:
    """Per graph and variable: subtract the observational mean, divide by the observational std."""
    obs = batch.observational  # [B, S, d]
    mean = obs.mean(1)  # [B, d]
    std = obs.std(1).clamp_min(_EPS)  # [B, d]; a constant column is rejected upstream for users' data
    node = batch.node_mask.float()  # [B, d]
    m, s = mean[:, None], std[:, None]
    return Standardised(
        observational=_z(obs, m, s, node[:, None]),
        interventional=_z(batch.interventional, m[:, None], s[:, None], node[:, None, None]),
        query=_z(batch.query, m, s, node[:, None]),
        query_values=_z(batch.query_values, m, s, (batch.query_targets & batch.node_mask[:, None]).float()),
        regime_values=_z(batch.regime_values, m, s, (batch.regime_targets & batch.node_mask[:, None]).float()),
        mean=mean,
        std=std,
    )


def _regime_stats(z: Standardised, batch: DiscoveryBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Masked mean and log-std of every regime's samples, and the regime weights. Shapes [B, R, d], [B, R]."""
    w = batch.int_sample_mask.float() * batch.regime_mask[:, :, None].float()  # [B, R, S]
    n = w.sum(2).clamp_min(1.0)  # [B, R]
    mean = (z.interventional * w[..., None]).sum(2) / n[..., None]  # [B, R, d]
    var = (((z.interventional - mean[:, :, None]) ** 2) * w[..., None]).sum(2) / (n[..., None] - 1).clamp_min(1)
    logstd = 0.5 * torch.log(var + 1e-4)  # [B, R, d]
    return mean, logstd, (w.sum(2) > 1).float()  # a regime needs 2 rows to have a spread


def _ranks(x: Tensor) -> Tensor:
    """Ranks along dim 1 (ties broken by order), standardised like the data."""
    r = x.argsort(1).argsort(1).float()
    return (r - r.mean(1, keepdim=True)) / r.std(1, keepdim=True).clamp_min(_EPS)


def _corr(x: Tensor, node: Tensor) -> Tensor:
    """Correlation of standardised columns [B, S, d] -> [B, d, d], zero for padding nodes."""
    c = x.transpose(1, 2) @ x / (x.shape[1] - 1)
    return c * node[:, :, None] * node[:, None, :]


def _partial_corr(corr: Tensor, node: Tensor, shrinkage: float) -> Tensor:
    """Partial correlations from the shrunk correlation matrix (padding nodes get an identity block)."""
    eye = torch.eye(corr.shape[-1], device=corr.device)
    pad_eye = eye * (1 - node)[:, None, :]
    prec = torch.linalg.inv((1 - shrinkage) * corr + shrinkage * eye * node[:, None, :] + pad_eye)
    dg = prec.diagonal(dim1=1, dim2=2).clamp_min(_EPS).sqrt()  # [B, d]
    return -prec / dg[:, :, None] / dg[:, None, :] * (1 - eye)


def _sorted_quantile(ordered: Tensor, f: float) -> Tensor:
    """Quantile f of sorted samples along dim 1, linear interpolation (torch.quantile's default)."""
    pos = f * (ordered.shape[1] - 1)
    lo, frac = int(pos), pos - int(pos)
    hi = min(lo + 1, ordered.shape[1] - 1)
    return ordered[:, lo] + frac * (ordered[:, hi] - ordered[:, lo])


def _features(batch: DiscoveryBatch, shrinkage: float) -> tuple[Tensor, Tensor, Tensor]:
    """Node context features [B, d, 7], query features [B, Q, d, 3] and pair features [B, d, d, 12]."""
    z = standardise(batch)
    node = batch.node_mask.float()  # [B, d]
    pair_mask = node[:, :, None] * node[:, None, :]  # [B, d, d]
    eye = torch.eye(batch.num_nodes, device=node.device)

    # Observational node shape.
    # Quartiles by sorting (torch.quantile refuses inputs above 16M elements; users' tables can be large).
    ordered = z.observational.sort(1).values  # [B, S, d]
    q = [_sorted_quantile(ordered, f) for f in (0.25, 0.5, 0.75)]  # 3 x [B, d]
    location = q[1]
    spread = torch.log((q[2] - q[0]) / 1.349 + 1e-3) * node

    # Interventional regimes.
    r_mean, r_logstd, r_ok = _regime_stats(z, batch)  # [B, R, d], [B, R, d], [B, R]
    targets = batch.regime_targets.float() * r_ok[..., None]  # [B, R, d]
    other = (1 - batch.regime_targets.float()) * r_ok[..., None]  # regimes where the node is not the target
    n_other = other.sum(1).clamp_min(1)  # [B, d]
    int_shift = (r_mean * other).sum(1) / n_other
    int_logstd = (r_logstd * other).sum(1) / n_other
    int_max = (r_mean.abs() * other).amax(1) if r_mean.shape[1] else torch.zeros_like(node)  # R may be 0
    n_regimes = r_ok.sum(1)  # [B]
    targeted = targets.sum(1) / n_regimes.clamp_min(1)[:, None]
    no_int = (n_regimes == 0).float()[:, None].expand_as(node)
    node_feats = torch.stack([location, spread, int_shift, int_logstd, int_max, targeted, no_int], -1)
    node_feats = node_feats * node[..., None]

    query_feats = torch.stack([z.query, batch.query_targets.float(), z.query_values], -1)
    query_feats = query_feats * node[:, None, :, None]

    # Pairwise: observational dependence.
    pearson = _corr(z.observational, node)
    spearman = _corr(_ranks(z.observational) * node[:, None], node)
    partial = _partial_corr(pearson, node, shrinkage)
    # Pairwise: effect of do(i) on j, over regimes targeting i where j is not a target.
    n_i = targets.sum(1).clamp_min(1)[:, :, None]  # [B, d, 1]
    ti = targets.transpose(1, 2)  # [B, d_i, R]
    shift = ti @ (r_mean * other) / n_i  # [B, i, j]
    abs_shift = ti @ (r_mean.abs() * other) / n_i
    logstd = ti @ (r_logstd * other) / n_i
    v = (z.regime_values * batch.regime_targets.float()).sum(-1, keepdim=True)  # [B, R, 1] do value (z-units)
    slope = ti @ (r_mean * v / (v**2 + 1) * other) / n_i
    has_int = (targets.sum(1) > 0).float()[:, :, None].expand_as(shift)
    pair = torch.stack(
        [
            pearson,
            spearman,
            partial,
            shift,
            abs_shift,
            slope,
            logstd,
            has_int,
            shift.transpose(1, 2),
            abs_shift.transpose(1, 2),
            slope.transpose(1, 2),
            eye.expand_as(shift),
        ],
        -1,
    )  # [B, d, d, 12]
    off = (1 - eye)[..., None]
    pair = torch.cat([pair[..., :-1] * off, pair[..., -1:]], -1) * pair_mask[..., None]
    return node_feats, query_feats, pair.clamp(-_CLIP, _CLIP)


class NodeEncoder(nn.Module):
    """Batch -> node tokens [B, d, D], query features [B, Q, d, 3] and pairwise features [B, d, d, F].

    Features carry no gradient (they are statistics of the data); only the projections are learned.
    """

    def __init__(self, d_model: int, shrinkage: float = 0.2):
        super().__init__()
        self.shrinkage = shrinkage
        self.node_proj = nn.Sequential(nn.Linear(NUM_NODE_FEATURES, d_model), nn.GELU(), nn.Linear(d_model, d_model))

    def forward(self, batch: DiscoveryBatch) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            node_feats, query_feats, pair = _features(batch, self.shrinkage)
        return self.node_proj(node_feats), query_feats, pair


class BiasedEncoderLayer(nn.Module):
    """Pre-norm transformer layer whose attention takes an additive bias per head: softmax(QK^T/sqrt(h) + bias).

    `nn.TransformerEncoderLayer` only accepts one mask for all batch items; the PFN needs a different bias
    per graph (pairwise features, model D's predicted DAG), so attention is written out with
    `scaled_dot_product_attention`, which accepts a float mask of shape [B, H, d, d].
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, ff_mult: int = 2):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(), nn.Linear(ff_mult * d_model, d_model))
        self.dropout = dropout

    def forward(self, x: Tensor, bias: Tensor, key_mask: Tensor) -> Tensor:
        """x [B, d, D]; bias [B, H, d, d] (query, key) or broadcastable; key_mask [B, d] bool (True = real)."""
        b, d, dm = x.shape
        h = self.norm1(x)
        q, k, v = self.qkv(h).view(b, d, 3, self.n_heads, dm // self.n_heads).permute(2, 0, 3, 1, 4)
        # Padding keys get -inf-like scores; a padding query still sees real keys, so no row is empty.
        mask = bias + torch.where(key_mask, 0.0, -1e9)[:, None, None, :]  # [B, H, d, d]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0)
        x = x + self.out(a.transpose(1, 2).reshape(b, d, dm))
        return x + self.ff(self.norm2(x))


class PairBias(nn.Module):
    """Pairwise features [B, d, d, F] -> one additive attention bias per layer and head, [L, B, H, d, d].

    The bias for query j attending to key i reads the features of the ordered pair (i, j), i.e. "is i a
    parent of j" - the direction in which information flows in the SCM.
    """

    def __init__(self, n_layers: int, n_heads: int, hidden: int = 32):
        super().__init__()
        self.n_layers, self.n_heads = n_layers, n_heads
        self.mlp = nn.Sequential(nn.Linear(NUM_PAIR_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, n_layers * n_heads))

    def forward(self, pair: Tensor) -> Tensor:
        b, d = pair.shape[:2]
        bias = self.mlp(pair.transpose(1, 2))  # [B, j, i, L*H]
        return bias.view(b, d, d, self.n_layers, self.n_heads).permute(3, 0, 4, 1, 2)


def scaled_init(module: nn.Module, n_layers: int) -> None:
    """GPT-2 style: shrink residual output projections by 1/sqrt(2L) so deep stacks start near identity."""
    for layer in module.modules():
        if isinstance(layer, BiasedEncoderLayer):
            layer.out.weight.data.mul_(1 / math.sqrt(2 * n_layers))
            layer.ff[-1].weight.data.mul_(1 / math.sqrt(2 * n_layers))
