"""Figures: each function returns a matplotlib Figure; `save_figure` writes PNG, `log_figure` sends to TensorBoard.

Matplotlib runs headless (Agg) so figures render on servers, in CI and inside DataLoader workers.
Each room adds its figure functions under its own heading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def save_figure(fig: Figure, path: str | Path, *, close: bool = True) -> Path:
    """Write `fig` as PNG (parents created) and close it unless asked not to."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    if close:
        plt.close(fig)
    return out


def log_figure(loggers: Any, tag: str, fig: Figure, step: int = 0, *, close: bool = True) -> None:
    """Add `fig` to every TensorBoard logger among `loggers` (a Lightning logger or a list of them)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in loggers if isinstance(loggers, list | tuple) else [loggers]:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, fig, global_step=step, close=False)
    if close:
        plt.close(fig)


# --- discovery (helper "pfn"): adjacency heatmaps and delta scatter ----------------------------------------


def adjacency_figure(
    true: Any, pred: Any, names: list[str] | None = None, title: str = "predicted edge probability"
) -> Figure:
    """Heatmaps of the true adjacency (left; omitted when None) and predicted edge probabilities (right).

    Row = parent, column = child: entry (i, j) is the edge i -> j.
    """
    panels = [("true graph", true), (title, pred)] if true is not None else [(title, pred)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (label, matrix) in zip(axes[0], panels, strict=True):
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(label)
        ax.set_xlabel("child")
        ax.set_ylabel("parent")
        if names is not None and len(names) <= 30:
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
            ax.set_yticks(range(len(names)), names, fontsize=7)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def delta_scatter_figure(true: Any, pred: Any, title: str = "counterfactual deltas (z-units)") -> Figure:
    """Predicted vs true deltas with the identity line."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.scatter(true, pred, s=4, alpha=0.4)
    if len(true):
        low, high = float(min(min(true), min(pred))), float(max(max(true), max(pred)))
        ax.plot([low, high], [low, high], color="black", lw=0.8)
    ax.set_xlabel("true delta")
    ax.set_ylabel("predicted delta")
    ax.set_title(title)
    fig.tight_layout()
    return fig
