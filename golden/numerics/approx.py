"""Table-based elementary functions on raw words: exp, reciprocal, rsqrt, GELU.

Each function is the hardware's definition, step by step, in integer
arithmetic (no float on the data path).  Inputs are raw words with a stated
number of fraction bits; outputs are raw words of a profile type.  Internal
shifts truncate (floor) unless a step says otherwise; the final cast uses the
output type's rounding and overflow modes.

Shared shape: normalise the input to a mantissa on a table's domain, look up
two neighbouring entries, interpolate linearly with the low bits, shift back.
"""
from __future__ import annotations

import torch

from .fixed import FixedType, overflow_fix
from .tables import as_tensor, exp2_table, gelu_table, log2e_raw, recip_table, rsqrt_table

# Shifts are clamped to this so int64 shifts stay defined; any word shifted by
# more is zero (right) or past every type's rail (left).
_MAX_SHIFT = 62


def msb_index(x: torch.Tensor) -> torch.Tensor:
    """floor(log2(x)) of positive int64 words (leading-one position), by binary search."""
    p = torch.zeros_like(x)
    for s in (32, 16, 8, 4, 2, 1):
        hit = (x >> (p + s)) > 0
        p = p + hit.to(x.dtype) * s
    return p


def interpolate(table: torch.Tensor, index: torch.Tensor, low: torch.Tensor, low_bits: int) -> torch.Tensor:
    """``table[i] + floor((table[i+1] - table[i]) * low / 2**low_bits)``."""
    a = table[index]
    b = table[index + 1]
    return a + (((b - a) * low) >> low_bits)


def shift_round(v: torch.Tensor, shift: torch.Tensor, t: FixedType) -> torch.Tensor:
    """``v * 2**-shift`` cast to ``t`` for a per-element integer ``shift`` (either sign).

    Right shifts round by ``t.rounding``; left shifts are exact; then ``t``'s
    overflow mode applies.  ``v`` must be non-negative and below 2**40.
    """
    right = shift.clamp(min=0, max=_MAX_SHIFT - 1)
    left = (-shift).clamp(min=0, max=_MAX_SHIFT - 42)
    # one guard shift keeps the rounding helper's shift >= 1
    down = _round_shift_tensor(v << 1, right + 1, t.rounding)
    return overflow_fix(down << left, t)


def _round_shift_tensor(raw: torch.Tensor, shift: torch.Tensor, rounding: str) -> torch.Tensor:
    """Element-wise-shift version of :func:`fixed._round_shift` (shift >= 1)."""
    floor = raw >> shift
    rem = raw - (floor << shift)
    half = torch.ones_like(shift) << (shift - 1)
    if rounding == "TRN":
        return floor
    if rounding == "TRN_ZERO":
        return floor + ((raw < 0) & (rem != 0)).to(raw.dtype)
    above, tie = rem > half, rem == half
    up = {
        "RND": above | tie,
        "RND_ZERO": above | (tie & (raw < 0)),
        "RND_MIN_INF": above,
        "RND_INF": above | (tie & (raw >= 0)),
        "RND_CONV": above | (tie & ((floor & 1) == 1)),
    }[rounding]
    return floor + up.to(raw.dtype)


def exp_neg(x: torch.Tensor, x_frac: int, out: FixedType, table_frac: int, table_bits: int) -> torch.Tensor:
    """exp(x) for x <= 0 (positive inputs are treated as 0), as raw words of ``out``.

    1. t = floor(x * log2(e)) with ``table_frac`` fraction bits (log2(e) rounded to the same);
    2. t = n + f with integer n <= 0 and f in [0, 1);
    3. 2**f from the exp2 table (2**table_bits segments) with linear interpolation;
    4. shift right by -n and cast to ``out`` (its rounding; 0 when far below one LSB).
    """
    F, L = table_frac, table_bits
    x = torch.as_tensor(x, dtype=torch.int64).clamp(max=0)
    t = (x * log2e_raw(F)) >> x_frac
    n = t >> F
    f = t - (n << F)
    low_bits = F - L
    v = interpolate(as_tensor(exp2_table(F, L)), f >> low_bits, f & ((1 << low_bits) - 1), low_bits)
    return shift_round(v, F - out.frac_bits - n, out)


