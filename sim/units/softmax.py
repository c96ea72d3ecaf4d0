"""Online (single-pass) softmax unit, bit-exact with :mod:`edgemoe.golden.numerics.softmax`.

The attention's softmax state per query row, folded in while QK^T streams
(Edge-MoE's single-pass softmax): a running max ``m`` and a running sum ``l``
rescaled whenever the max grows, exactly :func:`~edgemoe.golden.numerics.softmax.online_step`::

    m' = max(m, s)
    l' = cast(l * exp(m - m') + exp(s - m'))       one rounding, to softmax_sum

and, after the row's last score, :func:`~edgemoe.golden.numerics.softmax.online_finish`:
``(m, 1/l)`` with 1/l from the reciprocal datapath (softmax_inv).

Ports (raw words, ``raw * 2**-frac_bits``; valid/ready handshakes, a word
moves on a rising edge where valid and ready are both high):

* in:  ``in_score`` (attn_score), ``in_last`` (the row's last score),
  ``in_slot`` (which of the ``P`` rows in flight the score belongs to, like
  the reordered attention's query slots), ``in_valid`` / ``in_ready``;
* out: one word per row, when its last score has gone through:
  ``out_max`` (attn_score), ``out_inv`` (softmax_inv), ``out_slot``,
  ``out_valid`` / ``out_ready``.

Each slot keeps its own state (``m``, ``l``); a row starts from the golden
:func:`~edgemoe.golden.numerics.softmax.online_init` state (after reset, and
again after each ``in_last``), so consecutive rows of a slot need no extra
signal.  Rows of different slots may interleave in any order.

Datapath (global-stall pipeline, like :class:`edgemoe.sim.units.base.Pipe`: one
clock enable ``ce = ~out_valid | out_ready`` for every stage):

1. input: ``m_old`` of the slot, ``m' = max(m_old, s)`` written back at once
   (the max recurrence is one cycle); registered: ``m_old - m'`` and ``s - m'``;
2. two exp datapaths (:func:`edgemoe.sim.units.exp.exp_datapath`, D stages)
   give ``alpha = exp(m - m')`` and ``e = exp(s - m')``;
3. the sum recurrence in ``R`` stages (``recurrence``, default 2: the
   multiply-add, then the rounding / saturation and the write-back of ``l``);
4. on ``last``: the reciprocal datapath
   (:func:`edgemoe.sim.units.recip.recip_datapath`) of the final ``l``; output register.

Throughput: the ``l`` recurrence is loop-carried over ``R`` stages, so a
score may enter only if no score of the same slot is in the ``R - 1``
stages ahead of it (an interlock at the input checks the slots in flight;
words never move relative to each other once in the pipe, so that check is
sufficient; ``in_ready`` therefore depends combinationally on ``in_slot``,
as it does on ``out_ready``).  With ``>= R`` rows interleaved (the ``P`` query slots of the
reordered attention, ``P >= 2``) the unit takes one score per cycle; a
single row alone runs at one score every ``R`` cycles.  ``recurrence=1``
gives II = 1 for any input at the price of a multiply-add-round in one cycle.
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.hdl import Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edgemoe.golden.numerics.fixed import FixedType

from ..formats import exp_input_type
from .base import Lane, overflow_fix, resize, round_shift_const, shape_of
from .exp import exp_datapath
from .recip import recip_datapath


def pick(regs: list[Signal], index: Value) -> Value:
    """``regs[index]`` as a tree of 2:1 multiplexers on the index bits (indices past the end
    read the last register).

    Written with ``Mux`` rather than an ``Array`` so that the Verilog is
    continuous assignments: an Array becomes an ``always @*`` block, which
    Icarus does not evaluate at time 0, so a select whose inputs have not
    changed since then reads X.
    """
    index = Value.cast(index)
    level = list(regs)
    for bit in range(len(index)):
        if len(level) == 1:
            break
        level = [Mux(index[bit], level[i + 1] if i + 1 < len(level) else level[i], level[i])
                 for i in range(0, len(level), 2)]
    if len(level) != 1:
        raise ValueError(f"a {len(index)}-bit index cannot select among {len(regs)} registers")
    return level[0]


def eq_const(v: Value, c: int) -> Value:
    """``v == c``; for 0 written ``~v.any()``: Yosys prints ``v == 0`` as a logical not of a
    multi-bit word, which Verilator's lint flags (WIDTHTRUNC)."""
    v = Value.cast(v)
    return ~v.any() if c == 0 else v == c


