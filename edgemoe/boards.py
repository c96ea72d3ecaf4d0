"""Facts about the boards edgemoe targets: part, resources, memory bandwidth, latency and memory ports.

The one table of board facts; the config validates against it, the
generator places the kernel's m_axi bundles on its memory ports
(:mod:`edgemoe.hls.memory_map`) and the performance model reads its limits
from it.
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
    #: peak bandwidth (GB/s) of one memory port (``ports``): what one m_axi bundle can reach at most (the
    #: performance model's ``port_limit`` option caps each bundle at it)
    port_gbps: float
    #: independent PL -> memory ports, one m_axi bundle each: the most bundles a config may ask for
    ports: int
    #: bytes of the memory bank behind one port (an HBM pseudo-channel); 0 where every port reaches
    #: the same memory (the Zynq PS DDR: no bank to choose)
    bank_bytes: int
    #: the PS slave ports by name, in the order bundles take them (Zynq; ``ports`` of them); empty on Alveo,
    #: whose ports are the HBM pseudo-channels ``HBM[i]``
    ps_ports: tuple[str, ...] = ()

    def __post_init__(self):
        if self.flow == "zynq" and len(self.ps_ports) != self.ports:
            raise ValueError(f"board {self.name}: {self.ports} ports but {len(self.ps_ports)} PS port names")


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("zcu102", "xczu9eg-ffvb1156-2-e", "zynq", dsp=2520, bram36=912, uram=0,
          lut=274_080, ff=548_160, mem_gbps=19.2, mem_kind="PS DDR4-2400 (64-bit)",
          # ~15 GB/s sustained of the PS DDR4's 19.2 GB/s peak; a PL->PS port is 128 bits at up to 333 MHz.
          # Ports: the four S_AXI_HP0..HP3_FPD (non-coherent, straight to the DDR controller) first, then
          # S_AXI_HPC0/HPC1_FPD.  The HPC ports pass the coherent interconnect (CCI), but the kernel's m_axi
          # requests are non-coherent (Vitis HLS's default AxCACHE), so they reach the same DDR at the same
          # 128 bits a cycle; a bundle gets one only when the HP ports are taken.  Edge-MoE's own design uses
          # both (its weights on HPC0).  The DDR total (mem_gbps x mem_efficiency) bounds all six together.
          mem_efficiency=15.0 / 19.2, dram_latency_ns=200.0, port_gbps=128 / 8 * 0.333, ports=6, bank_bytes=0,
          ps_ports=("S_AXI_HP0_FPD", "S_AXI_HP1_FPD", "S_AXI_HP2_FPD", "S_AXI_HP3_FPD", "S_AXI_HPC0_FPD",
                    "S_AXI_HPC1_FPD")),
    Board("u50", "xcu50-fsvh2104-2-e", "alveo", dsp=5952, bram36=1344, uram=640,
          lut=872_000, ff=1_743_000, mem_gbps=316.0, mem_kind="HBM2 8 GB",
          # HBM: ~80 % sustained is typical.  Ports: the 32 HBM pseudo-channels (256 MiB each), each with its
          # own 256-bit AXI port at 450 MHz = 14.4 GB/s; the U50's stacks deliver 316 GB/s in all, so with
          # every port busy the board total (mem_gbps), not 32 x port_gbps, is the limit
          mem_efficiency=0.80, dram_latency_ns=300.0, port_gbps=256 / 8 * 0.450, ports=32, bank_bytes=256 << 20),
    Board("u280", "xcu280-fsvh2892-2L-e", "alveo", dsp=9024, bram36=2016, uram=960,
          lut=1_304_000, ff=2_607_000, mem_gbps=460.0, mem_kind="HBM2 8 GB (+ 2x DDR4 16 GB)",
          # the 32 HBM pseudo-channels as on the U50 (256 MiB, 256 bits at 450 MHz each); the two DDR4
          # banks are not used by the generated link config
          mem_efficiency=0.80, dram_latency_ns=300.0, port_gbps=256 / 8 * 0.450, ports=32, bank_bytes=256 << 20),
)}
