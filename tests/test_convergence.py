"""The stopping rule's arithmetic and the in-memory best weights, exactly."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from causal_engine.convergence import BestWeights, Convergence
from causal_engine.errors import UserError


def test_ceiling_is_sized_from_the_optimiser_steps_a_table_needs():
    rule = Convergence(patience=20, max_steps=20_000, min_epochs=50)
    assert rule.ceiling(n_train=1000, batch_size=128) == 2500  # 8 steps per epoch
    assert rule.ceiling(n_train=100_000, batch_size=128) == 50  # 782 steps per epoch: min_epochs holds
    assert rule.ceiling(n_train=40, batch_size=128) == 20_000  # one step per epoch
    assert Convergence(patience=5, max_epochs=30).ceiling(n_train=1000, batch_size=128) == 30


def _best(epoch: int) -> BestWeights:
    best = BestWeights()
    best.best_epoch, best.best_score = epoch, 0.5
    return best


def test_converged_only_when_the_best_epoch_came_patience_epochs_before_the_ceiling():
    rule = Convergence(patience=3, max_steps=100, config_key="dml.convergence")
    done = rule.report([_best(6)], epochs=10, max_epochs=10)
    assert done.converged and done.warning is None
    assert done.as_metrics("fit") == {"fit/converged": 1.0, "fit/epochs": 10.0, "fit/best_epoch": 6.0,
                                      "fit/best_val_loss": 0.5}  # fmt: skip
    cut = rule.report([_best(7)], epochs=10, max_epochs=10)
    assert not cut.converged and "Raise dml.convergence.max_steps (now 100, a ceiling of 10 epochs)" in cut.warning
    assert "NOT converged" in cut.summary()


def test_best_weights_restores_the_best_validation_epoch():
    module = nn.Linear(1, 1)
    best = BestWeights("val/loss")
    for epoch, (loss, weight) in enumerate([(0.9, 1.0), (0.4, 2.0), (0.6, 3.0)]):
        module.weight.data.fill_(weight)
        trainer = SimpleNamespace(
            sanity_checking=False, current_epoch=epoch, callback_metrics={"val/loss": torch.tensor(loss)}
        )
        best.on_validation_end(trainer, module)
    best.on_fit_end(trainer, module)
    assert best.best_epoch == 1 and best.best_score == pytest.approx(0.4) and float(module.weight.detach()) == 2.0
    kept = BestWeights("val/loss", restore=False)
    kept.on_validation_end(trainer, module)
    module.weight.data.fill_(7.0)
    kept.on_fit_end(trainer, module)
    assert kept.best_epoch == 2 and float(module.weight.detach()) == 7.0


def test_bad_settings_name_their_key():
    with pytest.raises(UserError, match="task.convergence.patience"):
        Convergence(patience=0)
    with pytest.raises(UserError, match="max_epochs=5 leaves no room"):
        Convergence(patience=5, max_epochs=5).ceiling(n_train=100, batch_size=10)
