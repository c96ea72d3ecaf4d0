"""Fixed-point types and the quantise operation: the base of the numerics spec.

A value of :class:`FixedType` ``T`` is stored as a *raw word* ``r`` (an
``int64`` tensor element) and means ``r * 2**-T.frac_bits``.  Every hardware
operation in :mod:`edgemoe.golden.numerics` consumes and produces raw words;
floats appear only at the edges (:func:`from_float`, :func:`to_float`).

Rounding and overflow modes follow Xilinx ``ap_fixed`` (UG1399) exactly, so a
type prints as the C++ type the generated kernel uses (:meth:`FixedType.cpp`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

#: Rounding modes (ap_fixed ``AP_*`` names) and what happens at the cut.
ROUNDING_MODES: dict[str, str] = {
    "TRN": "floor (truncate towards minus infinity)",
    "TRN_ZERO": "truncate towards zero",
    "RND": "round to nearest, ties towards plus infinity",
    "RND_ZERO": "round to nearest, ties towards zero",
    "RND_MIN_INF": "round to nearest, ties towards minus infinity",
    "RND_INF": "round to nearest, ties away from zero",
    "RND_CONV": "round to nearest, ties to even",
}
#: Overflow modes.  WRAP keeps the low bits (two's complement); SAT clamps.
OVERFLOW_MODES: dict[str, str] = {
    "WRAP": "keep the low bits (two's complement wrap-around)",
    "SAT": "clamp to the most negative / most positive value",
}
#: Widest raw word the golden model handles (int64 with one guard bit).
MAX_BITS = 63


class FixedTypeError(ValueError):
    """A fixed-point type that cannot exist or cannot be parsed."""


@dataclass(frozen=True)
class FixedType:
    """``ap_fixed<bits, int_bits, rounding, overflow>`` (``ap_ufixed`` if unsigned).

    ``int_bits`` counts the sign bit for signed types and may be negative or
    larger than ``bits`` (as in ap_fixed); ``frac_bits = bits - int_bits``.
    """

    bits: int
    int_bits: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "SAT"

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= MAX_BITS:
            raise FixedTypeError(f"bits = {self.bits!r}: must be an integer in 1..{MAX_BITS}")
        if isinstance(self.int_bits, bool) or not isinstance(self.int_bits, int) or not -MAX_BITS <= self.int_bits <= 2 * MAX_BITS:
            raise FixedTypeError(f"int_bits = {self.int_bits!r}: must be an integer in -{MAX_BITS}..{2 * MAX_BITS}")
        if self.rounding not in ROUNDING_MODES:
            raise FixedTypeError(f"rounding = {self.rounding!r}: must be one of {', '.join(ROUNDING_MODES)}")
        if self.overflow not in OVERFLOW_MODES:
            raise FixedTypeError(f"overflow = {self.overflow!r}: must be one of {', '.join(OVERFLOW_MODES)}")

    # --- derived facts -------------------------------------------------
    @property
    def frac_bits(self) -> int:
        """Bits after the binary point; the LSB is ``2**-frac_bits``."""
        return self.bits - self.int_bits

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac_bits

    @property
    def min_raw(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_raw(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def min_value(self) -> float:
        return self.min_raw * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_raw * self.lsb

    def with_modes(self, rounding: str | None = None, overflow: str | None = None) -> "FixedType":
        return FixedType(self.bits, self.int_bits, self.signed,
                         rounding or self.rounding, overflow or self.overflow)

    # --- spelling --------------------------------------------------------
    def __str__(self) -> str:
        kind = "fixed" if self.signed else "ufixed"
        return f"{kind}<{self.bits},{self.int_bits},{self.rounding},{self.overflow}>"

    def cpp(self) -> str:
        """The Vitis HLS C++ type, e.g. ``ap_fixed<32,10,AP_TRN,AP_SAT>``."""
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{kind}<{self.bits},{self.int_bits},AP_{self.rounding},AP_{self.overflow}>"

    _PATTERN = re.compile(
        r"^\s*(?:ap_)?(u?fixed)\s*<\s*(-?\d+)\s*,\s*(-?\d+)\s*"
        r"(?:,\s*(?:AP_)?([A-Z_]+)\s*)?(?:,\s*(?:AP_)?([A-Z_]+)\s*)?>\s*$",
        re.IGNORECASE)

    @classmethod
    def parse(cls, text: str, default_rounding: str = "TRN", default_overflow: str = "SAT") -> "FixedType":
        """Parse ``fixed<32,10,TRN,SAT>``, ``ufixed<8,0>`` or ``ap_fixed<16,2,AP_RND>``."""
        if isinstance(text, FixedType):
            return text
        m = cls._PATTERN.match(str(text))
        if not m:
            raise FixedTypeError(
                f"{text!r} is not a fixed-point type; write e.g. 'fixed<32,10,TRN,SAT>' or 'ufixed<8,0>'")
        kind, bits, int_bits, rnd, ovf = m.groups()
        return cls(int(bits), int(int_bits), kind.lower() == "fixed",
                   (rnd or default_rounding).upper(), (ovf or default_overflow).upper())


# --- quantisation --------------------------------------------------------

def _round_shift(raw: torch.Tensor, shift: int, rounding: str) -> torch.Tensor:
    """``raw * 2**-shift`` rounded to an integer by ``rounding`` (``shift`` > 0)."""
    floor = raw >> shift  # arithmetic shift = floor division by 2**shift
    if rounding == "TRN":
        return floor
    rem = raw - (floor << shift)  # in [0, 2**shift)
    half = 1 << (shift - 1)
    if rounding == "TRN_ZERO":
        return floor + ((raw < 0) & (rem != 0)).to(raw.dtype)
    above = rem > half
    tie = rem == half
    if rounding == "RND":
        up = above | tie
    elif rounding == "RND_ZERO":
        up = above | (tie & (raw < 0))
    elif rounding == "RND_MIN_INF":
        up = above
    elif rounding == "RND_INF":
        up = above | (tie & (raw >= 0))
    elif rounding == "RND_CONV":
        up = above | (tie & ((floor & 1) == 1))
    else:  # pragma: no cover - FixedType validates the mode
        raise FixedTypeError(f"unknown rounding mode {rounding!r}")
    return floor + up.to(raw.dtype)


def align(raw: torch.Tensor, from_frac: int, to_frac: int, rounding: str = "TRN") -> torch.Tensor:
    """Re-express raw words with ``from_frac`` fraction bits using ``to_frac`` bits.

    Widening (``to_frac >= from_frac``) is an exact left shift; narrowing rounds
    by ``rounding``.  No overflow handling: the result is an unbounded integer.
    """
    shift = from_frac - to_frac
    if shift <= 0:
        return raw << (-shift)
    return _round_shift(raw, shift, rounding)


def overflow_fix(raw: torch.Tensor, t: FixedType) -> torch.Tensor:
    """Bring integer words into ``t``'s range by its overflow mode."""
    if t.overflow == "SAT":
        return raw.clamp(t.min_raw, t.max_raw)
    mask = (1 << t.bits) - 1
    low = raw & mask
    if t.signed:
        low = low - ((low >> (t.bits - 1)) & 1) * (1 << t.bits)
    return low


