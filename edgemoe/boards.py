"""Facts about the boards edgemoe targets: part, resources, memory bandwidth.

The one table of board facts; the config validates against it and the
performance model reads its limits from it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Board:
    """A target board.  Counts are whole-device; bandwidth is the peak in GB/s."""

    name: str
    part: str
    flow: str  # "zynq": Vivado block design + PYNQ .bit/.hwh; "alveo": v++ link to .xclbin
    dsp: int
    bram36: int
    uram: int
    lut: int
    ff: int
    mem_gbps: float
    mem_kind: str


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("zcu102", "xczu9eg-ffvb1156-2-e", "zynq", dsp=2520, bram36=912, uram=0,
          lut=274_080, ff=548_160, mem_gbps=19.2, mem_kind="PS DDR4-2400 (64-bit)"),
    Board("u50", "xcu50-fsvh2104-2-e", "alveo", dsp=5952, bram36=1344, uram=640,
          lut=872_000, ff=1_743_000, mem_gbps=316.0, mem_kind="HBM2 8 GB"),
    Board("u280", "xcu280-fsvh2892-2L-e", "alveo", dsp=9024, bram36=2016, uram=960,
          lut=1_304_000, ff=2_607_000, mem_gbps=460.0, mem_kind="HBM2 8 GB (+ 2x DDR4 16 GB)"),
)}
