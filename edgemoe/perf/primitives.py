"""FPGA primitives the resource model counts in: DSP48E2 slices, BRAM36/BRAM18, URAM, LUTRAM, registers.

* **DSP48E2**: one 27x18 signed multiplier per DSP; a wider product is split
  into 27- and 18-bit parts (the low parts unsigned, 26/17 useful bits), the
  better orientation wins (:func:`dsp_per_mult`).
* **Memories**: each array (after the template's ARRAY_PARTITION) is a set of
  banks (:class:`Memory`); a bank goes to registers when fully partitioned, to
  LUTRAM when small (<= :data:`LUTRAM_MAX_BITS`), to URAM on boards that have
  it when large (>= :data:`URAM_MIN_BITS`), otherwise to the cheapest
  BRAM36/BRAM18 aspect ratio (:func:`bram36_for`).
* :class:`UnitResources` sums one unit's multipliers and memories, with a
  line of detail per item.
* :data:`OP_LATENCY`: cycles of one operator at the kernel clock, the one
  table the cycle models (:mod:`.cycles`, :mod:`.loops`) schedule with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

#: banks of at most this many bits go to LUTRAM (distributed RAM), not BRAM
LUTRAM_MAX_BITS = 2048
#: banks of at least this many bits go to URAM on boards that have URAM
URAM_MIN_BITS = 147_456

#: cycles of one operator (kernel clock, <= 300 MHz on UltraScale+) when no RTL measurement replaces it
OP_LATENCY = {
    "mul": 3,        # DSP48E2 multiplier (<= 27x18 per slice, a cascade for wider), A/M/P registers
    "mul_wide": 5,   # 64 x 64-bit product (wide_t operands the tool cannot narrow): a DSP cascade
    "add": 1,        # integer add / compare / select up to 64 bits: one carry chain
    "cast": 1,       # round + saturate to a narrower word
    "bram": 2,       # BRAM / LUTRAM read, address to registered data
    "store": 1,      # BRAM / LUTRAM / register write
    "loop": 1,       # a non-pipelined loop iteration's exit / branch test
    "call": 2,       # entering and leaving a function that is not inlined
    "div_const": 4,  # floor_div by a constant: multiply-shift
    "exp": 6, "recip": 8, "rsqrt": 8, "gelu": 4,   # the numerics' table units (calibrated when measured)
}

_BRAM36_SHAPES = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72))
_BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


#: DSP48E2 ports: the multiplier's A and B inputs (signed bits) and the post-adder's P / C width
DSP_A_BITS, DSP_B_BITS, DSP_P_BITS = 27, 18, 48


def _parts(bits: int, port: int) -> int:
    """Pieces a ``bits``-wide signed operand splits into on a ``port``-bit signed input."""
    if bits <= port:
        return 1
    return 1 + math.ceil((bits - port) / (port - 1))


def dsp_per_mult(a_bits: int, b_bits: int, a_signed: bool = True, b_signed: bool = True) -> int:
    """DSP48E2 slices for one a x b product (27x18 signed multiplier per slice).

    Unsigned operands need one more bit on a signed port.  Both orientations
    are tried; e.g. 32x16 -> 2, 16x16 -> 1, 24x24 -> 2, 8x16 -> 1.
    """
    a = a_bits + (0 if a_signed else 1)
    b = b_bits + (0 if b_signed else 1)
    return min(_parts(a, DSP_A_BITS) * _parts(b, DSP_B_BITS), _parts(b, DSP_A_BITS) * _parts(a, DSP_B_BITS))


def bram36_for(depth: int, width: int) -> float:
    """BRAM36 equivalents of one memory bank (BRAM18 counts 0.5)."""
    if depth <= 0 or width <= 0:
        return 0.0
    b36 = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in _BRAM36_SHAPES)
    b18 = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in _BRAM18_SHAPES)
    return float(min(b36, 0.5 * b18))


#: UltraScale+ SLICEM distributed RAM in simple dual port (one write, one read), 8 LUTs each: RAM32M16 is
#: 32 deep x 14 bits, RAM64M8 64 deep x 7 (deeper banks: 64-deep pieces and a read mux of a LUT per bit)
LUTRAM_SHAPES = ((32, 14), (64, 7))
LUTS_PER_LUTRAM_CELL = 8


def lutram_luts(depth: int, width: int) -> int:
    """LUTs of one ``depth`` x ``width`` bank in distributed RAM, one write and one read port: the fewest
    RAM32M16 / RAM64M8 cells (:data:`LUTRAM_SHAPES`), plus the read mux of a bank deeper than 64.  Yosys's
    ``synth_xilinx -family xcup`` maps such a bank to the same cells (``tests/test_perf_resources.py``)."""
    if depth <= 0 or width <= 0:
        return 0
    if depth <= LUTRAM_SHAPES[0][0]:
        return LUTS_PER_LUTRAM_CELL * math.ceil(width / LUTRAM_SHAPES[0][1])
    pieces = math.ceil(depth / LUTRAM_SHAPES[1][0])
    return LUTS_PER_LUTRAM_CELL * pieces * math.ceil(width / LUTRAM_SHAPES[1][1]) + (width if pieces > 1 else 0)


def uram_for(depth: int, width: int) -> int:
    """URAM288 blocks (4K x 72) of one bank."""
    return math.ceil(width / 72) * math.ceil(depth / 4096)


@dataclass
class Memory:
    """One array after partitioning: ``banks`` banks of ``depth`` x ``width`` bits."""

    name: str
    depth: int
    width: int
    banks: int = 1
    registers: bool = False   # fully partitioned: flip-flops
    lutram: bool = False      # BIND_STORAGE impl=lutram: distributed RAM whatever its size

    @property
    def bits(self) -> int:
        return self.depth * self.width * self.banks

    def cost(self, board) -> dict:
        """{'bram36', 'uram', 'lut', 'ff', 'kind'} for this array on ``board``."""
        bank_bits = self.depth * self.width
        if self.registers:
            return {"bram36": 0.0, "uram": 0, "lut": 0, "ff": self.bits, "kind": "registers"}
        if self.lutram or bank_bits <= LUTRAM_MAX_BITS:
            lut = self.banks * lutram_luts(self.depth, self.width)
            return {"bram36": 0.0, "uram": 0, "lut": lut, "ff": 0, "kind": "LUTRAM"}
        if board.uram and bank_bits >= URAM_MIN_BITS:
            return {"bram36": 0.0, "uram": self.banks * uram_for(self.depth, self.width), "lut": 0, "ff": 0,
                    "kind": "URAM"}
        return {"bram36": self.banks * bram36_for(self.depth, self.width), "uram": 0, "lut": 0, "ff": 0,
                "kind": "BRAM"}


@dataclass
class UnitResources:
    """Resources of one unit (a function of the kernel or a shared structure)."""

    name: str
    dsp: int = 0
    bram36: float = 0.0
    uram: int = 0
    lut: int = 0
    ff: int = 0
    detail: list[str] = field(default_factory=list)

    def add_memory(self, mem: Memory, board, copies: int = 1) -> None:
        c = mem.cost(board)
        self.bram36 += copies * c["bram36"]
        self.uram += copies * c["uram"]
        self.lut += copies * c["lut"]
        self.ff += copies * c["ff"]
        amount = {"BRAM": f"{copies * c['bram36']:g} BRAM36", "URAM": f"{copies * c['uram']} URAM",
                  "LUTRAM": f"{copies * c['lut']} LUT", "registers": f"{copies * c['ff']} FF"}[c["kind"]]
        xs = f"{copies}x " if copies > 1 else ""
        self.detail.append(f"{xs}{mem.name} [{mem.banks} bank(s) x {mem.depth} x {mem.width}b] -> {amount}")

    def add_mults(self, what: str, count: int, a_bits: int, b_bits: int, a_signed=True, b_signed=True) -> None:
        per = dsp_per_mult(a_bits, b_bits, a_signed, b_signed)
        self.dsp += count * per
        # partial products of a split multiply are summed in LUTs
        self.lut += count * (per - 1) * (a_bits + b_bits)
        self.detail.append(f"{count} x {what} {a_bits}x{b_bits}b -> {count * per} DSP ({per}/product)")

    def as_dict(self) -> dict:
        return {"name": self.name, "dsp": self.dsp, "bram36": self.bram36, "uram": self.uram,
                "lut": self.lut, "ff": self.ff, "detail": list(self.detail)}


def add_mac_array(u: "UnitResources", cu_in: int, cu_out: int, x_bits: int, w_bits: int, acc_bits: int) -> None:
    """``cu_in x cu_out`` multipliers, the per-neuron adder trees and accumulators into ``u``."""
    macs = cu_in * cu_out
    u.add_mults("MAC", macs, x_bits, w_bits)
    u.lut += macs * (x_bits + w_bits + math.ceil(math.log2(max(2, cu_in))))  # adder trees
    u.ff += macs * 2 * (x_bits + w_bits) + cu_out * acc_bits
