"""The SCM simulator shared by the PFN prior (``discovery``) and causal fine-tuning (``intervene``).

Batches of B random SCMs × S samples in a few tensor ops, deterministic under an explicit ``torch.Generator``
(get one from ``causal_engine.seeding.stream_generator`` so every DataLoader worker and DDP rank differs).
"""

from causal_engine.scm.graphs import sample_dags, sample_dags_and_order
from causal_engine.scm.mechanisms import MECHANISMS, NO_EDGE, NODE_CLAMP, apply_mechanisms, mechanism_table
from causal_engine.scm.model import SCM, build_scm, counterfactual, sample_noise, sample_scm, simulate
from causal_engine.scm.prior import PriorBatch, sample_batch

__all__ = [
    "MECHANISMS",
    "NODE_CLAMP",
    "NO_EDGE",
    "SCM",
    "PriorBatch",
    "apply_mechanisms",
    "build_scm",
    "counterfactual",
    "mechanism_table",
    "sample_batch",
    "sample_dags",
    "sample_dags_and_order",
    "sample_noise",
    "sample_scm",
    "simulate",
]
