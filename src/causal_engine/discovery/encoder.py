"""From samples to tokens: per-variable standardisation, node features, pairwise features, biased attention.

Everything here is permutation-equivariant: no feature depends on a node's index, so permuting the input
nodes permutes the tokens, the pairwise features and therefore every output. Every statistic is computed
on data standardised with the *observational* mean and standard deviation of each variable, so a column
measured in other units (x -> a x + c, a > 0) gives exactly the same features. With ``feature_space="copula"``
they are computed on each column's normal scores instead (ranks within the observational sample), so any
strictly increasing transform (log, ranks) gives exactly the same context features and therefore the same edges.
Tied values (discrete columns) share their mid-rank in both spaces, so the order of the rows never matters.

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
    and a diagonal flag (features 0-11); then structure statistics of the observational columns (12-28, see
    `_structure_features`): conditional independence and collider statistics from first-order partial
    correlations, node R², additive-noise fits in both directions with their residuals' heteroscedasticity,
    the dependence of i and j's residual given all other nodes, a pairwise LiNGAM score, and a nonlinear
    (Fourier-feature) dependence of i and j and of i and j's residual; and 1 / sqrt(S - 1) for S observational
    rows (29), the scale of chance dependence, which the other features cannot tell; the rank of |partial
    correlation| within row i and within column j (30, 31): how strong the pair is among the node's candidates.
The list only grows at its end: a checkpoint trained on a prefix of it loads with zero weights for the rest
(`PFNNet.widen_pair_inputs`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from causal_engine.discovery.batch import DiscoveryBatch

NUM_NODE_FEATURES = 7  # context features 0-3, 7-9 (query features are separate)
NUM_QUERY_FEATURES = 3
NUM_PAIR_FEATURES = 32
DIAGONAL_FEATURE = 11  # the diagonal flag: the one pair feature kept on the diagonal
FEATURE_SPACES = ("zscore", "copula")  # what the context statistics are computed on (see context_features)
_FREQUENCIES = (1.0, 2.0)  # of the Fourier views in `_nonlinear_dependence` (columns have unit variance)
_CLIP = 50.0  # standardised values beyond this carry no extra information and would only destabilise training
# A tied column's normal scores are stretched to a tie-free column's sd by at most this factor (a 99 % / 1 % binary
# column needs 3.8): a nearly constant column would otherwise put its few other values, and every interventional
# value off its tie, thousands of units out.
_MAX_STRETCH = 4.0
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


@dataclass
class ContextFeatures:
    """Everything the encoder reads from a dataset before any query (computed once per dataset)."""

    node: Tensor  # [B, d, 7] node context features
    pair: Tensor  # [B, d, d, 32] pairwise features
    mean: Tensor  # [B, d] observational location ...
    std: Tensor  # [B, d] ... and scale of every variable (the z-units of queries and deltas)


def _z(x: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """(x - mean) / std, clipped; `scale` = mask / std, so masked entries become exactly 0."""
    return (x - mean).mul_(scale).clamp_(-_CLIP, _CLIP)


def _centre(a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each column of a [B, S, d]: its mean [B, 1, d], the centred columns [B, S, d] and the sample sd [B, 1, d].

    The sd is a sum of squares of the centred columns: torch's std reducing the middle dimension is about ten
    times slower, a visible share of a small graph's inference."""
    mean = a.mean(1, keepdim=True)
    centred = a - mean
    return mean, centred, (centred.square().sum(1, keepdim=True) / max(a.shape[1] - 1, 1)).sqrt()


def _location_scale(batch: DiscoveryBatch) -> tuple[Tensor, Tensor]:
    """Observational mean and std per graph and variable, [B, d] each."""
    mean, _, std = _centre(batch.observational)  # [B, 1, d]
    # A constant column is rejected upstream for users' data; the clamp only guards padding nodes.
    return mean[:, 0], std[:, 0].clamp_min(_EPS)


def _node_scale(batch: DiscoveryBatch, std: Tensor) -> Tensor:
    return batch.node_mask.float() / std  # [B, d]; 0 on padding nodes


def standardise(batch: DiscoveryBatch) -> Standardised:
    """Per graph and variable: subtract the observational mean, divide by the observational std."""
    mean, std = _location_scale(batch)
    m, scale = mean[:, None], _node_scale(batch, std)[:, None]  # [B, 1, d]
    return Standardised(
        observational=_z(batch.observational, m, scale),
        interventional=_z(batch.interventional, m[:, None], scale[:, None]),
        query=_z(batch.query, m, scale),
        query_values=_z(batch.query_values, m, scale * (batch.query_targets & batch.node_mask[:, None])),
        regime_values=_z(batch.regime_values, m, scale * (batch.regime_targets & batch.node_mask[:, None])),
        mean=mean,
        std=std,
    )


BLOCK = 1 << 16  # elements per block of the large per-sample and per-pair passes (see `blocks`)