def reciprocal(x: torch.Tensor, x_frac: int, out: FixedType, table_frac: int, table_bits: int) -> torch.Tensor:
    """1 / x for x > 0, as raw words of ``out``; x <= 0 gives ``out``'s largest value.

    x = 2**e * m with m in [1, 2) (leading-one detect, mantissa truncated to
    ``table_frac`` fraction bits); 1/m from the table with interpolation;
    the result is shifted by -e and cast to ``out``.
    """
    F, L = table_frac, table_bits
    x = torch.as_tensor(x, dtype=torch.int64)
    positive = x > 0
    xs = torch.where(positive, x, torch.ones_like(x))
    p = msb_index(xs)
    m = torch.where(p <= F, xs << (F - p).clamp(min=0), xs >> (p - F).clamp(min=0))
    j = m - (1 << F)
    low_bits = F - L
    v = interpolate(as_tensor(recip_table(F, L)), j >> low_bits, j & ((1 << low_bits) - 1), low_bits)
    # value = v * 2**-F * 2**-(p - x_frac): raw with F + p - x_frac fraction bits
    y = shift_round(v, F + p - x_frac - out.frac_bits, out)
    return torch.where(positive, y, torch.full_like(y, out.max_raw))


def rsqrt(x: torch.Tensor, x_frac: int, out: FixedType, table_frac: int, table_bits: int) -> torch.Tensor:
    """1 / sqrt(x) for x > 0, as raw words of ``out``; x <= 0 gives ``out``'s largest value.

    x = 4**k * m with m in [1, 4); 1/sqrt(m) from a table over [1, 4)
    (2**table_bits segments per unit) with interpolation; shifted by -k.
    """
    F, L = table_frac, table_bits
    x = torch.as_tensor(x, dtype=torch.int64)
    positive = x > 0
    xs = torch.where(positive, x, torch.ones_like(x))
    e = msb_index(xs) - x_frac            # value in [2**e, 2**(e+1))
    e2 = e - torch.remainder(e, 2)        # even exponent <= e
    s = F - x_frac - e2                   # mantissa m = x * 2**s, F fraction bits, in [1, 4)
    m = torch.where(s >= 0, xs << s.clamp(min=0), xs >> (-s).clamp(min=0))
    j = m - (1 << F)
    low_bits = F - L
    v = interpolate(as_tensor(rsqrt_table(F, L)), j >> low_bits, j & ((1 << low_bits) - 1), low_bits)
    # value = v * 2**-F * 2**(-e2/2)
    y = shift_round(v, F + torch.div(e2, 2, rounding_mode="floor") - out.frac_bits, out)
    return torch.where(positive, y, torch.full_like(y, out.max_raw))


def gelu(x: torch.Tensor, act: FixedType, table_type: FixedType, step_log2: int, span: float) -> torch.Tensor:
    """GELU(x) = ReLU(x) - d(|x|) on raw words of ``act``, with d tabulated.

    d(t) = t * Phi(-t) is tabulated on [0, span) with step 2**-step_log2; the
    low ``act.frac_bits - step_log2`` bits of |x| interpolate linearly; d = 0
    from ``span`` on.  ReLU(x) - d is formed exactly and cast to ``act`` once.
    """
    x = torch.as_tensor(x, dtype=torch.int64)
    table = as_tensor(gelu_table(table_type, step_log2, span))
    segments = table.numel() - 1
    low_bits = act.frac_bits - step_log2
    a = x.abs()
    i = a >> low_bits
    beyond = i >= segments
    i = i.clamp(max=segments - 1)
    d = interpolate(table, i, a & ((1 << low_bits) - 1), low_bits)
    d = torch.where(beyond, torch.zeros_like(d), d)
    c = max(act.frac_bits, table_type.frac_bits)
    y = (x.clamp(min=0) << (c - act.frac_bits)) - (d << (c - table_type.frac_bits))
    from .fixed import quantize
    return quantize(y, c, act)
