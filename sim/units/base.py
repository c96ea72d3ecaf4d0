"""Building blocks of the RTL units: the stream pipeline and exact integer steps.

Every unit is a :class:`StreamUnit`: a stream in (``in_data``/``in_valid``/
``in_ready``) and a stream out (``out_data``/``out_valid``/``out_ready``),
valid/ready handshakes as in AXI-Stream (a word moves on a rising edge where
valid and ready are both high).  Its datapath is a :class:`Pipe`: a chain of
register stages sharing one clock enable ``ce = ~out_valid | out_ready``.
The whole pipe advances together, so it accepts one word per cycle while the
consumer is ready (II = 1), freezes as a block when the consumer stalls (no
word lost or duplicated), and keeps a valid bit per stage (bubbles from input
gaps flow through as invalid slots).  ``in_ready = ce``.

The arithmetic helpers reproduce :mod:`edgemoe.golden.numerics` step for step
on raw integer words (``raw * 2**-frac_bits``).  Amaranth arithmetic is exact
(results widen), so the only places that need care are shifts (bounded here
by static ranges computed from the input types) and the rounding / overflow
of a cast, which follow :func:`~edgemoe.golden.numerics.fixed.quantize` and
:func:`~edgemoe.golden.numerics.approx.shift_round`.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Sequence

from amaranth import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.hdl import Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgemoe.golden.numerics.fixed import FixedType

# golden.approx clamps variable shifts to these (int64-safe) limits
MAX_RIGHT_SHIFT = 61     # approx.shift_round: shift.clamp(max=_MAX_SHIFT - 1)
MAX_LEFT_SHIFT = 20      # approx.shift_round: (-shift).clamp(max=_MAX_SHIFT - 42)


def shape_of(t: FixedType) -> Shape:
    """The Amaranth shape of a raw word of ``t``."""
    return signed(t.bits) if t.signed else unsigned(t.bits)


def resize(v, shape: Shape) -> Value:
    """``v`` sign- or zero-extended (by its own signedness) or truncated to ``shape``."""
    v = Value.cast(v)
    shape = Shape.cast(shape)
    w = v.shape().width
    if w < shape.width:
        fill = v[-1] if v.shape().signed else Const(0, 1)
        v = Cat(v, fill.replicate(shape.width - w))
    v = v[:shape.width]
    return v.as_signed() if shape.signed else v.as_unsigned()


def width_for(lo: int, hi: int) -> Shape:
    """The smallest shape holding every integer in [lo, hi]."""
    return Shape.cast(range(lo, hi + 1)) if lo < 0 or hi > 0 else unsigned(1)


class StreamUnit(wiring.Component):
    """A pipelined stream unit; ports ``in_*`` / ``out_*`` plus ``clk``/``rst``.

    Subclasses set :attr:`latency` (register stages from input to output) in
    ``elaborate`` via :class:`Pipe`.
    """

    def __init__(self, in_shape: Shape, out_shape: Shape):
        super().__init__({
            "in_data": In(in_shape), "in_valid": In(1), "in_ready": Out(1),
            "out_data": Out(out_shape), "out_valid": Out(1), "out_ready": In(1),
        })
        self.latency: int | None = None
        self.roms: dict[str, tuple[int, int]] = {}   #: ROM name -> (depth, width), set by elaborate


class Lane:
    """A chain of register stages under a clock enable ``ce``; one :meth:`stage` call = one clock stage.

    Several lanes can run side by side in one unit under one ``ce`` (e.g. the
    softmax unit's two exp datapaths in parallel, plus a lane carrying row
    tags); the ``*_datapath`` functions of the stream units build into any
    lane.  ``valid`` follows the data (one bit per stage; ``valid=None``: no
    valid bit is kept along this lane).  Table reads are synchronous ROM
    ports enabled by ``ce``: a read issued in a stage's :meth:`stage` call
    delivers its data together with that stage's registers.  ``roms``
    collects ROM name -> (depth, width).
    """

    def __init__(self, m: Module, ce: Value, valid: Value | None = None,
                 roms: dict[str, tuple[int, int]] | None = None):
        self.m = m
        self.ce = ce
        self.valid = valid
        self.depth = 0
        self.roms = roms if roms is not None else {}

    def comb(self, name: str, expr, shape: Shape | None = None) -> Signal:
        """A named combinational signal (for readable Verilog)."""
        expr = Value.cast(expr)
        s = Signal(shape or expr.shape(), name=name)
        self.m.d.comb += s.eq(expr)
        return s

    def rom(self, name: str, table: Sequence[int]) -> Memory:
        """A read-only table holding the integers ``table`` exactly (signed if any is negative)."""
        mem = Memory(shape=width_for(min(min(table), 0), max(max(table), 0)), depth=len(table),
                     init=list(table))
        self.m.submodules[name] = mem
        self.roms[name] = (len(table), mem.shape.width)
        return mem

    def stage(self, name: str, reads: dict[str, tuple[Memory, Value]] | None = None,
              **exprs) -> SimpleNamespace:
        """Register ``exprs`` (and read ``reads[k] = (rom, addr)``) under ``ce``; the result's
        ``valid`` is the stage's valid bit (when the lane keeps one)."""
        out = {}
        for key, expr in exprs.items():
            expr = Value.cast(expr)
            reg = Signal(expr.shape(), name=f"{name}_{key}", reset_less=True)
            with self.m.If(self.ce):
                self.m.d.sync += reg.eq(expr)
            out[key] = reg
        for key, (mem, addr) in (reads or {}).items():
            port = mem.read_port(domain="sync")
            self.m.d.comb += [port.addr.eq(addr), port.en.eq(self.ce)]
            data = Signal(mem.shape, name=f"{name}_{key}")
            self.m.d.comb += data.eq(port.data)
            out[key] = data
        if self.valid is not None:
            v = Signal(name=f"{name}_valid")
            with self.m.If(self.ce):
                self.m.d.sync += v.eq(self.valid)
            self.valid = v
            out["valid"] = v
        self.depth += 1
        return SimpleNamespace(**out)


