"""Port formats of the units that are not a profile field as such, and the naive GELU model.

Kept free of Amaranth so that the cocotb testbenches (which only need types
and exact models) import quickly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
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


# --- LayerNorm unit: exact ranges, constant dividers, row-buffer plan ---------------------------------

#: pipeline stages of :func:`edgemoe.sim.units.rsqrt.rsqrt_datapath` (normalise 2, table read 1,
#: interpolate 2, shift-round 2); the LayerNorm unit asserts it against the built lane
RSQRT_DEPTH = 7
#: quotient bits the LayerNorm's sequential dividers settle per cycle (at least; more for short rows)
LN_DIV_STEP_BITS = 4


@dataclass(frozen=True)
class DividerPlan:
    """``floor(n / divisor)`` for ``0 <= n <= dividend_max`` as ``floor((n >> shift) / odd)``
    (``divisor = odd * 2**shift``, odd ``odd``): the shift is free, the odd part is a restoring
    long division with a remainder register of ``bit_length(odd - 1)`` bits, ``step_bits``
    quotient bits per cycle, ``cycles`` cycles (0: ``odd == 1``, only the shift).

    Exact for the whole range: the quotient is below ``2**quotient_bits`` (``quotient_bits =
    cycles * step_bits``), so ``n >> shift < odd * 2**quotient_bits`` and the top part
    ``(n >> shift) >> quotient_bits`` -- the initial remainder -- is below ``odd``; long division
    from there is exact integer division (no rounding step, no bound on a reciprocal's error).
    """

    divisor: int
    dividend_max: int
    shift: int
    odd: int
    quotient_bits: int
    step_bits: int
    cycles: int

    @property
    def remainder_bits(self) -> int:
        return max((self.odd - 1).bit_length(), 1)


def divider_plan(divisor: int, dividend_max: int, max_cycles: int, step_bits: int = LN_DIV_STEP_BITS) -> DividerPlan:
    """The cheapest :class:`DividerPlan` finishing in at most ``max_cycles`` cycles."""
    if divisor < 1 or dividend_max < 0:
        raise ValueError(f"divider: divisor {divisor}, dividend_max {dividend_max}")
    shift = (divisor & -divisor).bit_length() - 1
    odd = divisor >> shift
    q_max = (dividend_max >> shift) // odd
    if odd == 1:
        return DividerPlan(divisor, dividend_max, shift, 1, max(q_max.bit_length(), 1), 0, 0)
    qb = max(q_max.bit_length(), 1)
    k = max(step_bits, -(-qb // max(max_cycles, 1)))
    cycles = -(-qb // k)
    plan = DividerPlan(divisor, dividend_max, shift, odd, cycles * k, k, cycles)
    assert (dividend_max >> shift) >> plan.quotient_bits < odd
    return plan


@dataclass(frozen=True)
class LayerNormPlan:
    """Sizes and timing of the LayerNorm unit (``edgemoe.sim.units.layernorm``) for one config.

    Raw words throughout (``raw * 2**-frac_bits``); ``sum_max`` bounds the row sum of
    ``x - act.min_raw`` (act fraction bits), ``sumsq_max`` the row sum of ``c * c``
    (``2 * ln_centered.frac_bits``), ``var_type`` is the rsqrt input (var + eps).
    Timing in cycles, see the unit's module doc: ``slots`` row buffers give one word per
    cycle; ``latency`` = a row's last input word -> its first output word.
    """

    dim: int
    eps_raw: int
    sum_max: int
    sumsq_max: int
    var_type: FixedType
    mean_div: DividerPlan
    var_div: DividerPlan
    rsqrt_depth: int
    out_depth: int                 #: C pass: read, centre, c * r, cast, affine, output register
    slots: int
    latency: int

    def params(self) -> dict:
        """The design parameters, for ``unit.json`` and the perf records."""
        return {"dim": self.dim, "eps_raw": self.eps_raw, "slots": self.slots, "var": str(self.var_type),
                "mean_div": f"/{self.mean_div.divisor} = >>{self.mean_div.shift} /{self.mean_div.odd} "
                            f"{self.mean_div.cycles} cycles",
                "var_div": f"/{self.var_div.divisor} = >>{self.var_div.shift} /{self.var_div.odd} "
                           f"{self.var_div.cycles} cycles",
                "latency": self.latency}


def layernorm_var_type(p, eps_raw: int) -> FixedType:
    """The rsqrt input ``var + eps`` (``2 * ln_centered.frac_bits`` fraction bits, unsigned):
    :func:`rsqrt_input_type` unless eps does not fit beside the largest variance."""
    c = p.ln_centered
    var_max = max(c.min_raw ** 2, c.max_raw ** 2)
    t = rsqrt_input_type(p)
    bits = (var_max + eps_raw).bit_length()
    if bits <= t.bits:
        return t
    return FixedType(bits, bits - 2 * c.frac_bits, False)


def layernorm_plan(cfg) -> LayerNormPlan:
    """:class:`LayerNormPlan` of ``cfg`` (row length ``model.embed_dim``, eps ``model.ln_eps``)."""
    from edgemoe.golden.numerics.layernorm import eps_raw as _eps_raw

    p, d = cfg.precision, cfg.model.embed_dim
    if d < 2:
        raise ValueError(f"LayerNorm unit: row length {d} < 2")
    a, c = p.act, p.ln_centered
    eps = _eps_raw(cfg.model.ln_eps, p)
    sum_max = d * (a.max_raw - a.min_raw)
    sumsq_max = d * max(c.min_raw ** 2, c.max_raw ** 2)
    # a divider must be free again before the next row's sum arrives (rows are >= d cycles apart)
    mean_div = divider_plan(d, sum_max, d - 1)
    var_div = divider_plan(d, sumsq_max, d - 1)
    out_depth = 6
    # a row's slot is busy from its first word in to the C pass's last read: 3 rows of d words plus
    # (mean division + 2) + (B pass tail 3 + var division + 1 + rsqrt + 1) cycles of hand-over
    hand = mean_div.cycles + 2 + var_div.cycles + RSQRT_DEPTH + 5
    slots = 3 + -(-(hand - 2) // d)
    latency = d + mean_div.cycles + var_div.cycles + RSQRT_DEPTH + 6 + out_depth
    return LayerNormPlan(d, eps, sum_max, sumsq_max, layernorm_var_type(p, eps), mean_div, var_div,
                         RSQRT_DEPTH, out_depth, slots, latency)
