"""The stopping rule's arithmetic and the in-memory best weights, exactly."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from causal_engine.convergence import BestWeights, Convergence, PlateauSchedule
from causal_engine.errors import UserError


def test_ceiling_is_sized_from_the_optimiser_steps_a_table_needs():
    rule = Convergence(patience=20, decays=1, max_steps=20_000, min_epochs=50)
    assert rule.ceiling(n_train=1000, batch_size=128) == 2500  # 8 steps per epoch
    assert rule.ceiling(n_train=100_000, batch_size=128) == 50  # 782 steps per epoch: min_epochs holds
    assert rule.ceiling(n_train=40, batch_size=128) == 20_000  # one step per epoch
    assert Convergence(patience=20, decays=3).ceiling(n_train=100_000, batch_size=128) == 81  # 4 plateaus fit
    assert Convergence(patience=5, max_epochs=30).ceiling(n_train=1000, batch_size=128) == 30


def _trainer(epoch: int, loss: float, lr: float = 1.0) -> SimpleNamespace:
    optimizer = SimpleNamespace(param_groups=[{"lr": lr}])
    return SimpleNamespace(
        sanity_checking=False,
        current_epoch=epoch,
        callback_metrics={"val/loss": torch.tensor(loss)},
        optimizers=[optimizer],
        should_stop=False,
    )


def test_plateau_schedule_lowers_the_rate_on_each_plateau_then_stops():
    """patience 2, 2 decays of x0.5, relative min_delta 10 %: 0.95 after 1.0 is no improvement."""
    schedule = PlateauSchedule(patience=2, decays=2, factor=0.5, min_delta=0.1)
    trainer = _trainer(0, 1.0)
    lrs, stops = [], []
    for epoch, loss in enumerate([1.0, 0.95, 0.99, 0.5, 0.6, 0.6, 0.6, 0.4, 0.4, 0.4, 0.4]):
        trainer.current_epoch, trainer.callback_metrics["val/loss"] = epoch, torch.tensor(loss)
        schedule.on_validation_end(trainer, None)
        lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        stops.append(trainer.should_stop)
    # decays at epochs 2 (two epochs without 10 %) and 5; 0.4 at epoch 7 improves; stop at epoch 9.
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]
    assert stops.index(True) == 9 and schedule.stopped and schedule.decayed == 2


def test_plateau_schedule_judges_each_rate_against_its_own_best():
    """After the decay the loss never undercuts the first rate's 1.0 but keeps improving on itself."""
    schedule = PlateauSchedule(patience=2, decays=1, factor=0.5)
    trainer = _trainer(0, 1.0)
    for epoch, loss in enumerate([1.0, 1.2, 1.2, 1.15, 1.1, 1.05, 1.05, 1.05]):
        trainer.current_epoch, trainer.callback_metrics["val/loss"] = epoch, torch.tensor(loss)
        schedule.on_validation_end(trainer, None)
        if trainer.should_stop:
            break
    assert epoch == 7 and schedule.decayed == 1


def _fit(epoch: int, stopped: bool, decayed: int) -> list:
    best, schedule = BestWeights(), PlateauSchedule()
    best.best_epoch, best.best_score = epoch, 0.5
    schedule.stopped, schedule.decayed = stopped, decayed
    return [schedule, best]


def test_converged_only_when_the_stopping_rule_ended_the_fit():
    rule = Convergence(patience=3, decays=2, max_steps=100, config_key="dml.convergence")
    done = rule.report(_fit(6, stopped=True, decayed=2), epochs=10, max_epochs=12)
    assert done.converged and done.warning is None
    assert done.as_metrics("fit") == {"fit/converged": 1.0, "fit/epochs": 10.0, "fit/best_epoch": 6.0,
                                      "fit/best_val_loss": 0.5, "fit/lr_decays": 2.0}  # fmt: skip
    cut = rule.report(_fit(6, stopped=False, decayed=1), epochs=12, max_epochs=12)
    assert not cut.converged and "lowered 1 of 2 times" in cut.warning
    assert "Raise dml.convergence.max_steps (now 100, a ceiling of 12 epochs)" in cut.warning
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
    with pytest.raises(UserError, match="task.convergence.factor"):
        Convergence(factor=1.0)
    with pytest.raises(UserError, match=r"max_epochs=20 leaves no room.*\(decays \+ 1\) x patience = 20"):
        Convergence(patience=5, decays=3, max_epochs=20).ceiling(n_train=100, batch_size=10)


def test_best_weights_per_phase_searches_again_after_a_learning_rate_change():
    module = nn.Linear(1, 1)
    best = BestWeights("val/loss", per_phase=True)
    trainer = _trainer(0, 1.0, lr=1.0)
    for epoch, (loss, lr) in enumerate([(0.3, 1.0), (0.5, 1.0), (0.45, 0.1), (0.4, 0.1), (0.42, 0.1)]):
        module.weight.data.fill_(float(epoch))
        trainer.current_epoch, trainer.callback_metrics["val/loss"] = epoch, torch.tensor(loss)
        trainer.optimizers[0].param_groups[0]["lr"] = lr
        best.on_validation_end(trainer, module)
    best.on_fit_end(trainer, module)
    # 0.3 at the first rate is lower, but the best at the final rate (0.1) is epoch 3's 0.4.
    assert best.best_epoch == 3 and best.best_score == pytest.approx(0.4) and float(module.weight.detach()) == 3.0
