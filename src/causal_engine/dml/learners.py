"""Which nuisance learners a run uses (`dml.learner`), and library learners fit on one fold's rows.

`dml.learner=network` fits the neural nuisances (`dml.nuisance`, Lightning fits that stop on their held-out loss);
`dml.learner=tabular` fits the scikit-learn-style estimators of `dml.tabular` (a stack of lasso and forest, random
forests, histogram gradient boosting, cross-validated lasso / logistic regression, LightGBM: `dml/tabular=<preset>`).
`auto` picks the tabular learners for a covariate table (by default the stack: a forest alone fits linear confounding
with a bias that DML's rate condition does not allow, a lasso alone misses curved effects, and the stack takes
whichever fits), and the networks for learned representations (videos), whose embeddings are wide and smooth. Both
kinds see the same folds, enter the same scores and are stored and resumed the same way.

A library fit receives its training rows as a DataFrame indexed by global row number; `Recorded` notes the
index of every frame its estimator's `fit()` received, so the leak check tests the rows a fit actually got,
not the rows the caller meant to give it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from causal_engine.dml.data import CausalSample, DMLInputError

log = logging.getLogger(__name__)

LEARNERS = ("auto", "network", "tabular")


def resolve_learner(learner: str, sample: CausalSample) -> str:
    """`network` or `tabular` for `dml.learner`; `auto` is tabular for covariates, network for videos."""
    if learner not in LEARNERS:
        raise DMLInputError(f"dml.learner={learner!r} is not one of {LEARNERS}")
    if learner != "auto":
        return learner
    return "network" if sample.is_video else "tabular"


def describe_learner(dml: DictConfig, sample: CausalSample) -> str:
    """One console line saying which learners `dml.learner` resolved to, and why."""
    chosen = resolve_learner(dml.learner, sample)
    if chosen == "tabular":
        names = ", ".join(f"{role}: {_name(spec)}" for role, spec in dml.tabular.items())
        what = f"tabular learners ({names}; choose with dml/tabular=forest|hist_gb|lasso|lightgbm|stack)"
    else:
        what = "neural networks (dml.nuisance; TarNet outcome, MLP propensity/regressions)"
    why = {"auto": " for " + ("learned video representations" if sample.is_video else "a covariate table")}
    return f"dml.learner={dml.learner} → {what}{why.get(dml.learner, '')}"


def _name(spec: DictConfig) -> str:
    """The estimator class a constructor call builds (a pipeline's last step)."""
    target = spec.get("_args_", [spec])[-1] if str(spec._target_).endswith("make_pipeline") else spec
    return str(target._target_).rsplit(".", 1)[-1]


class Recorded:
    """A library estimator that notes the global rows (the frame's index) of every `fit()` call it receives."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.rows = np.empty(0, dtype=np.int64)

    def fit(self, x: pd.DataFrame, target: np.ndarray) -> Recorded:
        self.rows = np.union1d(self.rows, x.index.to_numpy())
        self.estimator.fit(x.to_numpy(), target)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """E[target | x]: the class-1 probability of a classifier, the prediction of a regressor."""
        if hasattr(self.estimator, "predict_proba"):
            return self.estimator.predict_proba(x)[:, 1]
        return self.estimator.predict(x)


def clipped_logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of probabilities clipped to [1e-6, 1 - 1e-6]: the scale the propensity stack
    (`dml/tabular=stack`) combines its base learners on, where a forest's pure leaves (p = 0 or 1) stay finite."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def build_estimator(spec: DictConfig, seed: int) -> Recorded:
    """A fresh estimator from its constructor call; an unset `random_state` (also a pipeline step's) becomes the
    fold's seed."""
    estimator = instantiate(spec, _convert_="all")
    unset = {k: seed for k, v in estimator.get_params().items() if k.endswith("random_state") and v is None}
    estimator.set_params(**unset)
    return Recorded(estimator)


def fit_tabular(
    tabular: DictConfig,
    score: str,
    x: np.ndarray,
    d: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The fold's library nuisances fit on `train` rows, predicting `test` rows: (predictions, trained rows).

    ate/att: g0 and g1 are `tabular.outcome` fit on each arm's training rows (as DoubleML's IRM does), m is
    `tabular.propensity`. plr: ell is `tabular.outcome` fit on every training row, m is `tabular.propensity`
    for a binary treatment and a regression (`tabular.outcome`'s learner) of a continuous one.
    x [N, p], d [N], y [N]; predictions are [n_test] in `test` order.
    """
    frame = pd.DataFrame(x, index=pd.Index(np.arange(len(x)), name="row"))  # [N, p], indexed by global row
    x_test = x[test]

    def fit(spec: DictConfig, rows: np.ndarray, target: np.ndarray) -> Recorded:
        return build_estimator(spec, seed).fit(frame.iloc[rows], target[rows])

    binary = bool(np.isin(d, (0.0, 1.0)).all())
    if score == "plr":
        ell = fit(tabular.outcome, train, y)
        m = fit(tabular.propensity if binary else tabular.outcome, train, d)
        name = "propensity" if binary else "treatment"
        return {"ell": ell.predict(x_test), "m": m.predict(x_test)}, {"outcome": ell.rows, name: m.rows}
    g0 = fit(tabular.outcome, train[d[train] == 0], y)
    g1 = fit(tabular.outcome, train[d[train] == 1], y)
    m = fit(tabular.propensity, train, d)
    preds = {"g0": g0.predict(x_test), "g1": g1.predict(x_test), "m": m.predict(x_test)}
    return preds, {"outcome": np.union1d(g0.rows, g1.rows), "propensity": m.rows}
