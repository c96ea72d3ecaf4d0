"""Reciprocal unit: 1/x, bit-exact with :func:`edgemoe.golden.numerics.approx.reciprocal`.

Ports (raw words, ``raw * 2**-frac_bits``):

* ``in_data``  -- x, raw word of ``in_type`` (the profile's ``softmax_sum``: the
  online-softmax denominator); x <= 0 gives ``out``'s largest value;
* ``out_data`` -- 1/x, raw word of ``out`` (the profile's ``softmax_inv``).

Datapath (one word per cycle):

1. ``p = msb_index(x)`` (priority encoder);
2. normalise: ``m = floor(x * 2**(F - p))`` in [1, 2) with F fraction bits;
   the reciprocal table (``tables.recip_table(F, L)``, two read ports) at the
   top L bits of ``m - 1`` and the next entry;
3. linear interpolation with the low ``F - L`` bits;
4. :func:`~edgemoe.sim.units.base.shift_round_var` by ``F + p - x_frac - out.frac_bits``;
   non-positive inputs select ``out.max_raw``.
"""
from __future__ import annotations

from amaranth import Cat, Const, Mux, unsigned

from edgemoe.golden.numerics.fixed import FixedType
from edgemoe.golden.numerics.tables import recip_table

from .base import DatapathUnit, Pipe, msb_index, resize, table_lookup_round, width_for


def normalise(p: Pipe, name: str, x, in_type: FixedType, **carry):
    """Positive test, leading-one detect and left-justification of ``x`` (two stages).

    Returns (norm, msb, positive, carried) where ``norm`` (unsigned, ``wu`` bits)
    is ``x`` shifted so that its leading one is the top bit, ``msb`` its
    original position (0..wu-1); non-positive words are replaced by 1.
    """
    wu = in_type.bits - 1 if in_type.signed else in_type.bits  # magnitude bits of x > 0
    wu = max(wu, 1)
    pos = (x > 0) if in_type.signed else x.any()
    xs = resize(Mux(pos, x, 1), unsigned(wu))
    s1 = p.stage(f"{name}_pos", xs=xs, pos=pos, **carry)
    msb = msb_index(p.m, s1.xs, f"{name}_msb")
    lz = resize((wu - 1) - msb, width_for(0, wu - 1))
    norm = resize(s1.xs << lz, unsigned(wu))
    s2 = p.stage(f"{name}_norm", norm=norm, msb=msb, pos=s1.pos, **{k: getattr(s1, k) for k in carry})
    return s2.norm, s2.msb, s2.pos, s2, wu


def recip_datapath(p: Pipe, x, in_type: FixedType, out: FixedType, table_frac: int, table_bits: int,
                   name: str = "recip"):
    """Append the reciprocal stages to ``p``; returns the raw word of ``out`` (pre-register)."""
    F, L = table_frac, table_bits
    xf = in_type.frac_bits
    table = recip_table(F, L)
    low_bits = F - L
    if low_bits < 0:
        raise ValueError(f"reciprocal table: table_frac_bits {F} < recip_table_bits {L}")
    rom = p.rom(f"{name}_tbl", table)
    norm, msb, pos, _, wu = normalise(p, name, x, in_type)
    # m = norm * 2**(F + 1) / 2**wu has its leading one at F; j = m - 2**F = the F bits below it
    j = Cat(Const(0, F + 1), norm)[wu:wu + F]
    idx = j[low_bits:] if low_bits < F else Const(0, 1)
    low = j[:low_bits] if low_bits > 0 else Const(0, 1)
    sh_lo = F - xf - out.frac_bits
    sh_hi = sh_lo + wu - 1
    sh = resize(sh_lo + msb, width_for(sh_lo, sh_hi))
    y, s = table_lookup_round(p, f"{name}_rd", name, rom, idx, low, low_bits, max(table), sh, sh_lo, sh_hi, out,
                              pos=pos)
    return Mux(s.pos, y, out.max_raw)


class RecipUnit(DatapathUnit):
    """Stream unit: ``in_data`` raw ``in_type`` -> ``out_data`` raw ``out`` = 1/x (x <= 0: ``out.max_raw``)."""

    datapath = staticmethod(recip_datapath)

    @classmethod
    def from_config(cls, cfg) -> "RecipUnit":
        p = cfg.precision
        return cls(p.softmax_sum, p.softmax_inv, p.table_frac_bits, p.recip_table_bits)
