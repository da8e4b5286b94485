"""M6: DoWhy's graphical causal model (gcm) with MLP mechanisms on the same graph (needs the `baselines` extra).

Roots get their empirical distribution, every other node an additive-noise model whose regressor is a
scikit-learn MLP, so the model class matches StructuralMLP's; answers use the same abducted-noise protocol
(`gcm.counterfactual_samples` on the reference rows). Fitted on observational rows only: gcm has no way to
leave an intervened row out of that node's mechanism.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import networkx as nx
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from causal_engine.errors import require_extra
from causal_engine.intervene.do import Interventions


class DoWhyGCM:
    """Same query interface as the torch networks: `interventional(x_ref, iv)` and `counterfactual(x, iv)`
    for hard and shift interventions with scalar values."""

    def __init__(
        self,
        names: Sequence[str],
        adjacency: np.ndarray,
        hidden_dims: Sequence[int] = (32, 32),
        max_iter: int = 500,
        seed: int = 0,
    ) -> None:
        require_extra("the DoWhy baseline", "dowhy")
        from dowhy import gcm
        from sklearn.neural_network import MLPRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.names = list(names)
        graph = nx.DiGraph()
        graph.add_nodes_from(self.names)
        for i, j in zip(*np.nonzero(adjacency), strict=True):
            graph.add_edge(self.names[i], self.names[j])
        self.model = gcm.InvertibleStructuralCausalModel(graph)
        for node in self.names:
            if graph.in_degree(node) == 0:
                self.model.set_causal_mechanism(node, gcm.EmpiricalDistribution())
            else:
                regressor = make_pipeline(
                    StandardScaler(),
                    MLPRegressor(
                        hidden_layer_sizes=tuple(hidden_dims), max_iter=max_iter, early_stopping=True, random_state=seed
                    ),
                )
                self.model.set_causal_mechanism(
                    node, gcm.AdditiveNoiseModel(prediction_model=gcm.ml.SklearnRegressionModel(regressor))
                )
        self._gcm = gcm

    def fit(self, x: Tensor) -> DoWhyGCM:
        """Fit every mechanism on observational rows x [N, D]."""
        self._gcm.fit(self.model, pd.DataFrame(x.double().numpy(), columns=self.names))
        return self

    def counterfactual(self, x: Tensor, interventions: Interventions | Mapping) -> Tensor:
        """Counterfactuals [N, D] of rows x under hard/shift interventions with scalar values."""
        iv = Interventions.parse(interventions, self.names)
        functions = {}
        for node, spec in iv.nodes.items():
            if spec.mask is not None or callable(spec.value) or torch.is_tensor(spec.value):
                raise ValueError("DoWhyGCM answers interventions with one scalar value for all rows only")
            value = float(spec.value)
            functions[self.names[node]] = (lambda _, v=value: v) if spec.kind == "hard" else (lambda a, v=value: a + v)
        frame = pd.DataFrame(x.double().numpy(), columns=self.names)
        out = self._gcm.counterfactual_samples(self.model, functions, observed_data=frame)
        return torch.tensor(out[self.names].to_numpy(), dtype=x.dtype)

    def interventional(self, x_ref: Tensor, interventions: Interventions | Mapping) -> Tensor:
        """Interventional samples [N, D]: the reference rows' counterfactuals (their noise kept)."""
        return self.counterfactual(x_ref, interventions)
