"""Port formats of the units that are not a profile field as such, and the naive GELU model.

Kept free of Amaranth so that the cocotb testbenches (which only need types
and exact models) import quickly.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from edgemoe.golden.numerics.fixed import FixedType, from_float

#: grid step of the naive dense GELU table is 2**-min(act.frac_bits, NAIVE_STEP_LOG2)
NAIVE_STEP_LOG2 = 12


def exp_input_type(p) -> FixedType:
    """The exp unit's input type for profile ``p``: a difference of two ``attn_score`` words."""
    s = p.attn_score
    return FixedType(s.bits + 1, s.int_bits + 1, True)


def rsqrt_input_type(p) -> FixedType:
    """The rsqrt unit's input type for profile ``p``: var + eps of ``ln_centered`` words.

    var <= (2**(b-1))**2 = 2**(2b-2) raw, plus eps: fits ``2b - 1`` unsigned bits,
    with ``2 * ln_centered.frac_bits`` fraction bits (as golden.numerics.layernorm).
    """
    c = p.ln_centered
    return FixedType(2 * c.bits - 1, 2 * c.int_bits - 1, False)


def naive_grid(act: FixedType, step_log2: int, span: float) -> tuple[int, int, int]:
    """(s, shift, span_raw): grid step 2**-s, index shift act.frac - s, span in act raw."""
    s = min(act.frac_bits, step_log2)
    span_raw = span * 2 ** act.frac_bits
    if span_raw != int(span_raw) or span * 2 ** s != int(span * 2 ** s):
        raise ValueError(f"span {span} is not a multiple of the grid step 2**-{s}")
    return s, act.frac_bits - s, int(span_raw)


@lru_cache(maxsize=None)
def naive_gelu_table(act: FixedType, step_log2: int = NAIVE_STEP_LOG2, span: float = 5.5) -> tuple[int, ...]:
    """GELU(-span + k * 2**-s) as raw ``act`` words, k = 0 .. 2 * span * 2**s - 1 (float64 erf)."""
    s, _, _ = naive_grid(act, step_log2, span)
    n = int(2 * span * 2 ** s)
    xs = -span + torch.arange(n, dtype=torch.float64) / 2 ** s
    g = 0.5 * xs * (1.0 + torch.erf(xs / math.sqrt(2.0)))
    return tuple(int(v) for v in from_float(g, act))


def naive_gelu(x: torch.Tensor, act: FixedType, step_log2: int = NAIVE_STEP_LOG2, span: float = 5.5) -> torch.Tensor:
    """The naive unit's exact output on raw ``act`` words: the table entry at or below x;
    0 below -span, x from span on."""
    s, shift, span_raw = naive_grid(act, step_log2, span)
    x = torch.as_tensor(x, dtype=torch.int64)
    table = torch.tensor(naive_gelu_table(act, step_log2, span), dtype=torch.int64)
    k = ((x + span_raw) >> shift).clamp(0, table.numel() - 1)
    y = table[k]
    y = torch.where(x < -span_raw, torch.zeros_like(y), y)
    return torch.where(x >= span_raw, x, y)