class Pipe(Lane):
    """Global-stall register pipeline of a :class:`StreamUnit`: a :class:`Lane` whose clock
    enable is the unit's ``in_ready`` (``~out_valid | out_ready``), whose valid bit starts at
    ``in_valid``, and whose ROMs are recorded in the unit's ``roms``.
    """

    def __init__(self, m: Module, unit: StreamUnit):
        # the clock enable of every stage is the input's ready (no separate alias wire)
        super().__init__(m, unit.in_ready, unit.in_valid, unit.roms)
        self.unit = unit
        m.d.comb += self.ce.eq(~unit.out_valid | unit.out_ready)

    def finish(self, data) -> None:
        """The last stage: register ``data`` into ``out_data`` (and the valid bit into ``out_valid``)."""
        u = self.unit
        with self.m.If(self.ce):
            self.m.d.sync += [u.out_data.eq(data), u.out_valid.eq(self.valid)]
        self.depth += 1
        u.latency = self.depth



class DatapathUnit(StreamUnit):
    """A stream unit that is one ``*_datapath(lane, x, *args)`` in a :class:`Pipe`.

    Subclasses set :attr:`datapath` (a ``staticmethod``) and ``from_config``; the
    constructor's arguments are the datapath's arguments after ``x``, and
    :meth:`port_types` picks the input and output port types from them (by
    default the first two: ``in_type, out``).
    """

    datapath = None

    def __init__(self, *args):
        self.args = args
        in_type, out = self.port_types(*args)
        super().__init__(shape_of(in_type), shape_of(out))

    @staticmethod
    def port_types(in_type: FixedType, out: FixedType, *rest) -> tuple[FixedType, FixedType]:
        return in_type, out

    def elaborate(self, platform):
        m = Module()
        p = Pipe(m, self)
        p.finish(self.datapath(p, self.in_data, *self.args))
        return m


# --- exact integer steps -------------------------------------------------------------

def round_up_bit(rounding: str, rbit: Value, sticky: Value, odd: Value, negative: Value) -> Value:
    """Increment of ``floor`` for a right shift (fixed._round_shift), from the cut bits.

    ``rbit`` is the first bit shifted out (the half), ``sticky`` any bit below
    it, ``odd`` the LSB of the floor, ``negative`` the sign of the word.
    above = rbit & sticky, tie = rbit & ~sticky.
    """
    if rounding == "TRN":
        return Const(0, 1)
    if rounding == "TRN_ZERO":
        return negative & (rbit | sticky)
    if rounding == "RND":
        return rbit
    if rounding == "RND_ZERO":
        return rbit & (sticky | negative)
    if rounding == "RND_MIN_INF":
        return rbit & sticky
    if rounding == "RND_INF":
        return rbit & (sticky | ~negative)
    if rounding == "RND_CONV":
        return rbit & (sticky | odd)
    raise ValueError(f"unknown rounding mode {rounding!r}")


def round_shift_const(v: Value, shift: int, rounding: str) -> Value:
    """``v * 2**-shift`` rounded by ``rounding`` (fixed.align); ``shift`` >= 0 constant."""
    v = Value.cast(v)
    if shift <= 0:
        return v << (-shift)
    floor = v >> shift                      # arithmetic for signed v
    rbit = v[shift - 1]
    sticky = v[:shift - 1].any() if shift > 1 else Const(0, 1)
    negative = v[-1] if v.shape().signed else Const(0, 1)
    return floor + round_up_bit(rounding, rbit, sticky, floor[0], negative)


def overflow_fix(v: Value, t: FixedType, lo: int | None = None, hi: int | None = None) -> Value:
    """Bring ``v`` into ``t``'s range by its overflow mode (fixed.overflow_fix).

    ``lo``/``hi`` are static bounds of ``v`` (skip comparisons that cannot fire).
    """
    v = Value.cast(v)
    if t.overflow == "SAT":
        out = v
        if hi is None or hi > t.max_raw:
            out = Mux(v > t.max_raw, t.max_raw, out)
        if (lo is None or lo < t.min_raw) and (v.shape().signed or t.min_raw > 0):
            out = Mux(v < t.min_raw, t.min_raw, out)
        return resize(out, shape_of(t))
    return resize(resize(v, unsigned(t.bits)), shape_of(t))


