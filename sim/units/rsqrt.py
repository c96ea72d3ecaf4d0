"""Rsqrt unit: 1/sqrt(x), bit-exact with :func:`edgemoe.golden.numerics.approx.rsqrt`.

Ports (raw words, ``raw * 2**-frac_bits``):

* ``in_data``  -- x, raw word of ``in_type`` (LayerNorm's ``var + eps``: the
  mean of squares of ``ln_centered`` words, so by default
  ``ufixed<2*ln_centered.bits-1, 2*ln_centered.int_bits-1>``, fraction bits
  ``2 * ln_centered.frac_bits``); x <= 0 gives ``out``'s largest value;
* ``out_data`` -- 1/sqrt(x), raw word of ``out`` (the profile's ``ln_inv_std``).

Datapath (one word per cycle):

1. ``p = msb_index(x)``; ``e = p - x_frac``; ``e2`` = ``e`` rounded down to even;
2. mantissa ``m = x * 2**(F - x_frac - e2)`` in [1, 4) with F fraction bits;
   the rsqrt table (``tables.rsqrt_table(F, L)``, 3 * 2**L + 1 entries, two
   read ports) at the top bits of ``m - 1`` and the next entry;
3. linear interpolation with the low ``F - L`` bits;
4. :func:`~edgemoe.sim.units.base.shift_round_var` by ``F + e2/2 - out.frac_bits``;
   non-positive inputs select ``out.max_raw``.
"""
from __future__ import annotations

from amaranth import Cat, Const, Mux, unsigned

from edgemoe.golden.numerics.fixed import FixedType
from edgemoe.golden.numerics.tables import rsqrt_table

from ..formats import rsqrt_input_type
from .base import DatapathUnit, Pipe, resize, table_lookup_round, width_for
from .recip import normalise



def rsqrt_datapath(p: Pipe, x, in_type: FixedType, out: FixedType, table_frac: int, table_bits: int,
                   name: str = "rsqrt"):
    """Append the rsqrt stages to ``p``; returns the raw word of ``out`` (pre-register)."""
    F, L = table_frac, table_bits
    xf = in_type.frac_bits
    table = rsqrt_table(F, L)
    low_bits = F - L
    if low_bits < 0:
        raise ValueError(f"rsqrt table: table_frac_bits {F} < rsqrt_table_bits {L}")
    rom = p.rom(f"{name}_tbl", table)
    norm, msb, pos, _, wu = normalise(p, name, x, in_type)
    # odd = (msb - x_frac) mod 2; the mantissa's leading one sits at F + odd
    odd = msb[0] ^ (xf & 1) if xf & 1 else msb[0]
    ext = Cat(Const(0, F + 2), norm)               # leading one at wu + F + 1
    m_ = Mux(odd, ext[wu:wu + F + 2], ext[wu + 1:wu + F + 2])
    j = resize(m_ - (1 << F), unsigned(F + 2))     # in [0, 3 * 2**F)
    idx = j[low_bits:] if low_bits < F + 2 else Const(0, 1)
    low = j[:low_bits] if low_bits > 0 else Const(0, 1)
    # shift = F + e2/2 - out.frac_bits with e2 = msb - x_frac - odd (even)
    shifts = [F + ((q - xf) - ((q - xf) % 2)) // 2 - out.frac_bits for q in range(wu)]
    sh_lo, sh_hi = min(shifts), max(shifts)
    half_e2 = (msb - xf - odd) >> 1
    sh = resize((F - out.frac_bits) + half_e2, width_for(sh_lo, sh_hi))
    y, s = table_lookup_round(p, f"{name}_rd", name, rom, idx, low, low_bits, max(table), sh, sh_lo, sh_hi, out,
                              pos=pos)
    return Mux(s.pos, y, out.max_raw)


class RsqrtUnit(DatapathUnit):
    """Stream unit: ``in_data`` raw ``in_type`` -> ``out_data`` raw ``out`` = 1/sqrt(x) (x <= 0: ``out.max_raw``)."""

    datapath = staticmethod(rsqrt_datapath)

    @classmethod
    def from_config(cls, cfg) -> "RsqrtUnit":
        p = cfg.precision
        return cls(rsqrt_input_type(p), p.ln_inv_std, p.table_frac_bits, p.rsqrt_table_bits)
