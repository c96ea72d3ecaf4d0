"""Softmax on raw words: the single-pass (online) form of attention, and the gate's.

Attention (order-dependent, so the golden model walks the hardware's key
order): per row keep a running max ``m`` and a running sum ``l`` of exps,
rescaled whenever the max grows; after the last key store ``m`` and
``1 / l``; A*V then normalises each probability on the fly as
``exp(s - m) * (1/l)``.

The gate softmax is the plain max-exp-sum form over the (few) experts; its
sum is exact so the result does not depend on order.
"""
from __future__ import annotations

import torch

from .approx import exp_neg, reciprocal
from .fixed import quantize


def exp_of(x: torch.Tensor, x_frac: int, p) -> torch.Tensor:
    """exp(x), x <= 0, with profile ``p``'s exp unit (raw words of ``p.exp``)."""
    return exp_neg(x, x_frac, p.exp, p.table_frac_bits, p.exp_table_bits)


def recip_of(x: torch.Tensor, x_frac: int, p) -> torch.Tensor:
    """1/x with profile ``p``'s reciprocal unit (raw words of ``p.softmax_inv``)."""
    return reciprocal(x, x_frac, p.softmax_inv, p.table_frac_bits, p.recip_table_bits)


def online_init(shape: tuple[int, ...], p) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial state: max = the score type's most negative value, sum = 0."""
    m = torch.full(shape, p.attn_score.min_raw, dtype=torch.int64)
    return m, torch.zeros(shape, dtype=torch.int64)


def online_step(m: torch.Tensor, l: torch.Tensor, s: torch.Tensor, p) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold one score ``s`` (raw ``p.attn_score``) into the state (max, sum).

    m' = max(m, s);  l' = cast(l * exp(m - m') + exp(s - m'))  (one rounding, to ``p.softmax_sum``).
    """
    sf = p.attn_score.frac_bits
    m_new = torch.maximum(m, s)
    alpha, e = exp_of(torch.stack([m - m_new, s - m_new]), sf, p)  # two exp units, one call
    ef, lf = p.exp.frac_bits, p.softmax_sum.frac_bits
    acc = l * alpha + (e << lf)  # fraction bits: lf + ef
    return m_new, quantize(acc, lf + ef, p.softmax_sum)


def online_finish(l: torch.Tensor, p) -> torch.Tensor:
    """The stored per-row state 1/l (raw ``p.softmax_inv``)."""
    return recip_of(l, p.softmax_sum.frac_bits, p)


def normalise(s: torch.Tensor, m: torch.Tensor, inv: torch.Tensor, p, tag: str | None = None) -> torch.Tensor:
    """Probability exp(s - m) * (1/l) as raw ``p.attn_prob`` (broadcasts m, inv)."""
    e = exp_of(s - m, p.attn_score.frac_bits, p)
    return quantize(e * inv, p.exp.frac_bits + p.softmax_inv.frac_bits, p.attn_prob, tag)


def online_softmax_state(scores: torch.Tensor, order: torch.Tensor, p) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the online softmax over the last axis of ``scores`` in key ``order``.

    ``scores`` [..., R, N] raw ``p.attn_score``; ``order`` [R, N] gives, per
    row, the key visited at each step.  Returns (max, 1/sum), each [..., R].
    """
    ordered = torch.gather(scores, -1, order.expand(scores.shape))
    # Same arithmetic as repeated online_step, with the order-free parts hoisted:
    # the running max is a cumulative max, so every exp can be taken at once;
    # only the rounded sum recurrence stays sequential.
    m_run = torch.cummax(ordered, dim=-1).values
    m0, l = online_init(scores.shape[:-1], p)
    m_prev = torch.cat([m0.unsqueeze(-1), m_run[..., :-1]], dim=-1)
    alpha, e = exp_of(torch.stack([m_prev - m_run, ordered - m_run]), p.attn_score.frac_bits, p)
    lf, ef = p.softmax_sum.frac_bits, p.exp.frac_bits
    e = e << lf
    for step in range(scores.shape[-1]):
        l = quantize(l * alpha[..., step] + e[..., step], lf + ef, p.softmax_sum)
    return m_run[..., -1], online_finish(l, p)


def gate_softmax(logits: torch.Tensor, p) -> torch.Tensor:
    """Softmax over the last axis of gate logits (raw ``p.gate_logit``) -> raw ``p.gate_score``."""
    lf = p.gate_logit.frac_bits
    m = logits.max(dim=-1, keepdim=True).values
    e = exp_of(logits - m, lf, p)
    total = e.sum(dim=-1, keepdim=True)  # exact
    inv = recip_of(total, p.exp.frac_bits, p)
    return quantize(e * inv, p.exp.frac_bits + p.softmax_inv.frac_bits, p.gate_score)
