"""Top-k expert selection with a defined tie-break.

Experts are ranked by gate logit, highest first; equal logits rank the lower
expert index first.  Selection reads the logits of the current token only (no
state carried between tokens).
"""
from __future__ import annotations

import torch


def topk(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [..., k] of the k best experts per row of ``logits`` (raw words), best first."""
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
    return order[..., :k]
