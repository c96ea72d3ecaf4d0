"""Exp unit: exp(x) for x <= 0, bit-exact with :func:`edgemoe.golden.numerics.approx.exp_neg`.

Ports (raw words, ``raw * 2**-frac_bits``):

* ``in_data``  -- x, raw word of ``in_type`` (for attention: ``s - m`` of two
  ``attn_score`` words, i.e. ``fixed<attn_score.bits+1, attn_score.int_bits+1>``);
  positive inputs are treated as 0, as in the golden;
* ``out_data`` -- exp(x), raw word of ``out`` (the profile's ``exp`` type).

Datapath (one word per cycle):

1. ``t = floor(x * log2e_raw(F) / 2**x_frac)`` (constant multiplier);
2. ``n = t >> F`` (integer part, <= 0), ``f`` = low F bits; the exp2 table
   (``tables.exp2_table(F, L)``, two read ports) at ``f >> (F-L)`` and the next entry;
3. linear interpolation with the low ``F-L`` bits of ``f``;
4. :func:`~edgemoe.sim.units.base.shift_round_var` by ``F - out.frac_bits - n``.
"""
from __future__ import annotations

from amaranth import Const, Mux

from edgemoe.golden.numerics.fixed import FixedType
from edgemoe.golden.numerics.tables import exp2_table, log2e_raw

from ..formats import exp_input_type
from .base import DatapathUnit, Pipe, resize, table_lookup_round, width_for


def exp_datapath(p: Pipe, x, in_type: FixedType, out: FixedType, table_frac: int, table_bits: int,
                 name: str = "exp"):
    """Append the exp stages to pipe ``p``; ``x`` is a raw word of ``in_type``. Returns the
    (combinational, from registered operands) raw word of ``out``, before the output register."""
    F, L = table_frac, table_bits
    xf = in_type.frac_bits
    c = log2e_raw(F)
    table = exp2_table(F, L)
    low_bits = F - L
    if low_bits < 0:
        raise ValueError(f"exp table: table_frac_bits {F} < exp_table_bits {L}")
    # static range of n (integer part of t), for the shifter
    x_lo = min(in_type.min_raw, 0)
    n_lo = ((x_lo * c) >> xf) >> F
    rom = p.rom(f"{name}_exp2", table)

    # x.clamp(max=0): negative words pass, the rest become 0
    xc = Mux(x < 0, x, 0) if in_type.signed else Const(0, 1)
    s1 = p.stage(f"{name}_s1", prod=xc * c)
    t = s1.prod >> xf                         # floor (arithmetic shift)
    n = t >> F
    f = t[:F]
    idx = f[low_bits:] if low_bits < F else Const(0, 1)
    low = f[:low_bits] if low_bits > 0 else Const(0, 1)
    sh_lo, sh_hi = F - out.frac_bits, F - out.frac_bits - n_lo
    sh = resize((F - out.frac_bits) - n, width_for(sh_lo, sh_hi))
    y, _ = table_lookup_round(p, f"{name}_s2", name, rom, idx, low, low_bits, max(table), sh, sh_lo, sh_hi, out)
    return y


class ExpUnit(DatapathUnit):
    """Stream unit: ``in_data`` raw ``in_type`` (x <= 0) -> ``out_data`` raw ``out`` = exp(x)."""

    datapath = staticmethod(exp_datapath)

    @classmethod
    def from_config(cls, cfg) -> "ExpUnit":
        p = cfg.precision
        return cls(exp_input_type(p), p.exp, p.table_frac_bits, p.exp_table_bits)