def blocks(graphs: int, rows: int, row_size: int, size: int | None = None) -> Iterator[tuple[slice, slice]]:
    """(graphs, rows) slices that cut a [graphs, rows, row_size] computation into blocks of about `size`
    elements (default BLOCK): whole graphs when a graph fits in a block, else one graph's rows in groups.

    The largest passes of inference (every interventional sample, every ordered pair of nodes) run block by
    block: a block's temporaries stay in cache and are small enough for the allocator to reuse, where a fresh
    multi-megabyte temporary per operation costs page faults that take longer than the arithmetic.
    """
    size = size or BLOCK
    per_graph = rows * row_size
    if per_graph <= size:
        step = size // max(per_graph, 1)
        for g in range(0, graphs, step):
            yield slice(g, g + step), slice(None)
        return
    step = max(1, size // row_size)
    for g in range(graphs):
        for i in range(0, rows, step):
            yield slice(g, g + 1), slice(i, i + step)


@dataclass
class _Columns:
    """A batch in the units its statistics are computed in (observational z-units or normal scores)."""

    ordered: Tensor  # [B, S, d] observational columns, sorted; zero on padding nodes
    order: Tensor  # [B, S, d] the sorting permutation (tied values are equal in every column below, so its
    # arbitrary order among ties changes nothing)
    regime_mean: Tensor  # [B, d, R] mean of every regime's samples ...
    regime_logstd: Tensor  # [B, d, R] ... and their log std
    regime_ok: Tensor  # [B, R] 1 where a regime has a spread (2 rows or more)
    regime_values: Tensor  # [B, R, d] do-values; zero off the targets and on padding nodes
    quartile_source: Tensor  # [B, S, d] the sorted values the location and spread features read
    ranks: Tensor | None  # [B, S, d] standardised mid-ranks of `ordered`; None when no column has ties


def _sample_weights(batch: DiscoveryBatch) -> tuple[Tensor, Tensor]:
    """Weights [B, R, S_int] (1 for a real row of a real regime) and the rows per regime [B, R]."""
    w = (batch.int_sample_mask & batch.regime_mask[:, :, None]).float()
    return w, w.sum(-1)


def _regime_stats(samples: Tensor, w: Tensor, n: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted mean and log-std over the samples of every regime: `samples` [..., R, S_int] with weights `w`
    and their sums `n` broadcastable to it -> [..., R] each. Overwrites `samples`.

    The variance is two-pass, because a regime's near-constant columns (saturated nodes) would lose every
    digit to cancellation in E[z^2] - E[z]^2.
    """
    mean = torch.linalg.vecdot(samples, w) / n.clamp_min(1.0)  # [..., R]
    var = torch.linalg.vecdot(samples.sub_(mean[..., None]).square_(), w) / (n - 1).clamp_min(1)
    return mean, 0.5 * torch.log(var + 1e-4)


def _zscore_columns(batch: DiscoveryBatch, mean: Tensor, std: Tensor) -> _Columns:
    """Every value standardised with its variable's observational mean and std (see `standardise`)."""
    m, scale = mean[:, None], _node_scale(batch, std)[:, None]  # [B, 1, d]
    # Quartiles by sorting (torch.quantile refuses inputs above 16M elements; users' tables can be large).
    ordered, order = _z(batch.observational, m, scale).sort(1)  # [B, S, d]
    interventional = _z(batch.interventional, m[:, None], scale[:, None])  # [B, R, S_int, d]
    w, n = _sample_weights(batch)
    r_mean, r_logstd = _regime_stats(interventional.permute(0, 3, 1, 2), w[:, None], n[:, None])  # [B, d, R]
    regime_values = _z(batch.regime_values, m, scale * (batch.regime_targets & batch.node_mask[:, None]))
    runs = _tied_runs(ordered, batch.node_mask)
    ranks = None if runs is None else _standard_mid_ranks(*runs)
    return _Columns(ordered, order, r_mean, r_logstd, (n > 1).float(), regime_values, ordered, ranks)


def _tied_runs(ordered: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor] | None:
    """For sorted columns [B, S, d]: first + last index + 1 of the run of equal values each entry belongs to,
    [B, S, d] (2k + 1 at index k of a column without ties), and which columns have ties [B, d]; None when no
    real column has a tie (continuous data, where the cheaper exact formulas hold).

    Ties are the user's discrete columns (a binary treatment, counts, a saturated sensor). Breaking them by the
    sort's order would give equal values different ranks that follow the rows' order in the file: a table
    sorted by one column would then show dependences that are not in the data.
    """
    same = ordered[:, 1:] == ordered[:, :-1]  # [B, S - 1, d]
    tied = same.any(1) & node_mask  # [B, d]
    if not bool(tied.any()):
        return None
    b, s, d = ordered.shape
    k = torch.arange(s, device=ordered.device).view(1, s, 1).expand(b, s, d)
    edge = torch.ones(b, 1, d, dtype=torch.bool, device=ordered.device)
    first = torch.where(torch.cat([edge, ~same], 1), k, 0).cummax(1).values  # [B, S, d] start of the run
    last = torch.where(torch.cat([~same, edge], 1), k, s - 1).flip(1).cummin(1).values.flip(1)  # its end
    return first + last + 1, tied


def _standard_mid_ranks(runs: Tensor, tied: Tensor) -> Tensor:
    """Mid-ranks (runs - 1) / 2 of sorted columns (ties share their mean rank), standardised per column,
    [B, S, d]; a column without ties gets 0..S-1 standardised by the exact formula of `_corr_pair`."""
    s = runs.shape[1]
    ranks = (runs.to(torch.float32) - 1) / 2 - (s - 1) / 2  # [B, S, d]; a mid-rank's mean is (S - 1) / 2
    exact = math.sqrt(s * (s + 1) / 12)
    sd = (ranks.square().sum(1) / max(s - 1, 1)).sqrt()  # [B, d]
    return ranks / torch.where(tied, sd, exact).clamp_min(_EPS)[:, None]


def _rank_scores(s: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normal scores for an observational sample of S rows, [2S + 1]: entry m is Phi^-1((m + 1) / (2S + 2)), the
    score of a value with n_below observations below it and n_at_or_below at or below it, m = their sum.
    Without ties, the row of rank r (0-based) is m = 2r + 1, Phi^-1((r + 1) / (S + 1)) (the odd entries), and
    a value between observations, k of them below, is m = 2k, Phi^-1((k + 1/2) / (S + 1)) (the even entries)."""
    return torch.special.ndtri(torch.arange(1, 2 * s + 2, dtype=dtype, device=device) / (2 * s + 2))


def _search(columns: Tensor, values: Tensor) -> Tensor:
    """Where every value v of `values` [..., N] falls in its column's sorted sample: the index
    c (S + 1) + n_below(v) into the flattened [..., S + 1], c the column's flat index and n_below(v) the number
    of the column's entries < v (what torch.searchsorted counts).

    `columns` [..., S + 1] (contiguous) holds each column's sorted sample in its first S entries; the last is
    padding, never read. A branch-free binary search: the count lies in [pos, pos + n], and each step halves n
    with one gather and one comparison, the same steps for every value. torch.searchsorted branches per value
    instead and mispredicts on samples in random order; this is 2-3x faster on the interventional samples.
    """
    s1 = columns.shape[-1]
    flat = columns.view(-1)
    start = torch.arange(0, flat.numel(), s1, dtype=torch.int32, device=values.device)  # column offsets
    pos = start.view(*columns.shape[:-1], 1).expand(values.shape).contiguous()  # [..., N]
    below = torch.empty_like(pos)
    # Each step: where the entry `half` past pos is < v, pos += half (a view of `flat` shifted by `half` saves
    # an addition per step). The last step compares the entry at pos itself.
    n = s1 - 1
    while n > 1:
        half = n // 2
        torch.lt(flat[half:].index_select(0, pos.view(-1)).view(values.shape), values, out=below)
        pos.add_(below, alpha=half)
        n -= half
    torch.lt(flat.index_select(0, pos.view(-1)).view(values.shape), values, out=below)
    return pos.add_(below)


def _copula_columns(batch: DiscoveryBatch) -> _Columns:
    """Every value of the batch as a normal score of its position in its column's observational sample.

    Observational row of rank r (0-based) -> Phi^-1((r + 1) / (S + 1)); an interventional sample or a do-value
    v -> Phi^-1((n_below(v) + 1/2) / (S + 1)), n_below = observational values < v. Only ranks enter, so any
    strictly increasing transform of a column (units, log, ranks themselves) gives the same scores.

    A score is a function of a count in 0..S, so it is read from a table of S + 1 scores per column (zero on
    padding nodes) at the index `_search` returns. The interventional samples go column by column, the layout
    of the search and of the regime statistics, in blocks (`blocks`): their scores never exist all at once.

    Ties (discrete columns): tied observations share the score of their mid-rank, and any value v scores
    Phi^-1((n_below(v) + n_at_or_below(v) + 1) / (2S + 2)), which is all of the above without ties; each tied
    column's scores are then centred and scaled to the sd of a tie-free column's scores (by at most `_MAX_STRETCH`;
    a constant column keeps its scores).
    Location and spread read the tie-free scores, the constants the model saw in training.
    """
    b, s, d = batch.observational.shape
    _, r, s_int, _ = batch.interventional.shape
    raw_sorted, order = batch.observational.sort(1)  # [B, S, d]
    node = batch.node_mask.to(raw_sorted.dtype)  # [B, d]
    scores_2s = _rank_scores(s, raw_sorted.dtype, raw_sorted.device)  # [2S + 1]: Phi^-1((m + 1) / (2S + 2))
    ladder = scores_2s[1::2].view(1, s, 1) * node[:, None]  # [B, S, d] the tie-free scores
    # NaN padding: never read by the search, and equal to no value in the run lookup below.
    columns = F.pad(raw_sorted.transpose(1, 2), (0, 1), value=math.nan)  # [B, d, S + 1]
    tied_runs = _tied_runs(raw_sorted, batch.node_mask)
    if tied_runs is None:
        ordered, ranks = ladder, None
        table = scores_2s[0::2] * node[..., None]  # [B, d, S + 1] by n_below
    else:
        runs, tied = tied_runs
        tied_scores = scores_2s[runs]  # [B, S, d] m = n_below + n_at_or_below of each observation
        mean = torch.where(tied, tied_scores.mean(1), 0.0)  # [B, d]
        sd = _centre(tied_scores)[2][:, 0]  # [B, d]; 0 for a constant column, whose scores stay as they are
        stretch = (scores_2s[1::2].std() / sd.clamp_min(_EPS)).clamp_max(_MAX_STRETCH)
        scale = node * torch.where(tied & (sd > 0), stretch, 1.0)  # [B, d]
        ordered, ranks = (tied_scores - mean[:, None]) * scale[:, None], _standard_mid_ranks(runs, tied)
        # A value v with k = n_below(v) is either between observations (m = 2k) or equal to the k-th sorted one,
        # the first of its run (m = that observation's): entries 2k and 2k + 1 of a [B, d, 2S + 2] table.
        between = (scores_2s[0::2] - mean[..., None]) * scale[..., None]  # [B, d, S + 1]
        table = torch.stack([between, F.pad(ordered.transpose(1, 2), (0, 1))], -1).flatten(2)

    w, n = _sample_weights(batch)  # [B, R, S_int], [B, R]
    r_mean, r_logstd, regime_values = (node.new_empty(b, d, r) for _ in range(3))  # [B, d, R]
    for g, j in blocks(b, d, r * (s_int + 1)):
        # Every column's samples, regime by regime, then its R do-values: [b', d', R S_int + R].
        values = torch.cat(
            [batch.interventional[g, ..., j].permute(0, 3, 1, 2).flatten(2), batch.regime_values[g, :, j].mT], -1
        )
        index = _search(columns[g, j], values)  # c (S + 1) + n_below: the entry at index is the first >= v
        if tied_runs is not None:  # c (2S + 2) + 2 n_below + (v equals that entry)
            equal = columns[g, j].reshape(-1).index_select(0, index.view(-1)).view(values.shape) == values
            index = equal.to(index.dtype).add_(index, alpha=2)
        scores = table[g, j].reshape(-1).index_select(0, index.view(-1)).view(values.shape)
        samples = scores[..., : r * s_int].unflatten(-1, (r, s_int))  # [b', d', R, S_int]
        r_mean[g, j], r_logstd[g, j] = _regime_stats(samples, w[g, None], n[g, None])
        regime_values[g, j] = scores[..., r * s_int :]
    regime_values = regime_values.transpose(1, 2) * batch.regime_targets  # [B, R, d]
    return _Columns(ordered, order, r_mean, r_logstd, (n > 1).float(), regime_values, ladder, ranks)


def _corr_pair(columns: _Columns, node: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pearson correlation of the columns and Spearman correlation (Pearson of the standardised ranks), [B, d, d]
    each, zero for padding nodes, and the columns in row order [B, S, d].

    The ranks are the inverse of the sorting permutation: sorted, they are 0..S-1 in every column, with mean
    (S-1)/2 and std sqrt(S(S+1)/12) known exactly (columns with ties bring their own mid-ranks, `columns.ranks`).
    The sorted columns and the sorted standardised ranks are put back in row order by one scatter, and both
    correlations come from one batched product.
    """
    s = columns.ordered.shape[1]
    if columns.ranks is None:
        ranks = torch.arange(s, dtype=columns.ordered.dtype, device=node.device)
        ranks = ((ranks - (s - 1) / 2) / max(math.sqrt(s * (s + 1) / 12), _EPS)).view(1, s, 1)  # [1, S, 1]
    else:
        ranks = columns.ranks  # [B, S, d] mid-ranks of tied columns
    ordered = torch.stack([columns.ordered, ranks * node[:, None]], 1)  # [B, 2, S, d]
    x = torch.empty_like(ordered).scatter_(2, columns.order[:, None].expand_as(ordered), ordered)
    pearson, spearman = (x.transpose(2, 3) @ x / (s - 1)).unbind(1)  # [B, d, d] each
    return pearson, spearman, x[:, 0]


def _precision(corr: Tensor, node: Tensor, shrinkage: float) -> Tensor:
    """Inverse of the shrunk correlation matrix [B, d, d] (padding nodes get an identity block)."""
    eye = torch.eye(corr.shape[-1], device=corr.device)
    pad_eye = eye * (1 - node)[:, None, :]
    return torch.linalg.inv((1 - shrinkage) * corr + shrinkage * eye * node[:, None, :] + pad_eye)


def _partial_corr(prec: Tensor) -> Tensor:
    """Partial correlations [B, d, d] from a precision matrix (zero diagonal)."""
    eye = torch.eye(prec.shape[-1], device=prec.device)
    dg = prec.diagonal(dim1=1, dim2=2).clamp_min(_EPS).sqrt()  # [B, d]
    return -prec / dg[:, :, None] / dg[:, None, :] * (1 - eye)


def first_order_structure(corr: Tensor, node: Tensor) -> tuple[Tensor, Tensor]:
    """From the first-order partial correlations rho_ij.k: (min_k |rho_ij.k| [B, i, j], the conditional
    independence a separating node would show, and max_k |rho_ik.j| - |rho_ik| [B, i, j], how much conditioning
    on j makes i dependent on some k: j a collider of i and k, so i -> j). k ranges over the real nodes other than
    i and j; without one, the first is |rho_ij| and the second 0."""
    ik, jk = corr[:, :, None, :], corr[:, None, :, :]  # [B, i, 1, k], [B, 1, j, k]
    first = torch.mul(ik, jk).sub_(corr[..., None]).neg_()  # [B, i, j, k] c_ij - c_ik c_jk
    first.mul_(((1 - ik**2) * (1 - jk**2)).clamp_min_(1e-6).rsqrt_()).clamp_(-1.0, 1.0).abs_()  # |rho_ij.k|
    padding = None if bool(node.all()) else node == 0  # [B, d]
    # first[b, i, k, j] = |rho_ik.j|: its gain over |rho_ik|, maximised over the real k other than i and j.
    gain = first - corr.abs()[..., None]
    gain.diagonal(dim1=1, dim2=2).fill_(-torch.inf)  # k == i
    gain.diagonal(dim1=2, dim2=3).fill_(-torch.inf)  # k == j
    if padding is not None:
        gain.masked_fill_(padding[:, None, :, None], -torch.inf)
    collider = gain.amax(2)
    # min over the real k other than i and j of |rho_ij.k| (the layout [i, j, k]).
    first.diagonal(dim1=1, dim2=3).fill_(torch.inf)  # k == i
    first.diagonal(dim1=2, dim2=3).fill_(torch.inf)  # k == j
    if padding is not None:
        first.masked_fill_(padding[:, None, None, :], torch.inf)
    min_ci = first.amin(-1)
    min_ci = torch.where(min_ci.isinf(), corr.abs(), min_ci)
    return min_ci, torch.where(collider.isinf(), 0.0, collider)


def _standard(a: Tensor) -> Tensor:
    """Each column of a [B, S, d] centred and scaled to unit variance (constant columns stay zero)."""
    _, centred, sd = _centre(a)
    return centred / sd.clamp_min(_EPS)


def _additive_noise(x: Tensor, node: Tensor, exact: bool = False) -> list[Tensor]:
    """Additive-noise fits of every column j on a cubic in every column i, in closed form: [B, i, j] each of
    R² of the fit, and the residual r's heteroscedasticity in x_i, cov(x_i, r²) and cov(x_i², r²), each over
    sd(.) E[r²] (zero when the noise is independent of the cause, as in the causal direction of an additive
    noise model).

    Everything is a moment E[x_i^p x_j^q] (p <= 8, q <= 2), so no [S, d, d] residual is ever formed: r = x_j -
    X_i beta with X_i = (1, x_i, x_i², x_i³) and beta from the 4 x 4 normal equations.

    `exact`: the moments in float64, for batches with tied columns. A column with few values makes the cubic design
    singular; the ridge keeps the solve finite, but float32 rounding in its near-null direction is amplified by
    1 / ridge into the heteroscedasticity terms (they would move by 0.3 when the rows were reordered).
    """
    b, s, d = x.shape
    dtype = x.dtype
    if exact:
        x, node = x.double(), node.double()
    x = x.clamp(-5.0, 5.0)
    powers = torch.cat([x**p for p in range(6)], 2)  # [B, S, 6d]: x_i^p at p d + i
    cross = powers.transpose(1, 2) @ torch.cat([x, x * x], 2) / s  # [B, 6d, 2d]
    cross = cross.view(b, 6, d, 2, d).permute(0, 3, 2, 4, 1)  # [B, q, i, j, p] = E[x_i^p x_j^(q+1)]
    m = torch.stack([(x**p).mean(1) for p in range(9)], -1)  # [B, d, 9] E[x^p]
    idx = torch.arange(4, device=x.device)
    idx = idx[:, None] + idx  # [4, 4] a + b
    eye4 = torch.eye(4, dtype=m.dtype, device=x.device)
    ridge = 1e-4  # a tied column's cubic design is singular (a binary one spans only 1 and x_i)
    gram_inv = torch.linalg.inv(m[..., idx] + (ridge + (1 - node))[..., None, None] * eye4)  # [B, i, 4, 4]
    rhs = cross[:, 0, ..., :4]  # [B, i, j, 4] E[x_i^a x_j]
    beta = rhs @ gram_inv  # [B, i, j, 4] (the Gram matrix is symmetric; padding nodes get the identity)
    m_j, m_i = m[:, None], m[:, :, None]  # [B, 1, j, 9], [B, i, 1, 9]
    var_j = (m_j[..., 2] - m_j[..., 1] ** 2).clamp_min(_EPS)
    # E[r²] = E[x_j²] - 2 beta'rhs + beta'G beta, and beta'G beta = beta'rhs - ridge |beta|² at the ridge solution.
    err = (m_j[..., 2] - (beta * rhs).sum(-1) - ridge * beta.square().sum(-1)).clamp_min(1e-3 * var_j)

    def moment_r2(k: int) -> Tensor:
        """E[x_i^k r²] = E[x_i^k x_j²] - 2 sum_a beta_a E[x_i^(a+k) x_j] + beta' E[x_i^(a+b+k)] beta."""
        linear = (beta * cross[:, 0, ..., k : k + 4]).sum(-1)
        return cross[:, 1, ..., k] - 2 * linear + ((beta @ m[..., idx + k]) * beta).sum(-1)

    sd1 = (m_i[..., 2] - m_i[..., 1] ** 2).clamp_min(_EPS).sqrt()
    sd2 = (m_i[..., 4] - m_i[..., 2] ** 2).clamp_min(_EPS).sqrt()
    het1 = (moment_r2(1) - m_i[..., 1] * err) / (sd1 * err)
    het2 = (moment_r2(2) - m_i[..., 2] * err) / (sd2 * err)
    return [(1 - err / var_j).to(dtype), het1.clamp(-10, 10).to(dtype), het2.clamp(-10, 10).to(dtype)]


def _fourier(a: Tensor) -> Tensor:
    """Bounded nonlinear views of the columns of a [B, S, d]: sin and cos at each of `_FREQUENCIES`, each
    standardised, [B, S, K d] with view k of column i at k d + i (K = 2 len(_FREQUENCIES))."""
    return _standard(torch.cat([f(w * a) for w in _FREQUENCIES for f in (torch.sin, torch.cos)], 2))


def _nonlinear_dependence(x: Tensor, resid: Tensor) -> tuple[Tensor, Tensor]:
    """Dependence that correlation misses (y = x², a sine, a GP draw), [B, i, j] each for (x_i, x_j) and for
    (x_i, resid_j): the root mean squared correlation between the K Fourier views of the two columns, less its
    mean 1 / (S - 1) under independence (so about zero for independent columns at any sample size).

    A finite-feature version of HSIC with a translation-invariant kernel (random Fourier features, Rahimi &
    Recht 2007, with fixed frequencies so it is deterministic); on normal scores it is unchanged by monotone
    transforms. One product serves both: [B, K d, S] @ [B, S, 2 K d].
    """
    b, s, d = x.shape
    k, dof = 2 * len(_FREQUENCIES), max(s - 1, 1)
    phi = _fourier(x)  # [B, S, K d]
    cross = phi.transpose(1, 2) @ torch.cat([phi, _fourier(resid)], 2) / dof  # [B, K d, 2 K d]
    power = cross.view(b, k, d, 2, k, d).square().mean((1, 4)) - 1 / dof  # [B, i, 2, j]
    dep = power.clamp_min(0).sqrt()
    return dep[:, :, 0], dep[:, :, 1]


def _structure_features(x: Tensor, corr: Tensor, prec: Tensor, node: Tensor, tied: bool) -> list[Tensor]:
    """The structure statistics of the observational columns x [B, S, d] (row order), 17 x [B, i, j] (`tied`: some
    column has ties, see `_additive_noise`):

    min_k |rho_ij.k| and the collider gains of j and of i (`first_order_structure`); R² of i and of j given all
    other nodes (1 - 1 / P_ii of the shrunk precision P); additive-noise R², cov(x_i, r²) and cov(x_i², r²) of j
    on i and of i on j (`_additive_noise`); the dependence of x_i and j's residual given all other nodes, and its
    transpose (a node's residual is independent of its parents, not of its children, outside the linear-Gaussian
    case); pairwise LiNGAM with a tanh nonlinearity (Hyvärinen & Smith 2013; positive favours i -> j); the
    nonlinear dependence of x_i and x_j, of x_i and j's residual, and its transpose (`_nonlinear_dependence`).
    """
    s = x.shape[1]
    min_ci, collider = first_order_structure(corr, node)
    r2 = (1 - 1 / prec.diagonal(dim1=1, dim2=2).clamp_min(1.0)) * node  # [B, d]
    d = r2.shape[-1]
    anm_r2, het1, het2 = _additive_noise(x, node, exact=tied)
    resid = _standard(x @ prec / prec.diagonal(dim1=1, dim2=2)[:, None].clamp_min(_EPS))  # [B, S, d]
    resid_sq = _standard(resid**2)
    dep = ((_standard(x).transpose(1, 2) @ resid_sq).abs() + (_standard(x * x).transpose(1, 2) @ resid_sq).abs()) / (
        2 * (s - 1)
    )  # [B, i, j]
    lingam = corr * (x.transpose(1, 2) @ torch.tanh(x) - torch.tanh(x).transpose(1, 2) @ x) / s
    nonlinear, nonlinear_resid = _nonlinear_dependence(x, resid)
    return [
        min_ci,
        collider,
        collider.transpose(1, 2),
        r2[:, :, None].expand(-1, d, d),
        r2[:, None, :].expand(-1, d, d),
        anm_r2,
        anm_r2.transpose(1, 2),
        het1,
        het1.transpose(1, 2),
        het2,
        het2.transpose(1, 2),
        dep,
        dep.transpose(1, 2),
        lingam,
        nonlinear,
        nonlinear_resid,
        nonlinear_resid.transpose(1, 2),
    ]


def row_rank(a: Tensor, node: Tensor) -> Tensor:
    """Rank of a[b, i, j] among the real k != i of row i, scaled to [0, 1] (1 = the row's largest), [B, i, j].

    The diagonal and padding entries are set below every real one, counted and taken off again."""
    d = a.shape[-1]
    eye = torch.eye(d, device=a.device)
    real = (1 - eye) * node[:, None, :]  # [B, i, k] the real candidates of row i
    a = torch.where(real > 0, a, -1.0)
    below = (a[..., None, :] < a[..., :, None]).sum(-1)  # [B, i, j] entries of row i below a_ij
    n = node.sum(1)[:, None, None]  # [B, 1, 1]
    return ((below - (d - n + 1)).clamp_min(0) / (n - 2).clamp_min(1)).clamp_max(1.0)


def _sorted_quantile(ordered: Tensor, f: float) -> Tensor:
    """Quantile f of sorted samples along dim 1, linear interpolation (torch.quantile's default)."""
    pos = f * (ordered.shape[1] - 1)
    lo, frac = int(pos), pos - int(pos)
    hi = min(lo + 1, ordered.shape[1] - 1)
    return ordered[:, lo] + frac * (ordered[:, hi] - ordered[:, lo])


def context_features(batch: DiscoveryBatch, shrinkage: float, feature_space: str = "zscore") -> ContextFeatures:
    """Node context features [B, d, 7] and pair features [B, d, d, 32] of a batch (see the module docstring).

    ``feature_space="zscore"``: statistics of each column standardised with its observational mean and sd (invariant
    to x -> a x + c). ``feature_space="copula"``: statistics of the columns' normal scores (``_copula_columns``),
    invariant to any strictly increasing transform of a column; location and spread are then constants, and the
    shifts of interventions are in probit units. Queries and deltas stay in z-units either way (``mean``/``std``).

    Cost: one sort of the observational samples (quartiles and Spearman ranks share it) and a few passes over
    the interventional samples (standardise or score, regime means, regime spreads); a few products over the
    observational rows (the additive-noise moments, the residual and Fourier-view dependence); the first-order partial
    correlations and the partial-correlation ranks, [B, d, d, d]; everything else is [B, d, d].
    """
    if feature_space not in FEATURE_SPACES:
        raise ValueError(f"model.net.feature_space must be one of {FEATURE_SPACES}, got {feature_space!r}")
    mean, std = _location_scale(batch)
    node = batch.node_mask.float()  # [B, d]
    eye = torch.eye(batch.num_nodes, device=node.device)
    columns = _copula_columns(batch) if feature_space == "copula" else _zscore_columns(batch, mean, std)

    # Observational node shape.
    q = [_sorted_quantile(columns.quartile_source, f) for f in (0.25, 0.5, 0.75)]  # 3 x [B, d]
    location = q[1]
    spread = torch.log((q[2] - q[0]) / 1.349 + 1e-3) * node

    # Interventional regimes.
    r_mean, r_logstd = columns.regime_mean.transpose(1, 2), columns.regime_logstd.transpose(1, 2)  # [B, R, d]
    r_ok, regime_values = columns.regime_ok, columns.regime_values  # [B, R], [B, R, d]
    is_target = batch.regime_targets.float()
    targets = is_target * r_ok[..., None]  # [B, R, d]
    other = (1 - is_target) * r_ok[..., None]  # regimes where the node is not the target
    n_other = other.sum(1).clamp_min(1)  # [B, d]
    shifted, abs_shifted, logstd_other = r_mean * other, r_mean.abs() * other, r_logstd * other  # [B, R, d]
    int_shift = shifted.sum(1) / n_other
    int_logstd = logstd_other.sum(1) / n_other
    int_max = abs_shifted.amax(1) if r_mean.shape[1] else torch.zeros_like(node)  # R may be 0
    n_regimes = r_ok.sum(1)  # [B]
    targeted = targets.sum(1) / n_regimes.clamp_min(1)[:, None]
    no_int = (n_regimes == 0).float()[:, None].expand_as(node)
    node_feats = torch.stack([location, spread, int_shift, int_logstd, int_max, targeted, no_int], -1)
    node_feats = node_feats * node[..., None]

    # Pairwise: observational dependence.
    pearson, spearman, x = _corr_pair(columns, node)
    prec = _precision(pearson, node, shrinkage)
    partial = _partial_corr(prec)
    # Pairwise: effect of do(i) on j, over regimes targeting i where j is not a target.
    n_i = targets.sum(1).clamp_min(1)[:, :, None]  # [B, d, 1]
    ti = targets.transpose(1, 2)  # [B, d_i, R]
    v = (regime_values * is_target).sum(-1, keepdim=True)  # [B, R, 1] do value (z-units)
    # One product for the four regime averages: [B, i, R] @ [B, R, 4d] -> [B, i, 4d].
    effects = ti @ torch.cat([shifted, abs_shifted, logstd_other, shifted * (v / (v**2 + 1))], -1) / n_i
    shift, abs_shift, logstd, slope = effects.split(batch.num_nodes, -1)  # 4 x [B, i, j]
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
            *_structure_features(x, pearson, prec, node, tied=columns.ranks is not None),
            # The null sd of a correlation, 1 / sqrt(S - 1): how far from zero these statistics wander by chance.
            shift.new_full((), 1 / math.sqrt(max(x.shape[1] - 1, 1))).expand_as(shift),
            row_rank(partial.abs(), node),
            row_rank(partial.abs().mT, node).mT,
        ],
        -1,
    )  # [B, d, d, 32]
    return ContextFeatures(node=node_feats, pair=_placed(pair, node).clamp_(-_CLIP, _CLIP), mean=mean, std=std)


def _placed(pair: Tensor, node: Tensor) -> Tensor:
    """Pair features [B, d, d, F] kept on the off-diagonal real pairs only, with the diagonal flag (the one feature
    on the diagonal) set; padding pairs are zero. In place."""
    eye = torch.eye(pair.shape[1], device=pair.device)
    pair_mask = node[:, :, None] * node[:, None, :]  # [B, d, d]
    pair *= ((1 - eye) * pair_mask)[..., None]  # off-diagonal real pairs ...
    pair[..., DIAGONAL_FEATURE] = eye * pair_mask  # ... and the flag, which lives on the diagonal
    return pair


def query_features(
    query: Tensor, targets: Tensor, values: Tensor, mean: Tensor, std: Tensor, node_mask: Tensor
) -> Tensor:
    """Query rows [B, Q, d] (with their intervention targets and values) -> features [B, Q, d, 3] in the
    context's z-units: standardised row, intervention flag, standardised do-value (0 elsewhere)."""
    m, scale = mean[:, None], (node_mask.float() / std)[:, None]  # [B, 1, d]
    z_query = _z(query, m, scale)
    z_values = _z(values, m, scale * (targets & node_mask[:, None]))
    return torch.stack([z_query, targets.float(), z_values], -1) * node_mask[:, None, :, None].float()


class QuantileNorm(nn.Module):
    """Each pair feature mapped to the normal score of its place among the prior's values of that feature:
    piecewise linear between K quantiles of the prior (`knots`, fitted once on prior draws by `fit`), bounded
    beyond the end ones, the identity before `fit`.

    Why: the statistics are heavy-tailed and crowd near zero, and a network reading them raw resolves the
    crowded middle poorly; a tree model, which only sees each feature's order, does not care. Mapped through
    their prior quantiles the features reach the network evenly spread and bounded, as a tree would split them.
    The knots are buffers, so a checkpoint carries the map it was trained with.

    Repeated knots (a value many prior draws share exactly: a statistic clamped at 0, a flag) are ties: each
    maps to the normal score of its run's mean level, as a mid-rank would, so the map stays continuous. A step
    there would send a value 1e-7 above the tie half the normal range away, and float rounding that depends on
    the rows' order (or the platform) would move edge probabilities.
    """

    def __init__(self, num_features: int, num_knots: int):
        super().__init__()
        if num_knots < 2:
            raise ValueError(f"model.net.pair_norm_knots must be 0 (off) or at least 2, got {num_knots}")
        self.register_buffer("knots", torch.zeros(num_features, num_knots))  # [F, K]
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        # The level (k + 1/2) / K of knot k: a constant of K, so not stored in checkpoints.
        levels = (torch.arange(num_knots, dtype=torch.float64) + 0.5) / num_knots
        self.register_buffer("levels", levels, persistent=False)  # [K]

    @torch.no_grad()
    def fit(self, features: Tensor) -> None:
        """The knots: K quantiles at levels (k + 1/2) / K of each feature over prior draws `features` [N, F]."""
        f, k = self.knots.shape
        rows = features.reshape(-1, f)[:: max(1, features.numel() // (f * 1_000_000))].double()  # <= ~1M rows
        levels = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        self.knots.copy_(torch.quantile(rows, levels, dim=0).T)
        self.fitted.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        """Features [..., F] -> normal scores [..., F] within +-Phi^-1(1 - 1/(2K)); unchanged before `fit`.

        Knot k maps to the normal score of level (k + 1/2) / K (of its run's mean level when repeated), linearly
        in between and constant beyond the end knots. The search is `_search`'s branch-free one and the scores a
        [F, K] table: torch.searchsorted and ndtri over every pair and feature would cost more than the trunk on
        a 50-node graph. The table is built once per call and the rows mapped in blocks (`blocks`), whose
        temporaries stay in cache: on a batch of 50-node graphs this takes about 40 % off one whole pass."""
        if not bool(self.fitted):
            return x
        f = self.knots.shape[0]
        flat = x.reshape(-1, f)  # [N, F]
        out = torch.empty_like(flat)
        columns, scores = F.pad(self.knots, (0, 1)), self.knot_scores()  # [F, K + 1]: `_search` never reads the last
        for _, rows in blocks(1, flat.shape[0], f):
            out[rows] = self._mapped(flat[rows], columns, scores)
        return out.view(x.shape)

    def _mapped(self, x: Tensor, columns: Tensor, scores: Tensor) -> Tensor:
        """Rows [N, F] -> their normal scores [N, F], given the padded knots and their scores (`forward`)."""
        f, k = self.knots.shape
        flat = x.T.contiguous()  # [F, N]
        offset = torch.arange(0, f * (k + 1), k + 1, dtype=torch.int32, device=x.device)[:, None]  # [F, 1]
        idx = (_search(columns, flat) - offset).clamp_(1, k - 1)  # knots below each value: segment [idx - 1, idx]
        low, high = self.knots.gather(1, idx - 1), self.knots.gather(1, idx)
        share = ((flat - low) / (high - low).clamp_min(1e-12)).clamp_(0.0, 1.0)  # within a run both ends agree
        return torch.lerp(scores.gather(1, idx - 1), scores.gather(1, idx), share).T

    def knot_scores(self) -> Tensor:
        """The normal score of every knot [F, K]: of its level, or of its run's mean level when it is repeated."""
        same = (self.knots[:, :, None] == self.knots[:, None, :]).to(self.levels.dtype)  # [F, K, K] tied knots
        return torch.special.ndtri(same @ self.levels / same.sum(-1)).to(self.knots.dtype)


class NodeEncoder(nn.Module):
    """Batch -> node tokens [B, d, D] and its context features (pairwise [B, d, d, F], location, scale).

    Features carry no gradient (they are statistics of the data); only the projections are learned. With
    `pair_norm_knots` > 0 the pair features go through a `QuantileNorm` first (off-diagonal real pairs; the
    diagonal keeps its flag, padding stays zero).
    """

    def __init__(self, d_model: int, shrinkage: float = 0.2, feature_space: str = "zscore", pair_norm_knots: int = 0):
        super().__init__()
        if feature_space not in FEATURE_SPACES:
            raise ValueError(f"model.net.feature_space must be one of {FEATURE_SPACES}, got {feature_space!r}")
        self.shrinkage, self.feature_space = shrinkage, feature_space
        self.node_proj = nn.Sequential(nn.Linear(NUM_NODE_FEATURES, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.pair_norm = QuantileNorm(NUM_PAIR_FEATURES, pair_norm_knots) if pair_norm_knots else None

    def forward(self, batch: DiscoveryBatch) -> tuple[Tensor, ContextFeatures]:
        with torch.no_grad():
            feats = context_features(batch, self.shrinkage, self.feature_space)
            if self.pair_norm is not None:
                feats.pair = _placed(self.pair_norm(feats.pair), batch.node_mask.float())  # [B, d, d, F]
        return self.node_proj(feats.node), feats


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
