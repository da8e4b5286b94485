"""The seed's Phase 1, kept runnable as the negative control: `causal-engine experiment=causal_mlp_phase1`.

The toy y = x1 + 2 x2 − 3 x3 + noise with do(x2 = 0.5) on half of the training rows; a plain MLP (M1) and
the StructuralMLP are fitted on the same rows; both should recover the coefficients (independent inputs make
substitution equal to the do-operator, so this experiment cannot tell the two apart — that is its point).
"""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from causal_engine import plots
from causal_engine.intervene.data import ZooDataModule
from causal_engine.intervene.module import InterveneModule
from causal_engine.train import build_trainer, collect_metrics, instantiate_loggers


def phase1(cfg: DictConfig, models_key: str = "phase1_models", query_value: float = 0.5) -> dict[str, float]:
    """Fit every model under `cfg[models_key]` (name -> model config) on `cfg.data`; compare coefficients
    (dE[y | do(x_i = v)]/dv from do(x_i = ±1)), the answer to E[y | do(x2 = query_value)] and loss curves
    with the SCM's exact values, in `phase1_training_summary.png` and TensorBoard (`phase1/training_summary`)."""
    out_dir = Path(cfg.paths.output_dir)
    metrics: dict[str, float] = {}
    histories, coefficients, answers = {}, {}, {}
    truth_coef = truth_answer = None
    for name, model_cfg in cfg[models_key].items():
        datamodule: ZooDataModule = instantiate(cfg.data)
        module: InterveneModule = instantiate(model_cfg)
        module.attach(datamodule)
        trainer = build_trainer(cfg, subdir=name)
        trainer.fit(module, datamodule=datamodule)
        trainer.test(module, datamodule=datamodule, verbose=False)
        metrics.update({f"{name}/{k}": v for k, v in collect_metrics(trainer).items()})
        scm, graph = datamodule.scm, datamodule.graph
        inputs = [j for j in range(scm.num_nodes) if j != graph.outcome]
        x_ref = datamodule.test_x
        plus_minus = torch.tensor([-1.0, 1.0])
        coef = [float(module.do_mean(x_ref, j, plus_minus).diff() / 2) for j in inputs]
        truth_coef = [float(scm.do_mean(plus_minus, treatment=j)[0].diff() / 2) for j in inputs]
        answer = float(module.do_mean(x_ref, graph.treatment, torch.tensor([query_value]))[0])
        truth_answer = float(scm.do_mean(torch.tensor([query_value]))[0][0])
        for j, c, c_true in zip(inputs, coef, truth_coef, strict=True):
            metrics[f"{name}/coef_{scm.names[j]}"] = c
            metrics[f"{name}/coef_error_{scm.names[j]}"] = abs(c - c_true)
        metrics[f"{name}/do_answer"] = answer
        metrics[f"{name}/do_answer_error"] = abs(answer - truth_answer)
        histories[name] = module.history
        coefficients[name] = coef
        answers[name] = answer
    names = [datamodule.scm.names[j] for j in inputs]
    treat = datamodule.scm.names[datamodule.graph.treatment]
    fig = plots.training_summary_figure(
        histories,
        coefficients,
        truth_coef,
        names,
        answers,
        truth_answer,
        f"E[y | do({treat} = {query_value})]",
    )
    plots.save_figure(fig, out_dir / "phase1_training_summary.png", close=False)
    plots.log_figure(instantiate_loggers(cfg), "phase1/training_summary", fig)
    metrics["truth/do_answer"] = truth_answer
    return metrics
