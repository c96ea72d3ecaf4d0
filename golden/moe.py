"""The MoE layer on raw words: gating, top-k, per-expert token queues, experts.

Hardware order (Edge-MoE's patch reordering): gate every token of the image,
build one queue of tokens per expert (ascending token index), then for each
active expert (ascending index) load its weights once and run its whole
queue through fc1 + GELU + fc2; each result is scaled by the token's gate
score and accumulated exactly into the token's row, which is rounded once.
The exact accumulation makes the expert order immaterial to the result.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .numerics.approx import gelu
from .numerics.fixed import quantize
from .numerics.matmul import linear
from .numerics.softmax import gate_softmax
from .numerics.topk import topk


@dataclass
class Routing:
    """Gate decisions for a batch: what the expert queues are built from."""

    logits: torch.Tensor   # [B, N, E] raw gate_logit
    scores: torch.Tensor   # [B, N, E] raw gate_score (softmax over all experts)
    experts: torch.Tensor  # [B, N, k] chosen experts, best first
    weights: torch.Tensor  # [B, N, k] raw gate_score of the chosen experts

    def counts(self, num_experts: int) -> torch.Tensor:
        """[B, E] tokens queued per expert."""
        one_hot = torch.nn.functional.one_hot(self.experts, num_experts)
        return one_hot.sum(dim=(1, 2))

    def queue(self, image: int, expert: int) -> torch.Tensor:
        """Token indices (ascending) queued for ``expert`` in ``image``."""
        return torch.nonzero((self.experts[image] == expert).any(-1)).flatten()


def route(x: torch.Tensor, w_gate: torch.Tensor, top_k: int, p, tag: str = "") -> Routing:
    """Gate raw activations ``x`` [B, N, D] with ``w_gate`` [D, E] (raw ``p.weight``)."""
    logits = linear(x, p.act, w_gate.transpose(0, 1), p.weight, None, None, p.gate_logit, f"{tag}gate_logits")
    scores = gate_softmax(logits, p)
    experts = topk(logits, top_k)
    return Routing(logits, scores, experts, torch.gather(scores, -1, experts))


def moe(x: torch.Tensor, routing: Routing, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
        b2: torch.Tensor, p, tag: str = "") -> torch.Tensor:
    """Experts' scored sum for raw activations ``x`` [B, N, D] -> raw ``p.act`` [B, N, D].

    ``w1`` [E, H, D], ``b1`` [E, H], ``w2`` [E, D, H], ``b2`` [E, D] raw words
    (``p.weight`` / ``p.bias``).  Each image's queues are independent; the
    batch is processed expert by expert with all images' queues together.
    """
    b, n, d = x.shape
    tokens = x.reshape(b * n, d)
    chosen = routing.experts.reshape(b * n, -1)
    weight = routing.weights.reshape(b * n, -1)
    acc = torch.zeros(b * n, d, dtype=torch.int64)
    for e in range(w1.shape[0]):
        hit = chosen == e                       # [BN, k]
        rows = torch.nonzero(hit.any(-1)).flatten()
        if rows.numel() == 0:
            continue                            # an idle expert is never loaded
        score = (weight * hit).sum(-1)[rows]    # each token picks an expert at most once
        h = linear(tokens[rows], p.act, w1[e], p.weight, b1[e], p.bias, p.act, f"{tag}expert_fc1")
        h = gelu(h, p.act, p.gelu_table, p.gelu_step_log2, p.gelu_range)
        y = linear(h, p.act, w2[e], p.weight, b2[e], p.bias, p.act, f"{tag}expert_fc2")
        acc.index_add_(0, rows, y * score.unsqueeze(-1))
    out = quantize(acc, p.act.frac_bits + p.gate_score.frac_bits, p.act, f"{tag}moe")
    return out.reshape(b, n, d)
