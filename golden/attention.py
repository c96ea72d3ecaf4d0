"""Reordered multi-head attention with the single-pass softmax, on raw words.

Hardware schedule (Edge-MoE's reordered attention): queries run in groups of
``P`` slots; the key stream cycles over keys 0..N-1, and query slot ``o`` is
(re)filled when the stream reaches key ``o``, so the query in slot ``o`` sees
keys o, o+1, .., N-1, 0, .., o-1.  Each cycle reads one key and at most one
query, whatever ``P``.  The online softmax state depends on that order, so
:func:`key_order` is the one definition the golden model, HLS and RTL share.
"""
from __future__ import annotations

import math

import torch

from .numerics.fixed import quantize
from .numerics.matmul import exact_matmul
from .numerics.softmax import normalise, online_softmax_state


def attention_scale(head_dim: int) -> tuple[int, float]:
    """``1/sqrt(head_dim) = 2**-shift * fold`` with ``fold`` in [1, 2).

    The shift is free in hardware (it only moves the binary point of the
    scores); ``fold`` (1.0 exactly when head_dim is a power of 4) is folded
    into the query rows of the qkv weights and bias before quantisation.
    """
    shift = math.ceil(math.log2(math.sqrt(head_dim)) - 1e-12)
    return shift, 2.0 ** shift / math.sqrt(head_dim)


def query_slot(query: int | torch.Tensor, parallel: int):
    """Slot of a query within its group: queries fill slots round-robin."""
    return query % parallel


def key_order(num_tokens: int, parallel: int) -> torch.Tensor:
    """[N, N] int64: ``order[i, t]`` is the key query ``i`` meets at step ``t``."""
    i = torch.arange(num_tokens).unsqueeze(1)
    t = torch.arange(num_tokens).unsqueeze(0)
    return (query_slot(i, parallel) + t) % num_tokens


def attention(qkv: torch.Tensor, num_heads: int, parallel: int, p, taps: dict | None = None,
              prefix: str = "") -> torch.Tensor:
    """Attention of raw qkv words [B, N, 3D] (``p.qkv``) -> raw output [B, N, D] (``p.act``).

    scores = cast(q . k * 2**-shift) to attn_score; online softmax per row in
    :func:`key_order`; probabilities exp(s - max) * (1/sum) cast to attn_prob;
    out = cast(sum_j prob_j * v_j) to act (exact sum, one rounding).
    ``taps`` (if given) receives ``{prefix}scores``, ``softmax_max``, ``softmax_inv``.
    """
    b, n, three_d = qkv.shape
    d = three_d // 3
    hd = d // num_heads
    q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(b, n, num_heads, hd).transpose(1, 2) for i in range(3))
    shift, _ = attention_scale(hd)
    acc = exact_matmul(q, k.transpose(-1, -2))  # [B, H, N, N], 2 * qkv frac bits
    scores = quantize(acc, 2 * p.qkv.frac_bits + shift, p.attn_score, f"{prefix}scores")
    m, inv = online_softmax_state(scores, key_order(n, parallel), p)
    probs = normalise(scores, m.unsqueeze(-1), inv.unsqueeze(-1), p, f"{prefix}probs")
    out = quantize(exact_matmul(probs, v), p.attn_prob.frac_bits + p.qkv.frac_bits, p.act, f"{prefix}attn")
    if taps is not None:
        taps[f"{prefix}scores"] = scores
        taps[f"{prefix}softmax_max"] = m
        taps[f"{prefix}softmax_inv"] = inv
    return out.transpose(1, 2).reshape(b, n, d)
