"""Checkpoint I/O for the causal PFN: a checkpoint is data, never code.

Every file is read with `torch.load(weights_only=True)`, whose unpickler only rebuilds tensors and plain
containers: a pickle that would call a function while loading (open a file, run a command) is refused with a
one-line error naming the file instead of being executed. Two layouts load:

- the shipped export (`checkpoints/pfn.pt`, written by `export_pfn`): `{"net_spec", "state_dict", "meta"}`,
  no Lightning or Hydra objects;
- a Lightning checkpoint of `PFNModule` (`PFNModule.on_save_checkpoint` adds `net_spec`; its hparams hold only
  plain values, so it loads the same way).

`task.checkpoint` (discover, compare) and `model.init_checkpoint` (fine-tuning) both come through `load_pfn`.
"""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from causal_engine.discovery.encoder import NUM_PAIR_FEATURES
from causal_engine.discovery.models import PFNNet, build_net
from causal_engine.errors import UserError

log = logging.getLogger(__name__)


class CheckpointError(UserError):
    """A checkpoint file is missing, unreadable, not weights-only, or not a causal PFN."""


def load_weights(path: str | Path, key: str = "task.checkpoint") -> dict[str, Any]:
    """The dictionary stored in `path`, unpickled weights-only; `key` is the config key named in errors."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(
            f"{key}: no checkpoint at {file}. Train one with `python scripts/train_pfn_checkpoint.py` or give "
            f"{key}=PATH."
        )
    if not zipfile.is_zipfile(file):
        raise CheckpointError(f"{key}: {file} is not a torch checkpoint (torch.save writes a zip archive).")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{key}: {file} is not a weights-only checkpoint (unpickling it would run code), so it is not loaded; "
            f"export the weights with causal_engine.discovery.checkpoint.export_pfn."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"{key}: {file} is not a readable torch checkpoint ({error}).") from None
    if not isinstance(ckpt, dict) or "net_spec" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{key}: {file} is not a causal PFN checkpoint (no net_spec/state_dict).")
    return ckpt


def load_pfn(path: str | Path, key: str = "task.checkpoint") -> PFNNet:
    """A PFN in eval mode from a shipped export or a Lightning checkpoint of `PFNModule`."""
    ckpt = load_weights(path, key)
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if not k.startswith(("val_", "test_"))}
    net = build_net(ckpt["net_spec"])
    state, seen = net.widen_pair_inputs(state)
    if seen < NUM_PAIR_FEATURES:
        log.warning(
            "%s=%s was trained on the first %d of today's %d pair features; the others get zero weight, so it "
            "predicts as trained (fine-tune it with model.init_checkpoint to use them).",
            key,
            path,
            seen,
            NUM_PAIR_FEATURES,
        )
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        lines = str(error).splitlines()  # torch: a header line, then one line per mismatched tensor
        raise CheckpointError(
            f"{key}: {path} does not fit its own net_spec ({lines[-1].strip()}); re-export it with "
            f"causal_engine.discovery.checkpoint.export_pfn."
        ) from None
    return net.eval()


def sidecar(checkpoint: str | Path) -> Path:
    """The json beside a checkpoint file (`pfn.pt` -> `pfn.json`): how it was trained, its calibration."""
    return Path(checkpoint).with_suffix(".json")


def warn_outside_training(checkpoint: str | Path, num_variables: int, key: str = "task.checkpoint") -> bool:
    """Warn (and return True) when a table's number of variables lies outside the graph sizes the checkpoint
    was trained on (`trained_nodes` in its json sidecar, written by the training recipe): an amortised model
    answers there without having seen such graphs (the shipped one finds at most one edge on 3-4 variables)."""
    path = sidecar(checkpoint)
    sizes = json.loads(path.read_text()).get("trained_nodes") if path.is_file() else None
    if sizes is None or sizes[0] <= num_variables <= sizes[1]:
        return False
    log.warning(
        "%s=%s was trained on graphs of %d-%d variables and this table has %d: its edge probabilities are "
        "extrapolated and may miss most edges; give the graph (data.graph_path=EDGES.csv) if you know it.",
        key,
        checkpoint,
        sizes[0],
        sizes[1],
        num_variables,
    )
    return True


def trained_do_range(checkpoint: str | Path) -> float | None:
    """The largest do-value, in observational standard deviations from the variable's mean, that the
    checkpoint's prior drew (`prior.intervention_z` in its json sidecar); None when the sidecar does not say
    (no sidecar, or a prior with fixed do-values such as the seed notebook's)."""
    path = sidecar(checkpoint)
    prior = json.loads(path.read_text()).get("prior") or {} if path.is_file() else {}
    z = prior.get("intervention_z")
    return float(z[1]) if z else None


def best_checkpoint(run_dir: Path) -> Path:
    """The newest best-validation checkpoint of a training run (`best-*.ckpt`), else its `last.ckpt`."""
    best = sorted((run_dir / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    return best[-1] if best else run_dir / "checkpoints" / "last.ckpt"


def export_pfn(source: Path, out: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Write the net of a `PFNModule` Lightning checkpoint as a plain `{net_spec, state_dict, meta}` file.

    Returns the stored `meta`: the given one plus the training step and the source file's name.
    """
    ckpt = load_weights(source, key="source checkpoint")
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    stored = {**meta, "steps": int(ckpt["global_step"]), "source": source.name}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"net_spec": ckpt["net_spec"], "state_dict": state, "meta": stored}, out)
    return stored


def save_pfn(net: PFNNet, out: Path, meta: Mapping[str, Any]) -> None:
    """Write `net` in the export layout (`{net_spec, state_dict, meta}`), e.g. after fitting its pair head."""
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"net_spec": net.net_spec(), "state_dict": net.state_dict(), "meta": dict(meta)}, out)
