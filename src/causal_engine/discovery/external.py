"""Out-of-prior tables: structural-equation simulators written outside this project, as `GraphData`.

An amortised model is only as good as its prior; these generators test the causal PFN (and the boosted pairwise
baseline) on data that no training run here ever drew. Three packages from the index (the `baselines` extra):

- `sempler` (Gamella et al.): `sempler-linear`, a linear-Gaussian SCM (`LGANM`) on an Erdős–Rényi DAG
  (`generators.dag_avg_deg`) with weights of random sign and magnitude in [0.5, 2] and noise variances in
  [0.5, 2]; `sempler-anm`, its additive-noise model (`ANM`) on the same graphs with sums of random nonlinear
  parent terms (tanh, sine, softplus, cube, shifted square) and Laplace, uniform or Gaussian noise. Both support
  interventions: with `interventions > 0`, that many single-node hard interventions, each its own regime, set
  the target to N(m, 0.1²) with m at ±(2 to 4) observational standard deviations from the target's mean.
- `cdt` (CausalDiscoveryToolbox, Kalainathan et al.): `cdt-<mechanism>` for its `AcyclicGraphGenerator`
  mechanisms (`CDT_MECHANISMS`), Gaussian-mixture root causes,
  observational only (the generator has no interventions).
- `gcastle` (Huawei Noah's Ark, Zhang et al. 2021): `gcastle-<sem>` for the SEMs of its `IIDSimulation`
  (`GCASTLE_SEMS`): linear with Gaussian, exponential, Gumbel or uniform noise, and its nonlinear mlp, mim
  (index model), gp, gp-add and quadratic SEMs with Gaussian noise, on an Erdős–Rényi or scale-free DAG (one of
  the two per table) of average degree 3 with weights of random sign and magnitude in [0.5, 2]; observational only.

Tables come out in the generator's own units (`rescale=False` for cdt), columns in a random order so that no
method can read the topological order off the column index; `standardise_table` makes the other half of the
benchmark (scale order along the graph is a simulation artifact, not a causal cue), `monotone_copies` the
raw / log / rank copies of one table, and `discretised` a copy with some columns cut into a few ordered levels.

`real_table` gives measured data with a published graph, from files shipped inside a package (nothing is
downloaded): `sachs`, the flow-cytometry data of Sachs et al. (2005) as cdt ships it.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Callable

import numpy as np
import torch

from causal_engine.discovery.baselines import GraphData
from causal_engine.errors import UserError, require_extra

# sigmoid_mix is left out: cdt 0.6.0 fails on it with numpy 2 (it assigns an array to a scalar element).
CDT_MECHANISMS = ("linear", "polynomial", "sigmoid_add", "gp_add", "gp_mix", "nn")
# gCastle's IIDSimulation (method, sem_type) per family name.
GCASTLE_SEMS = {
    **{f"linear-{noise}": ("linear", noise) for noise in ("gauss", "exp", "gumbel", "uniform")},
    **{sem: ("nonlinear", sem) for sem in ("mlp", "mim", "gp", "gp-add", "quadratic")},
}
FAMILIES = (
    "sempler-linear",
    "sempler-anm",
    *(f"cdt-{m}" for m in CDT_MECHANISMS),
    *(f"gcastle-{sem}" for sem in GCASTLE_SEMS),
)
INTERVENTIONAL = ("sempler-linear", "sempler-anm")
REAL = ("sachs",)


def _sempler():
    require_extra("the out-of-prior benchmark's sempler tables", "sempler")
    with warnings.catch_warnings():  # "No module named 'rpy2'": only its semi-synthetic module needs R
        warnings.simplefilter("ignore")
        import sempler
        import sempler.generators
        import sempler.noise
    return sempler


def _sempler_dag(d: int, rng: np.random.Generator) -> np.ndarray:
    """Weighted ER DAG [d, d] (W[i, j] != 0 iff i -> j), average degree 3, random order, signed weights."""
    w = _sempler().generators.dag_avg_deg(d, 3, 0.5, 2.0, random_state=int(rng.integers(2**31)))
    return w * rng.choice([-1.0, 1.0], size=w.shape)


def _nonlinear_term(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    kind = rng.integers(5)
    a, b = rng.uniform(0.5, 2.0), rng.uniform(-1.0, 1.0)
    if kind == 0:
        return lambda x: a * np.tanh(x + b)
    if kind == 1:
        return lambda x: a * np.sin(x + b)
    if kind == 2:
        return lambda x: a * np.logaddexp(0, x + b)
    if kind == 3:
        return lambda x: 0.3 * a * x**3
    return lambda x: 0.5 * a * (x + b) ** 2


def _anm_assignment(k: int, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray] | None:
    """A random sum of k nonlinear parent terms, rescaled so the parent signal stays O(1) at any in-degree."""
    if k == 0:
        return None
    terms = [_nonlinear_term(rng) for _ in range(k)]
    signs = rng.choice([-1.0, 1.0], size=k)

    def assignment(x: np.ndarray) -> np.ndarray:  # x [n, k] -> [n]
        total = sum(s * f(x[:, c]) for c, (s, f) in enumerate(zip(signs, terms, strict=True)))
        return total / np.sqrt(k)

    return assignment


def _sempler_model(family: str, d: int, rng: np.random.Generator):
    sempler = _sempler()
    w = _sempler_dag(d, rng)
    if family == "sempler-linear":  # its variances and samples come from its own, unseeded, default stream
        return sempler.LGANM(w, (0.0, 0.0), (0.5, 2.0), random_state=int(rng.integers(2**31))), w != 0
    noises = [sempler.noise.laplace(0, 0.7), sempler.noise.uniform(-1.2, 1.2), sempler.noise.normal(0, 1)]
    assignments = [_anm_assignment(int((w[:, j] != 0).sum()), rng) for j in range(d)]
    noise = [noises[i] for i in rng.integers(len(noises), size=d)]
    return sempler.ANM((w != 0).astype(int), assignments, noise), w != 0


def _sempler_table(family: str, d: int, rows: int, interventions: int, rng: np.random.Generator) -> GraphData:
    model, adjacency = _sempler_model(family, d, rng)
    linear = family == "sempler-linear"

    def draw(n: int, do: dict | None = None) -> np.ndarray:
        """n rows under `do`: LGANM seeded per call from rng (unseeded, it draws from a fresh stream), ANM from
        numpy's global stream (seeded below)."""
        seed = {"random_state": int(rng.integers(2**31))} if linear else {}
        return model.sample(n, do_interventions=do or {}, **seed)

    state = np.random.get_state()  # seed numpy's global stream for ANM and its noise, then restore it
    np.random.seed(int(rng.integers(2**31)))
    try:
        obs = draw(rows)
        mean, std = obs.mean(0), obs.std(0)
        regimes = []
        for target in rng.choice(d, size=min(interventions, d), replace=False).tolist():
            value = mean[target] + rng.choice([-1, 1]) * rng.uniform(2, 4) * std[target]
            do = (value, 0.01) if linear else _sempler().noise.normal(value, 0.01)
            regimes.append(([target], draw(rows // 2, {target: do})))
    finally:
        np.random.set_state(state)
    return GraphData(obs, regimes, adjacency.astype(float))


def _cdt_table(mechanism: str, d: int, rows: int, rng: np.random.Generator) -> GraphData:
    import networkx as nx

    require_extra("the out-of-prior benchmark's cdt tables", "cdt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from cdt.data import AcyclicGraphGenerator

    # cdt draws from numpy's, Python's and (the nn mechanism's weights) torch's global streams: seed all three
    # for this table, then restore them.
    np_state, py_state = np.random.get_state(), random.getstate()
    seed = int(rng.integers(2**31))
    np.random.seed(seed)
    random.seed(seed)
    try:
        with warnings.catch_warnings(), torch.random.fork_rng():  # lbfgs warnings from its mixture root causes
            warnings.simplefilter("ignore")
            torch.manual_seed(seed)
            data, graph = AcyclicGraphGenerator(mechanism, npoints=rows, nodes=d).generate(rescale=False)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    columns = list(data.columns)
    adjacency = nx.to_numpy_array(graph, nodelist=columns) != 0
    return GraphData(data.to_numpy(dtype=float), [], adjacency.astype(float))


def _gcastle_table(sem: str, d: int, rows: int, rng: np.random.Generator) -> GraphData:
    require_extra("the out-of-prior benchmark's gcastle tables", "castle")
    # gCastle configures the root logger (at import, and through logging.info when it has no handler) and draws
    # from numpy's and Python's global streams (its seed argument reseeds both): all four are put back after.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        from castle.datasets import DAG, IIDSimulation

        root.handlers[:], root.level = handlers, level  # before its "Finished synthetic dataset" INFO lines
        graph = DAG.erdos_renyi if rng.random() < 0.5 else DAG.scale_free
        seed = int(rng.integers(2**31))
        weights = graph(n_nodes=d, n_edges=round(1.5 * d), weight_range=(0.5, 2.0), seed=seed)  # [d, d]
        method, sem_type = GCASTLE_SEMS[sem]
        data = IIDSimulation(W=weights, n=rows, method=method, sem_type=sem_type).X  # [rows, d]
    finally:
        root.handlers[:], root.level = handlers, level
        np.random.set_state(np_state)
        random.setstate(py_state)
    return GraphData(np.asarray(data, dtype=float), [], (weights != 0).astype(float))


def real_table(name: str) -> GraphData:
    """A measured data set against its published graph, loaded as a user would load the file.

    `sachs`: 7,466 cells × 11 phosphoproteins and lipids (Sachs et al., Science 2005) against the consensus
    graph of 18 edges, both as cdt ships them (`cdt.data.load_dataset`, read from the package's own files). The
    rows pool the paper's stimulation and inhibition conditions, which the file does not label, so every row
    counts as observational: a mixture no method here models, as in most uses of this table. The graph has one
    feedback loop (plcg -> PIP2 -> PIP3 -> plcg), so SID, defined for DAGs, is not reported for it.
    """
    if name not in REAL:
        raise UserError(f"real data set '{name}' is unknown; available: {list(REAL)}.")
    import networkx as nx

    require_extra(f"the real data set '{name}'", "cdt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from cdt.data import load_dataset

        data, graph = load_dataset(name)
    adjacency = nx.to_numpy_array(graph, nodelist=list(data.columns)) != 0
    return GraphData(data.to_numpy(dtype=float), [], adjacency.astype(float))


def _permuted(g: GraphData, perm: np.ndarray) -> GraphData:
    """The same table with column perm[k] renamed k (targets and the true graph follow)."""
    inverse = np.argsort(perm)
    regimes = [([int(inverse[t]) for t in targets], x[:, perm]) for targets, x in g.regimes]
    return GraphData(g.observational[:, perm], regimes, g.adjacency[np.ix_(perm, perm)])


def external_table(family: str, d: int, rows: int, seed: int, interventions: int = 0) -> GraphData:
    """One table of `family` on d nodes: `rows` observational rows and `interventions` single-node regimes of
    rows // 2 rows each (sempler families only), columns in a random order."""
    if family not in FAMILIES:
        raise UserError(f"external family '{family}' is unknown; available: {list(FAMILIES)}.")
    if interventions and family not in INTERVENTIONAL:
        raise UserError(f"external family '{family}' has no interventions; those that do: {list(INTERVENTIONAL)}.")
    rng = np.random.default_rng(seed)
    if family.startswith("sempler"):
        g = _sempler_table(family, d, rows, interventions, rng)
    elif family.startswith("cdt"):
        g = _cdt_table(family.removeprefix("cdt-"), d, rows, rng)
    else:
        g = _gcastle_table(family.removeprefix("gcastle-"), d, rows, rng)
    return _permuted(g, rng.permutation(d))


def standardise_table(g: GraphData) -> GraphData:
    """Every column centred and scaled by its observational mean and std, in every regime alike."""
    mean, std = g.observational.mean(0), np.maximum(g.observational.std(0), 1e-12)
    return GraphData((g.observational - mean) / std, [(t, (x - mean) / std) for t, x in g.regimes], g.adjacency)


def _columnwise(g: GraphData, transform: Callable[[np.ndarray], np.ndarray]) -> GraphData:
    """Apply a per-column transform to all rows of every regime at once (one map per column)."""
    parts = [g.observational, *(x for _, x in g.regimes)]
    out = transform(np.concatenate(parts))
    cuts = np.cumsum([len(p) for p in parts])[:-1]
    obs, *rest = np.split(out, cuts)
    return GraphData(obs, [(t, x) for (t, _), x in zip(g.regimes, rest, strict=True)], g.adjacency)


def monotone_copies(g: GraphData) -> dict[str, GraphData]:
    """raw, log (log(1 + x - min)) and rank copies of one table: strictly increasing maps of every column, so
    the causal graph is the same."""

    def log(x: np.ndarray) -> np.ndarray:
        return np.log1p(x - x.min(0))

    def rank(x: np.ndarray) -> np.ndarray:
        return x.argsort(0, kind="stable").argsort(0, kind="stable").astype(float)

    return {"raw": g, "log": _columnwise(g, log), "rank": _columnwise(g, rank)}


DISCRETE_LEVELS = (2, 3, 5)  # levels of a `discretised` column: a binary flag, a grade, a short count
DISCRETE_SHARE = 0.4  # of a table's columns


def discretised(g: GraphData, seed: int, share: float = DISCRETE_SHARE) -> GraphData:
    """A copy of `g` with a random `share` of its columns (at least one) cut at their observational quantiles
    into 2, 3 or 5 ordered levels 0, 1, ... (every regime with the same cuts): the binary treatments, grades and
    short counts of users' tables, whose values tie. The graph is the same; each such column carries less."""
    rng = np.random.default_rng(seed)
    d = g.observational.shape[1]
    columns = rng.choice(d, size=max(1, round(share * d)), replace=False)
    cuts = {
        int(j): np.quantile(g.observational[:, j], np.linspace(0, 1, int(rng.choice(DISCRETE_LEVELS)) + 1)[1:-1])
        for j in columns
    }

    def cut(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        for j, edges in cuts.items():
            x[:, j] = np.searchsorted(edges, x[:, j])
        return x

    return _columnwise(g, cut)


def sorted_rows(g: GraphData, column: int) -> GraphData:
    """The same table with its observational rows sorted by one column (as files often are): any answer that
    moves is reading the file's row order."""
    return GraphData(g.observational[np.argsort(g.observational[:, column], kind="stable")], g.regimes, g.adjacency)