def msb_index(m: Module, x: Value, name: str) -> Signal:
    """floor(log2(x)) of a positive unsigned word (approx.msb_index): a priority encoder."""
    x = Value.cast(x)
    w = x.shape().width
    p = Signal(range(max(w, 2)), name=name)
    for i in range(w):                       # the highest set bit assigns last
        with m.If(x[i]):
            m.d.comb += p.eq(i)
    return p


def interpolate_step(p: Pipe, name: str, a: Value, b: Value, low: Value, low_bits: int,
                     **carry) -> tuple[Value, SimpleNamespace]:
    """``a + floor((b - a) * low / 2**low_bits)`` (approx.interpolate), two stages.

    Stage 1 registers the product (b - a) * low (a DSP pre-adder + multiplier);
    stage 2 the sum.  ``carry`` values travel along; returns (value, carried).
    """
    s1 = p.stage(f"{name}_mul", a=a, prod=(b - a) * low, **carry)
    s2 = p.stage(f"{name}_add", v=s1.a + (s1.prod >> low_bits),
                 **{k: getattr(s1, k) for k in carry})
    return s2.v, s2


def shift_round_var(p: Pipe, name: str, v: Value, v_max: int, shift: Value, shift_lo: int, shift_hi: int,
                    t: FixedType, **carry) -> tuple[Value, SimpleNamespace]:
    """``v * 2**-shift`` cast to ``t`` (approx.shift_round) for 0 <= v <= v_max, two stages.

    ``shift`` is a signed per-word amount known to lie in [shift_lo, shift_hi].
    Right shifts round by ``t.rounding`` (through one guard shift, as the
    golden does), left shifts are exact, then ``t``'s overflow mode applies.
    The golden clamps right shifts at 61 and left shifts at 20; a right shift
    past ``bit_length(v_max) + 1`` already gives 0 in every mode, so the
    barrel shifter stops there.  Returns (result, carried).
    """
    wv = max(v_max.bit_length(), 1)
    v = Value.cast(v)[:wv]                    # non-negative by contract
    cap_r = min(MAX_RIGHT_SHIFT, wv + 1, max(shift_hi, 0))
    cap_l = min(MAX_LEFT_SHIFT, max(-shift_lo, 0))
    shift = Value.cast(shift)
    right = Mux(shift <= 0, 0, Mux(shift >= cap_r, cap_r, shift))[:max(cap_r.bit_length(), 1)] \
        if cap_r > 0 else Const(0, 1)
    left = Mux(shift >= 0, 0, Mux(-shift >= cap_l, cap_l, -shift))[:max(cap_l.bit_length(), 1)] \
        if cap_l > 0 else Const(0, 1)
    s0 = p.stage(f"{name}_amt", v=v, right=right, left=left, **carry)
    # right shift of raw = 2v by right + 1, with the cut bits kept below
    k = cap_r + 1
    ext = Cat(Const(0, k), s0.v << 1)
    shifted = ext >> (s0.right + 1) if cap_r > 0 else ext >> 1
    floor = shifted[k:]
    up = round_up_bit(t.rounding, shifted[k - 1], shifted[:k - 1].any() if k > 1 else Const(0, 1),
                      floor[0], Const(0, 1))
    down_max = v_max + 1
    s1 = p.stage(f"{name}_rnd", down=(floor + up)[:down_max.bit_length()], left=s0.left,
                 **{k_: getattr(s0, k_) for k_ in carry})
    wide = s1.down << s1.left if cap_l > 0 else s1.down
    y = overflow_fix(wide, t, lo=0, hi=down_max << cap_l)
    return y, s1


def table_lookup_round(p: Pipe, read_name: str, name: str, rom, idx: Value, low: Value, low_bits: int,
                       table_max: int, sh: Value, sh_lo: int, sh_hi: int, t: FixedType,
                       **carry) -> tuple[Value, SimpleNamespace]:
    """The shared tail of the table units (exp, reciprocal, rsqrt): read ``rom[idx]`` and
    ``rom[idx + 1]``, interpolate with ``low``, shift by ``sh`` and cast to ``t``.

    Five stages (read, two interpolate, two shift-round); ``carry`` travels along.
    Returns (result, carried).
    """
    s_rd = p.stage(read_name, reads={"a": (rom, idx), "b": (rom, idx + 1)}, low=low, sh=sh, **carry)
    v, s_ip = interpolate_step(p, f"{name}_ip", s_rd.a, s_rd.b, s_rd.low, low_bits, sh=s_rd.sh,
                               **{k: getattr(s_rd, k) for k in carry})
    return shift_round_var(p, f"{name}_sr", v, table_max, s_ip.sh, sh_lo, sh_hi, t,
                           **{k: getattr(s_ip, k) for k in carry})
