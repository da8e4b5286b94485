"""The bootstrap ensemble: each replicate stops on its own out-of-bag rows."""

from functools import partial

import numpy as np
import torch

from causal_engine.convergence import Convergence
from causal_engine.intervene.bootstrap import BootstrapEnsemble, fit_ensemble, poisson_counts
from causal_engine.intervene.models import StructuralMLP
from causal_engine.intervene.zoo import get_scm


def test_each_replicate_ends_with_the_weights_of_its_best_out_of_bag_epoch():
    x = get_scm("mediator_nonlin").sample(64, torch.Generator().manual_seed(0)).float()  # [N, 3]
    adjacency = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=bool)
    nets = []
    for r in range(3):
        torch.manual_seed(r)
        net = StructuralMLP(adjacency, hidden_dims=(8,))
        net.set_scaler(x.mean(0), x.std(0))
        nets.append(net)
    counts = poisson_counts(3, len(x), seed=0)  # [R, N]
    cut = torch.zeros_like(x, dtype=torch.bool)
    optimizer = partial(torch.optim.Adam, lr=0.05)  # large: the out-of-bag loss rises again before the end
    ensemble = BootstrapEnsemble(nets, optimizer, x, cut, counts, x, cut, (counts == 0).float(), batch_size=16)
    epochs = fit_ensemble(ensemble, Convergence(patience=3, decays=0, max_epochs=40))
    with torch.no_grad():
        final = ensemble._losses(x, cut, (counts == 0).float())  # [R] out-of-bag loss of the weights kept
    assert epochs < 40 and torch.isfinite(ensemble.best_loss).all()
    assert torch.allclose(final, ensemble.best_loss, rtol=1e-5, atol=0)
