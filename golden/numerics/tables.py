"""The approximation tables of the hardware, as raw integer words.

The single source of every table and constant: the HLS templates and the RTL
generators emit these integers, never recompute them.  Each table has one
extra entry at the end so linear interpolation never reads past it.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from .fixed import FixedType, from_float


def _round_half_even(x: float) -> int:
    return int(round(x))  # Python's round() ties to even


@lru_cache(maxsize=None)
def log2e_raw(frac_bits: int) -> int:
    """log2(e) with ``frac_bits`` fraction bits (the exp unit's input scaling)."""
    return _round_half_even(math.log2(math.e) * 2 ** frac_bits)


@lru_cache(maxsize=None)
def exp2_table(frac_bits: int, segments_log2: int) -> tuple[int, ...]:
    """``2**(i / 2**L)`` for i = 0..2**L, with ``frac_bits`` fraction bits (values in [1, 2])."""
    n = 1 << segments_log2
    return tuple(_round_half_even(2.0 ** (i / n) * 2 ** frac_bits) for i in range(n + 1))


@lru_cache(maxsize=None)
def recip_table(frac_bits: int, segments_log2: int) -> tuple[int, ...]:
    """``1 / (1 + i / 2**L)`` for i = 0..2**L, with ``frac_bits`` fraction bits (values in [0.5, 1])."""
    n = 1 << segments_log2
    return tuple(_round_half_even(2 ** frac_bits * n / (n + i)) for i in range(n + 1))


@lru_cache(maxsize=None)
def rsqrt_table(frac_bits: int, segments_log2: int) -> tuple[int, ...]:
    """``1 / sqrt(1 + i / 2**L)`` for i = 0..3 * 2**L (mantissas on [1, 4]), values in [0.5, 1]."""
    n = 1 << segments_log2
    return tuple(_round_half_even(2 ** frac_bits / math.sqrt(1 + i / n)) for i in range(3 * n + 1))


def gelu_correction(t: float) -> float:
    """d(t) = t * Phi(-t): GELU(x) = ReLU(x) - d(|x|)."""
    return t * 0.5 * math.erfc(t / math.sqrt(2.0))


@lru_cache(maxsize=None)
def gelu_table(table_type: FixedType, step_log2: int, span: float) -> tuple[int, ...]:
    """d(i * 2**-step_log2) for i = 0..span * 2**step_log2, raw words of ``table_type``."""
    n = int(math.ceil(span * (1 << step_log2)))
    values = [gelu_correction(i / (1 << step_log2)) for i in range(n + 1)]
    return tuple(int(v) for v in from_float(torch.tensor(values, dtype=torch.float64), table_type))


def gelu_table_peak() -> float:
    """Largest value of d(t) on t >= 0 (about 0.17 at t ~ 0.75), the table type must hold it."""
    return max(gelu_correction(i / 4096) for i in range(0, 6 * 4096))


@lru_cache(maxsize=None)
def as_tensor(table: tuple[int, ...]) -> torch.Tensor:
    """A table as an int64 tensor (cached: tables are looked up on every call)."""
    return torch.tensor(table, dtype=torch.int64)


def entry_bits(p) -> dict[str, int]:
    """Bits of the widest entry of each of profile ``p``'s tables (``exp2``, ``recip``, ``rsqrt``, ``gelu``; one
    more for a sign where entries are negative): the width a ROM of the table needs, and the width of what an
    interpolation between two of its entries can give."""
    tables = {"exp2": exp2_table(p.table_frac_bits, p.exp_table_bits),
              "recip": recip_table(p.table_frac_bits, p.recip_table_bits),
              "rsqrt": rsqrt_table(p.table_frac_bits, p.rsqrt_table_bits),
              "gelu": gelu_table(p.gelu_table, p.gelu_step_log2, p.gelu_range)}
    return {k: max(1, max(abs(int(v)) for v in t).bit_length()) + (min(t) < 0) for k, t in tables.items()}
