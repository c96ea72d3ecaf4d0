"""Facts about the boards edgemoe targets: part, resources, memory bandwidth and latency.

The one table of board facts; the config validates against it and the
performance model reads its limits from it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Board:
    """A target board.  Counts are whole-device; ``mem_gbps`` is the peak bandwidth in GB/s."""

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
    #: sustained fraction of ``mem_gbps`` a long stream of bursts reaches
    mem_efficiency: float
    #: first-beat latency of a DRAM read burst (ns)
    dram_latency_ns: float
    #: peak bandwidth (GB/s) of the physical port one m_axi bundle reaches (the performance
    #: model's ``port_limit`` option caps each bundle at it)
    port_gbps: float


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("zcu102", "xczu9eg-ffvb1156-2-e", "zynq", dsp=2520, bram36=912, uram=0,
          lut=274_080, ff=548_160, mem_gbps=19.2, mem_kind="PS DDR4-2400 (64-bit)",
          # ~15 GB/s sustained of the PS DDR4's 19.2 GB/s peak; a PL->PS HP port is 128 bits at up to 333 MHz
          mem_efficiency=15.0 / 19.2, dram_latency_ns=200.0, port_gbps=128 / 8 * 0.333),
    Board("u50", "xcu50-fsvh2104-2-e", "alveo", dsp=5952, bram36=1344, uram=640,
          lut=872_000, ff=1_743_000, mem_gbps=316.0, mem_kind="HBM2 8 GB",
          # HBM: ~80 % sustained is typical; one pseudo-channel is 256 bits at 450 MHz
          mem_efficiency=0.80, dram_latency_ns=300.0, port_gbps=14.4),
    Board("u280", "xcu280-fsvh2892-2L-e", "alveo", dsp=9024, bram36=2016, uram=960,
          lut=1_304_000, ff=2_607_000, mem_gbps=460.0, mem_kind="HBM2 8 GB (+ 2x DDR4 16 GB)",
          mem_efficiency=0.80, dram_latency_ns=300.0, port_gbps=14.4),
)}