def any_of(terms) -> Value:
    """OR of 1-bit terms, as an expression (0 for none)."""
    out = Const(0, 1)
    for t in terms:
        out = out | t
    return out


def slot_shape(parallel: int):
    return unsigned(max((parallel - 1).bit_length(), 1))


class OnlineSoftmaxUnit(wiring.Component):
    """Online softmax over ``parallel`` interleaved rows (see module doc)."""

    def __init__(self, score: FixedType, exp: FixedType, total: FixedType, inv: FixedType,
                 table_frac: int, exp_table_bits: int, recip_table_bits: int, parallel: int,
                 recurrence: int = 2):
        if recurrence not in (1, 2, 3):
            raise ValueError(f"recurrence = {recurrence}: must be 1, 2 or 3 stages")
        if parallel < 1:
            raise ValueError(f"parallel = {parallel}: must be >= 1")
        self.score, self.exp, self.total, self.inv = score, exp, total, inv
        self.table_frac, self.exp_table_bits, self.recip_table_bits = table_frac, exp_table_bits, recip_table_bits
        self.parallel, self.recurrence = parallel, recurrence
        self.exp_in = FixedType(score.bits + 1, score.int_bits + 1, True)   # s - m of two scores
        super().__init__({
            "in_score": In(shape_of(score)), "in_last": In(1), "in_slot": In(slot_shape(parallel)),
            "in_valid": In(1), "in_ready": Out(1),
            "out_max": Out(shape_of(score)), "out_inv": Out(shape_of(inv)), "out_slot": Out(slot_shape(parallel)),
            "out_valid": Out(1), "out_ready": In(1),
        })
        self.latency: int | None = None
        self.roms: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_config(cls, cfg, recurrence: int = 2) -> "OnlineSoftmaxUnit":
        p = cfg.precision
        assert exp_input_type(p) == FixedType(p.attn_score.bits + 1, p.attn_score.int_bits + 1, True)
        return cls(p.attn_score, p.exp, p.softmax_sum, p.softmax_inv, p.table_frac_bits, p.exp_table_bits,
                   p.recip_table_bits, cfg.hardware.attn_parallel, recurrence)

    def elaborate(self, platform):
        m = Module()
        P, R = self.parallel, self.recurrence
        st, tt = self.score, self.total
        ce = Signal(name="ce")
        m.d.comb += ce.eq(~self.out_valid | self.out_ready)

        # per-slot state: the golden online_init values at reset
        m_regs = [Signal(shape_of(st), init=st.min_raw, name=f"run_max{o}") for o in range(P)]
        l_regs = [Signal(shape_of(tt), init=0, name=f"run_sum{o}") for o in range(P)]

        # --- input: the max recurrence (one cycle) and the interlock -------------------------
        hazard = Signal(name="hazard")
        accept = Signal(name="accept")
        m.d.comb += [self.in_ready.eq(ce & ~hazard), accept.eq(self.in_valid & self.in_ready)]
        s = self.in_score
        # (plain expressions for selections: a named copy of a register is an unused alias in the Verilog)
        m_old = pick(m_regs, self.in_slot)
        m_new = Signal(shape_of(st), name="max_new")
        m.d.comb += m_new.eq(Mux(s > m_old, s, m_old))
        for o in range(P):
            with m.If(accept & eq_const(self.in_slot, o)):
                m.d.sync += m_regs[o].eq(Mux(self.in_last, st.min_raw, m_new))

        front = Lane(m, ce, accept, self.roms)
        xs = shape_of(self.exp_in)
        s1 = front.stage("sm_in", slot=self.in_slot, last=self.in_last, max=m_new,
                         da=resize(m_old - m_new, xs), de=resize(s - m_new, xs))
        tags = [(s1.valid, s1.slot)]          # (valid, slot) of the words 1, 2, ... stages ahead

        # --- two exp datapaths side by side, a lane carrying the row tags -------------------
        lane_a = Lane(m, ce, None, self.roms)
        alpha = exp_datapath(lane_a, s1.da, self.exp_in, self.exp, self.table_frac, self.exp_table_bits, "exp_a")
        lane_e = Lane(m, ce, None, self.roms)
        e = exp_datapath(lane_e, s1.de, self.exp_in, self.exp, self.table_frac, self.exp_table_bits, "exp_e")
        assert lane_a.depth == lane_e.depth
        carry = Lane(m, ce, s1.valid)
        c = s1
        for k in range(lane_a.depth):
            c = carry.stage(f"sm_tag{k}", slot=c.slot, last=c.last, max=c.max)
            tags.append((c.valid, c.slot))
        alpha_s, e_s = resize(alpha, shape_of(self.exp)), resize(e, shape_of(self.exp))

        # --- the sum recurrence: l' = cast(l * alpha + e << lf), R stages -----------------------
        lf, ef = tt.frac_bits, self.exp.frac_bits
        l_old = pick(l_regs, c.slot)
        rec = Lane(m, ce, c.valid)

        def cast(acc):
            return overflow_fix(round_shift_const(acc, ef, tt.rounding), tt,
                                lo=0 if not (tt.signed or self.exp.signed) else None)

        def write_back(valid, slot, last, value):
            for o in range(P):
                with m.If(ce & valid & eq_const(slot, o)):
                    m.d.sync += l_regs[o].eq(Mux(last, 0, value))

        tag = dict(slot=c.slot, last=c.last, max=c.max)
        if R == 1:
            lq = cast(l_old * alpha_s + (e_s << lf))
            write_back(c.valid, c.slot, c.last, lq)
            w = rec.stage("sum_q", sum=lq, **tag)
        elif R == 2:
            a = rec.stage("sum_mac", acc=l_old * alpha_s + (e_s << lf), **tag)
            tags.append((a.valid, a.slot))
            lq = cast(a.acc)
            write_back(a.valid, a.slot, a.last, lq)
            w = rec.stage("sum_q", sum=lq, slot=a.slot, last=a.last, max=a.max)
        else:
            a = rec.stage("sum_mul", prod=l_old * alpha_s, e=e_s, **tag)
            tags.append((a.valid, a.slot))
            b = rec.stage("sum_add", acc=a.prod + (a.e << lf), slot=a.slot, last=a.last, max=a.max)
            tags.append((b.valid, b.slot))
            lq = cast(b.acc)
            write_back(b.valid, b.slot, b.last, lq)
            w = rec.stage("sum_q", sum=lq, slot=b.slot, last=b.last, max=b.max)

        # interlock: the incoming slot must not be in the R - 1 stages that read l before it is written
        m.d.comb += hazard.eq(any_of(v & (sl == self.in_slot) for v, sl in tags[:R - 1]))

        # --- rows done: 1/l and the output register ---------------------------------------------
        done = Signal(name="row_done")
        m.d.comb += done.eq(w.valid & w.last)
        lane_r = Lane(m, ce, None, self.roms)
        inv = recip_datapath(lane_r, w.sum, tt, self.inv, self.table_frac, self.recip_table_bits, "recip")
        ctag = Lane(m, ce, done)
        t = SimpleNamespace(slot=w.slot, max=w.max)
        for k in range(lane_r.depth):
            t = ctag.stage(f"row_tag{k}", slot=t.slot, max=t.max)
        with m.If(ce):
            m.d.sync += [self.out_valid.eq(ctag.valid), self.out_max.eq(t.max), self.out_inv.eq(inv),
                         self.out_slot.eq(t.slot)]
        self.latency = front.depth + lane_a.depth + rec.depth + lane_r.depth + 1
        self.exp_depth, self.recip_depth = lane_a.depth, lane_r.depth
        return m


__all__ = ["Lane", "OnlineSoftmaxUnit", "any_of", "eq_const", "pick", "slot_shape"]