def quantize(raw: torch.Tensor, from_frac: int, t: FixedType, tag: str | None = None) -> torch.Tensor:
    """Cast raw words with ``from_frac`` fraction bits to type ``t`` (ap_fixed assignment).

    Rounds by ``t.rounding``, then fixes overflow by ``t.overflow``.  When a
    :class:`~edgemoe.golden.numerics.overflow.OverflowCounter` is active and
    ``tag`` is given, values outside ``t``'s range are counted under ``tag``.
    """
    from .overflow import record  # local import: overflow imports this module

    raw = torch.as_tensor(raw, dtype=torch.int64)
    rounded = align(raw, from_frac, t.frac_bits, t.rounding)
    if tag is not None:
        record(tag, rounded, t)
    return overflow_fix(rounded, t)


def from_float(x: torch.Tensor | float, t: FixedType, tag: str | None = None) -> torch.Tensor:
    """Quantise real values to raw words of ``t`` (as assigning a double to ap_fixed).

    Exact for |x| * 2**frac_bits < 2**50: the scaling by a power of two is exact
    in float64, then the same rounding rules as :func:`quantize` apply.
    """
    from .overflow import record

    x64 = torch.as_tensor(x, dtype=torch.float64)
    if not torch.isfinite(x64).all():
        raise FixedTypeError(f"cannot quantise non-finite values to {t}")
    # Keep two guard fraction bits in the integer image so every rounding mode
    # sees the exact fraction (quarters suffice to tell floor, tie and above).
    guard = 2
    scaled = x64 * (2.0 ** (t.frac_bits + guard))
    floor = torch.floor(scaled)
    # a non-zero remainder below the guard bits is a sticky bit: it breaks ties
    sticky = (scaled != floor).to(torch.int64)
    hi = floor.clamp(-(2.0 ** 60), 2.0 ** 60).to(torch.int64)  # beyond any type's range
    raw = hi * 2 + sticky  # one more guard bit holding the sticky flag
    rounded = _round_shift(raw, guard + 1, t.rounding)
    if tag is not None:
        record(tag, rounded, t)
    return overflow_fix(rounded, t)


def to_float(raw: torch.Tensor, t: FixedType | int) -> torch.Tensor:
    """Real values (float64) of raw words of type ``t`` (or with ``t`` fraction bits)."""
    frac = t if isinstance(t, int) else t.frac_bits
    return torch.as_tensor(raw).to(torch.float64) * (2.0 ** -frac)


def add(a: torch.Tensor, a_frac: int, b: torch.Tensor, b_frac: int, t: FixedType,
        tag: str | None = None) -> torch.Tensor:
    """``a + b`` formed exactly at the finer of the two scalings, cast once to ``t``."""
    frac = max(a_frac, b_frac)
    return quantize(align(a, a_frac, frac) + align(b, b_frac, frac), frac, t, tag)
