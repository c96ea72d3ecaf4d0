"""GELU unit: GELU(x) = ReLU(x) - d(|x|), bit-exact with :func:`edgemoe.golden.numerics.approx.gelu`.

Ports (raw words, ``raw * 2**-frac_bits``):

* ``in_data``  -- x, raw word of ``act`` (the profile's activation type);
* ``out_data`` -- GELU(x), raw word of ``act``.

The correction d(t) = t * Phi(-t) is the table ``tables.gelu_table(gelu_table
type, step_log2, span)`` (entries of the profile's ``gelu_table`` type, step
2**-step_log2 on [0, span), one ROM with two read ports).  Datapath (one
word per cycle):

1. ``a = |x|``; segment ``i = a >> (act.frac_bits - step_log2)``, clamped to
   the last segment, ``beyond = i >= segments`` (d = 0 there); table reads;
2. linear interpolation with the low bits of ``a`` (a pre-adder + multiplier);
3. ``y = (max(x, 0) << (c - act.frac)) - (d << (c - table.frac))`` exactly at
   ``c = max(act.frac_bits, table.frac_bits)`` fraction bits;
4. one cast to ``act`` (its rounding and overflow modes).
"""
from __future__ import annotations

from amaranth import Mux, unsigned

from edgemoe.golden.numerics.fixed import FixedType
from edgemoe.golden.numerics.tables import gelu_table

from .base import DatapathUnit, Pipe, interpolate_step, overflow_fix, resize, round_shift_const, width_for


def gelu_datapath(p: Pipe, x, act: FixedType, table_type: FixedType, step_log2: int, span: float,
                  name: str = "gelu"):
    """Append the GELU stages to ``p``; returns the raw word of ``act`` (pre-register)."""
    table = gelu_table(table_type, step_log2, span)
    segments = len(table) - 1
    af, tf = act.frac_bits, table_type.frac_bits
    low_bits = af - step_log2
    if low_bits < 0:
        raise ValueError(f"GELU table step 2**-{step_log2} is finer than the activation LSB 2**-{af}")
    rom = p.rom(f"{name}_tbl", table)
    w = act.bits
    a = resize(Mux(x < 0, -x, x), unsigned(w)) if act.signed else x
    i = a >> low_bits
    beyond = i >= segments
    ic = resize(Mux(beyond, segments - 1, i), width_for(0, segments - 1))
    low = a[:low_bits] if low_bits > 0 else 0
    xpos = resize(Mux(x > 0, x, 0), unsigned(max(act.max_raw.bit_length(), 1)))
    s1 = p.stage(f"{name}_rd", reads={"a": (rom, ic), "b": (rom, ic + 1)}, low=low, beyond=beyond, xpos=xpos)
    d, s3 = interpolate_step(p, f"{name}_ip", s1.a, s1.b, s1.low, low_bits, beyond=s1.beyond, xpos=s1.xpos)
    c = max(af, tf)
    d_max = max(table)
    d = resize(Mux(s3.beyond, 0, d), unsigned(max(d_max.bit_length(), 1)))
    y_lo, y_hi = -(d_max << (c - tf)), act.max_raw << (c - af)
    y = resize((s3.xpos << (c - af)) - (d << (c - tf)), width_for(y_lo, y_hi))
    s4 = p.stage(f"{name}_y", y=y)
    q = round_shift_const(s4.y, c - af, act.rounding)
    q_lo, q_hi = y_lo >> (c - af), (y_hi >> (c - af)) + 1
    return overflow_fix(q, act, lo=q_lo, hi=q_hi)


class GeluUnit(DatapathUnit):
    """Stream unit: ``in_data`` raw ``act`` -> ``out_data`` raw ``act`` = GELU(x) (table + interpolation)."""

    datapath = staticmethod(gelu_datapath)

    @staticmethod
    def port_types(act: FixedType, *rest) -> tuple[FixedType, FixedType]:
        return act, act

    @classmethod
    def from_config(cls, cfg) -> "GeluUnit":
        p = cfg.precision
        return cls(p.act, p.gelu_table, p.gelu_step_log2, p.gelu_range)
