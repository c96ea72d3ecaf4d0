"""Naive GELU reference unit: one dense table of GELU itself, no interpolation.

Not part of the numerics spec: the baseline that the GELU unit
(:mod:`edgemoe.sim.units.gelu`, ReLU minus a small interpolated correction
table) is compared against in the resource report.  The straightforward
design reaches a similar accuracy (~1e-4) by tabulating GELU(x) directly:

* grid step ``2**-s`` with ``s = min(act.frac_bits, step_log2)`` (default
  ``step_log2 = 12``: nearest-below lookup error <= max|GELU'| * 2**-12 ~ 2.8e-4)
  over ``[-span, span)``: ``2 * span * 2**s`` entries of ``act`` words;
* ``x < -span`` gives 0, ``x >= span`` gives ``x``.

Ports: ``in_data`` / ``out_data`` raw words of ``act``.  The Python model
(:func:`edgemoe.sim.formats.naive_gelu`) is the exact expectation for its testbench.
"""
from __future__ import annotations

from amaranth import Module, Mux

from edgemoe.golden.numerics.fixed import FixedType

from ..formats import NAIVE_STEP_LOG2, naive_gelu, naive_gelu_table, naive_grid  # noqa: F401 (re-export)
from .base import Pipe, StreamUnit, resize, shape_of, width_for

class NaiveGeluUnit(StreamUnit):
    """Stream unit: ``in_data`` raw ``act`` -> ``out_data`` raw ``act`` = dense-table GELU(x)."""

    def __init__(self, act: FixedType, step_log2: int = NAIVE_STEP_LOG2, span: float = 5.5):
        self.act, self.step_log2, self.span = act, step_log2, span
        super().__init__(shape_of(act), shape_of(act))

    @classmethod
    def from_config(cls, cfg) -> "NaiveGeluUnit":
        p = cfg.precision
        return cls(p.act, NAIVE_STEP_LOG2, p.gelu_range)

    def elaborate(self, platform):
        m = Module()
        p = Pipe(m, self)
        table = naive_gelu_table(self.act, self.step_log2, self.span)
        _, shift, span_raw = naive_grid(self.act, self.step_log2, self.span)
        rom = p.rom("naive_tbl", table)
        x = self.in_data
        k = resize((x + span_raw) >> shift, width_for(0, len(table) - 1))
        s1 = p.stage("naive_rd", reads={"g": (rom, k)}, x=x, below=x < -span_raw, above=x >= span_raw)
        p.finish(Mux(s1.above, s1.x, Mux(s1.below, 0, s1.g)))
        return m
