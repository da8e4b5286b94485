"""The query benchmark's outside generators: their exact answers agree with the tables they produce."""

import numpy as np
import pytest

from causal_engine.intervene.benchmark import dowhy_case


def test_dowhy_case_scores_contrasts_with_the_treatments_coefficient():
    case = dowhy_case(2000, seed=0)
    assert list(case.frame.columns) == ["W0", "W1", "v0", "y"] and case.do_contrast
    assert sorted(map(tuple, case.edges.to_numpy())) == [("W0", "v0"), ("W0", "y"), ("W1", "v0"), ("W1", "y"),
                                                         ("v0", "y")]  # fmt: skip
    assert case.do_truth == pytest.approx(case.grid - case.grid[0], abs=1e-12)  # beta = 1
    assert case.cf_truth == pytest.approx(case.frame.y.to_numpy() + 1.0, abs=1e-12)
    # The documented outcome equation is linear in (W, v0): OLS recovers beta = 1 within 4 standard errors.
    design = np.column_stack([np.ones(len(case.frame)), case.frame[["W0", "W1", "v0"]].to_numpy()])
    coef, *_ = np.linalg.lstsq(design, case.frame.y.to_numpy(), rcond=None)
    resid = case.frame.y.to_numpy() - design @ coef
    se = np.sqrt(resid.var(ddof=4) * np.linalg.inv(design.T @ design)[3, 3])
    assert abs(coef[3] - 1.0) < 4 * se
