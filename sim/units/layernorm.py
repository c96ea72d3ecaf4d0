"""LayerNorm unit with its own rsqrt, bit-exact with :func:`edgemoe.golden.numerics.layernorm.layernorm`.

Per row of ``D = model.embed_dim`` words (raw words, ``raw * 2**-frac_bits``;
``F_t`` below is the fraction bits of type ``t``), exactly the golden steps::

    mean = floor(sum(x) / D)                        act raw (F_act)
    c    = cast(x - mean) to ln_centered            F_c = ln_centered.frac_bits
    var  = floor(sum(c * c) / D)                    2 F_c fraction bits, unsigned
    r    = rsqrt(var + eps_raw) to ln_inv_std       eps_raw = golden eps_raw(model.ln_eps), 2 F_c bits
    n    = cast(c * r) to ln_norm                   from F_c + F_inv_std
    y    = cast(n * gamma + beta) to act            n * gamma and beta aligned (exact left shifts) to
                                                    max(F_norm + F_gamma, F_beta), one cast

Every cast is :func:`~edgemoe.sim.units.base.round_shift_const` (the target type's
rounding) then :func:`~edgemoe.sim.units.base.overflow_fix` (its overflow mode), as
:func:`~edgemoe.golden.numerics.fixed.quantize`; the rsqrt is
:func:`edgemoe.sim.units.rsqrt.rsqrt_datapath` (table ``tables.rsqrt_table``).

Ports (valid/ready handshakes: a word moves on a rising edge where valid and
ready are both high):

* in: ``in_data`` -- one ``act`` word per beat; rows are ``D`` consecutive
  words (the unit counts them: no ``last`` input); ``in_valid`` / ``in_ready``.
  ``in_ready`` is a register function (row-buffer space), never combinational
  in ``out_ready``;
* parameters: ``param_we``, ``param_addr`` (0 .. D-1), ``param_gamma``
  (``ln_gamma`` raw), ``param_beta`` (``ln_beta`` raw): one write per cycle into
  a ``D``-entry RAM, loaded before rows stream (a write while rows are in
  flight reaches an unspecified row); the RAM keeps its contents across reset;
* out: ``out_data`` -- one ``act`` word per input word, rows in order;
  ``out_last`` -- the row's last word; ``out_valid`` / ``out_ready``.

Structure: three passes over each row, each on its own row at the same time
(``S = plan.slots`` rotating row slots of ``D`` words in one RAM, one write
port and two read ports):

* A (input): write ``x`` into the row's slot, sum ``x - act.min`` (unsigned);
  after the row's last word, the mean division;
* B (statistics, never stalls): read the row again, ``c = cast(x - mean)``,
  sum ``c * c``; after the row, the variance division, ``+ eps``, the rsqrt
  datapath (:data:`~edgemoe.sim.formats.RSQRT_DEPTH` stages) into the slot's ``r``;
* C (output, global stall ``ce = ~out_valid | out_ready``): read the row a third
  time, recompute ``c``, ``n = cast(c * r)``, read gamma/beta,
  ``y = cast(n * gamma + beta)``, output register.

The passes hand rows over in order through counters (rows with a mean ready,
rows with ``r`` ready, slots occupied); a slot is free again once C has read its
last word.  The divisions (:class:`~edgemoe.sim.formats.DividerPlan`) are exact
floor divisions over the whole numerator range: ``D = odd * 2**shift``, a free
shift, then a sequential restoring long division by the odd part (remainder
register of ``bit_length(odd - 1)`` bits, 4 quotient bits per cycle; none when
``D`` is a power of two); long division is exact integer division, and the
only bound it needs -- the quotient fits its register -- follows from the
numerator's range (``plan.sum_max``, ``plan.sumsq_max``, checked when the plan
is made).  One division per row and pass, started at least ``D`` cycles
apart, so one divider each for the mean and the variance suffices.

Timing (:func:`edgemoe.sim.formats.layernorm_plan`; ``Nm``, ``Nv`` = the
dividers' cycles, ``R`` = rsqrt stages): B starts a row ``Nm + 2`` cycles after
its last word entered, C ``Nv + R + 5`` cycles after B's last read; with
``S = 3 + ceil((Nm + Nv + R + 5) / D)`` slots the unit takes one word per
cycle across rows (II = 1), and a row's first output word comes
``D + Nm + Nv + R + 12`` cycles after its last input word (its last output
word ``D - 1`` cycles later).  ``S`` is the least that sustains II = 1 (one slot
fewer costs a few percent).  With the output stalled, C freezes and the input
stops once ``S`` rows have entered; B and the dividers never stall (they finish
the rows already in the unit).  m3vit-micro (D = 64): no division cycles,
S = 4, latency 83; m3vit-tiny (D = 192 = 64 * 3): Nm = 8, Nv = 12 (w16a32),
S = 4, latency 231.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.hdl import Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..formats import DividerPlan, LayerNormPlan, layernorm_plan
from .base import Lane, overflow_fix, resize, round_shift_const, shape_of
from .rsqrt import rsqrt_datapath
from .softmax import eq_const, pick


def _wrap_inc(v: Value, n: int) -> Value:
    """``(v + 1) mod n`` of a counter in [0, n)."""
    return Mux(eq_const(v, n - 1), 0, v + 1) if n & (n - 1) else (v + 1)[:max((n - 1).bit_length(), 1)]


def _row_walk(m: Module, name: str, D: int, S: int, N: int, addr: Value, ready_rows: Value,
              gate: Value | None = None) -> tuple[Signal, Signal, Signal, Value, Value]:
    """A pass's reads over its rows: one word per issue, ``D`` words a row, slots in turn.

    Issues (under ``gate``) while inside a row, or at a row's start while a row is
    ready for this pass (``ready_rows`` != 0); ``addr`` (the read port's address)
    advances mod ``N``.  Returns (issue, index in the row, slot, row start, row end).
    """
    idx = Signal(range(D), name=f"{name}_idx")
    slot = Signal(range(S), name=f"slot_{name}")
    issue = Signal(name=f"{name}_issue")
    want = ~eq_const(idx, 0) | ~eq_const(ready_rows, 0)
    m.d.comb += issue.eq(want if gate is None else gate & want)
    start = issue & eq_const(idx, 0)
    end = issue & eq_const(idx, D - 1)
    with m.If(issue):
        m.d.sync += [idx.eq(Mux(end, 0, idx + 1)), addr.eq(_wrap_inc(addr, N))]
    with m.If(end):
        m.d.sync += slot.eq(_wrap_inc(slot, S))
    return issue, idx, slot, start, end


def const_divider(m: Module, name: str, start: Value, dividend: Value, plan: DividerPlan) -> tuple[Signal, Value]:
    """``floor(dividend / plan.divisor)`` of an unsigned ``dividend`` (<= ``plan.dividend_max``),
    loaded on ``start``.  Returns (done, quotient): ``done`` is high for one cycle
    ``plan.cycles + 1`` cycles after ``start``; ``quotient`` holds until the next start.
    Starts must be at least ``plan.cycles + 1`` cycles apart (the unit's are ``D`` apart and
    the plan keeps ``cycles <= D - 1``).
    """
    u = Value.cast(dividend).as_unsigned()[plan.shift:]
    done = Signal(name=f"{name}_done")
    if plan.odd == 1:
        q = Signal(plan.quotient_bits, name=f"{name}_q", reset_less=True)
        m.d.sync += done.eq(start)
        with m.If(start):
            m.d.sync += q.eq(resize(u, unsigned(plan.quotient_bits)))
        return done, q
    qb, w, k, d = plan.quotient_bits, plan.remainder_bits, plan.step_bits, plan.odd
    dq = Signal(qb, name=f"{name}_dq", reset_less=True)           # dividend bits in, quotient bits out
    rem = Signal(w, name=f"{name}_rem", reset_less=True)           # partial remainder, < d
    cnt = Signal(range(plan.cycles + 1), name=f"{name}_cnt")
    busy = Signal(name=f"{name}_busy")
    # k restoring steps: rem' = 2 rem + next bit; a quotient bit 1 (and rem' -= d) where rem' >= d
    # (the compare and the new remainder are named signals, so the next step refers to them
    # instead of copying their expressions; the bit shuffles in between are plain wiring)
    r, q = rem, dq
    for i in range(k):
        t = Cat(q[-1], r)                                          # 2 r + bit, w + 1 bits
        ge = Signal(name=f"{name}_ge{i}")
        r_next = Signal(w, name=f"{name}_rem{i}")
        m.d.comb += [ge.eq(t >= d), r_next.eq(Mux(ge, (t - d)[:w], t[:w]))]
        r, q = r_next, Cat(ge, q[:-1])
    last = eq_const(cnt, 1)
    top = resize(u[qb:], unsigned(w)) if len(u) > qb else Const(0, w)   # < d by the plan's bound
    with m.If(start):
        m.d.sync += [dq.eq(resize(u, unsigned(qb))), rem.eq(top),
                     cnt.eq(plan.cycles), busy.eq(1)]
    with m.Elif(busy):
        m.d.sync += [dq.eq(q), rem.eq(r), cnt.eq(cnt - 1), busy.eq(~last)]
    # done: the cycle after the last step
    m.d.sync += done.eq(busy & last)
    return done, dq


class LayerNormUnit(wiring.Component):
    """Row-streaming LayerNorm with rsqrt (see module doc)."""

    def __init__(self, p, plan: LayerNormPlan):
        self.p, self.plan = p, plan
        self.act = p.act
        D = plan.dim
        self.addr_bits = max((D - 1).bit_length(), 1)
        super().__init__({
            "in_data": In(shape_of(p.act)), "in_valid": In(1), "in_ready": Out(1),
            "param_we": In(1), "param_addr": In(unsigned(self.addr_bits)),
            "param_gamma": In(shape_of(p.ln_gamma)), "param_beta": In(shape_of(p.ln_beta)),
            "out_data": Out(shape_of(p.act)), "out_last": Out(1), "out_valid": Out(1), "out_ready": In(1),
        })
        self.latency = plan.latency
        self.roms: dict[str, tuple[int, int]] = {}
        self.rams = {"rows": (plan.slots * D, p.act.bits), "params": (D, p.ln_gamma.bits + p.ln_beta.bits)}

    @classmethod
    def from_config(cls, cfg) -> "LayerNormUnit":
        return cls(cfg.precision, layernorm_plan(cfg))

    # the golden casts ------------------------------------------------------------------------------
    def centre(self, x: Value, mean: Value) -> Value:
        """c = quantize(x - mean, act.frac, ln_centered)."""
        a, ct = self.act, self.p.ln_centered
        return overflow_fix(round_shift_const(x - mean, a.frac_bits - ct.frac_bits, ct.rounding), ct)

    def normalise(self, prod: Value) -> Value:
        """n = quantize(c * r, centered.frac + inv_std.frac, ln_norm)."""
        p = self.p
        nt = p.ln_norm
        return overflow_fix(round_shift_const(prod, p.ln_centered.frac_bits + p.ln_inv_std.frac_bits - nt.frac_bits,
                                              nt.rounding), nt)

    def affine(self, n: Value, g: Value, b: Value) -> tuple[Value, int]:
        """n * gamma + beta, both aligned exactly to max(norm.frac + gamma.frac, beta.frac)."""
        p = self.p
        nf, gf, bf = p.ln_norm.frac_bits, p.ln_gamma.frac_bits, p.ln_beta.frac_bits
        frac = max(nf + gf, bf)
        return ((n * g) << (frac - nf - gf)) + (b << (frac - bf)), frac

    def elaborate(self, platform):
        m = Module()
        p, plan, a = self.p, self.plan, self.act
        D, S = plan.dim, plan.slots
        N = S * D
        one = Const(1, 1)

        rows = Memory(shape=shape_of(a), depth=N, init=[])
        m.submodules.rows = rows
        gbits = p.ln_gamma.bits
        params = Memory(shape=unsigned(gbits + p.ln_beta.bits), depth=D, init=[])
        m.submodules.params = params
        # (Amaranth names a port's signals after the variable: `port__*`, the lint waiver's name).
        # The passes' address counters are the ports' address registers themselves (a separate
        # counter copied into a port would leave an unused alias in the Verilog).
        port = params.write_port()
        m.d.comb += [port.addr.eq(self.param_addr), port.data.eq(Cat(self.param_gamma, self.param_beta)),
                     port.en.eq(self.param_we)]
        port = params.read_port(domain="sync")
        gb_rp = port
        port = rows.write_port()
        row_wp = port
        port = rows.read_port(domain="sync")
        b_rp = port
        port = rows.read_port(domain="sync")
        c_rp = port

        mean_regs = [Signal(shape_of(a), name=f"mean{s}") for s in range(S)]
        r_regs = [Signal(shape_of(p.ln_inv_std), name=f"inv_std{s}") for s in range(S)]
        occ = Signal(range(S + 1), name="slots_used")        # rows between A's first word and C's last read
        n_mean = Signal(range(S + 1), name="rows_mean")       # rows with the mean ready, B not started
        n_r = Signal(range(S + 1), name="rows_inv_std")       # rows with r ready, C not started

        # --- A: input, row buffer write, sum, mean division --------------------------------------------
        a_idx = Signal(range(D), name="a_idx")
        a_addr = row_wp.addr
        a_first = eq_const(a_idx, 0)
        m.d.comb += self.in_ready.eq(~a_first | (occ < S))
        accept = Signal(name="accept")
        m.d.comb += accept.eq(self.in_valid & self.in_ready)
        a_end = accept & eq_const(a_idx, D - 1)
        xu = resize(self.in_data - a.min_raw, unsigned(max((a.max_raw - a.min_raw).bit_length(), 1)))
        row_sum = Signal(unsigned(plan.sum_max.bit_length()), name="row_sum")
        total = resize(row_sum + xu, unsigned(plan.sum_max.bit_length()))
        with m.If(accept):
            m.d.sync += [a_idx.eq(Mux(a_end, 0, a_idx + 1)), a_addr.eq(_wrap_inc(a_addr, N)),
                         row_sum.eq(Mux(a_end, 0, total))]
        m.d.comb += [row_wp.data.eq(self.in_data), row_wp.en.eq(accept)]
        m_done, m_q = const_divider(m, "mean_div", a_end, total, plan.mean_div)
        slot_m = Signal(range(S), name="slot_mean")
        mean = resize(m_q + a.min_raw, shape_of(a))           # floor(sum(x - min) / D) + min
        with m.If(m_done):
            m.d.sync += slot_m.eq(_wrap_inc(slot_m, S))
        for s in range(S):
            with m.If(m_done & eq_const(slot_m, s)):
                m.d.sync += mean_regs[s].eq(mean)

        # --- B: second read, c * c sum, variance division, rsqrt ------------------------------------------
        b_issue, b_idx, slot_b, b_start, b_end = _row_walk(m, "b", D, S, N, b_rp.addr, n_mean)
        m.d.comb += b_rp.en.eq(1)
        lane_b = Lane(m, one, b_issue)
        b1 = lane_b.stage("b_rd", mean=pick(mean_regs, slot_b), last=b_end)      # + the read of x at b_rp.addr
        b2 = lane_b.stage("b_ctr", c=self.centre(b_rp.data, b1.mean), last=b1.last)
        ct = p.ln_centered
        sq_bits = max(ct.min_raw ** 2, ct.max_raw ** 2).bit_length()
        b3 = lane_b.stage("b_sq", sq=resize(b2.c * b2.c, unsigned(sq_bits)), last=b2.last)
        sq_sum = Signal(unsigned(plan.sumsq_max.bit_length()), name="sq_sum")
        sq_total = resize(sq_sum + b3.sq, unsigned(plan.sumsq_max.bit_length()))
        with m.If(b3.valid):
            m.d.sync += sq_sum.eq(Mux(b3.last, 0, sq_total))
        v_done, v_q = const_divider(m, "var_div", b3.valid & b3.last, sq_total, plan.var_div)
        vt = plan.var_type
        # the rsqrt runs once per row: its stages advance only while a word is in them (their
        # registers hold otherwise, a clock enable per row rather than every cycle)
        ce_r = Signal(name="rsqrt_ce")
        r_left = Signal(range(plan.rsqrt_depth + 1), name="rsqrt_left")
        m.d.comb += ce_r.eq(v_done | ~eq_const(r_left, 0))
        m.d.sync += r_left.eq(Mux(v_done, plan.rsqrt_depth, Mux(eq_const(r_left, 0), 0, r_left - 1)))
        lane_r = Lane(m, ce_r, v_done, self.roms)
        r = rsqrt_datapath(lane_r, resize(v_q + plan.eps_raw, shape_of(vt)), vt, p.ln_inv_std,
                           p.table_frac_bits, p.rsqrt_table_bits, "rsqrt")
        if lane_r.depth != plan.rsqrt_depth:
            raise AssertionError(f"rsqrt datapath has {lane_r.depth} stages, the plan assumes {plan.rsqrt_depth}")
        slot_r = Signal(range(S), name="slot_inv_std")
        r_done = lane_r.valid & ce_r
        with m.If(r_done):
            m.d.sync += slot_r.eq(_wrap_inc(slot_r, S))
        for s in range(S):
            with m.If(r_done & eq_const(slot_r, s)):
                m.d.sync += r_regs[s].eq(r)

        # --- C: third read, normalise, affine, output (global stall) -------------------------------------
        ce = Signal(name="ce")
        m.d.comb += ce.eq(~self.out_valid | self.out_ready)
        c_issue, c_idx, slot_c, c_start, c_end = _row_walk(m, "c", D, S, N, c_rp.addr, n_r, gate=ce)
        m.d.comb += [c_rp.en.eq(ce), gb_rp.en.eq(ce)]
        lane_c = Lane(m, ce, c_issue)
        c1 = lane_c.stage("c_rd", mean=pick(mean_regs, slot_c), r=pick(r_regs, slot_c), idx=c_idx,
                          last=c_end)                                           # + the read of x at c_rp.addr
        c2 = lane_c.stage("c_ctr", c=self.centre(c_rp.data, c1.mean), r=c1.r, idx=c1.idx, last=c1.last)
        c3 = lane_c.stage("c_mul", prod=c2.c * c2.r, last=c2.last)              # + gb_rp.addr = c2.idx
        with m.If(ce):
            m.d.sync += gb_rp.addr.eq(c2.idx)
        c4 = lane_c.stage("c_norm", n=self.normalise(c3.prod), last=c3.last)   # + the read of gamma / beta
        gb = gb_rp.data
        g = gb[:gbits].as_signed() if p.ln_gamma.signed else gb[:gbits]
        b = gb[gbits:].as_signed() if p.ln_beta.signed else gb[gbits:]
        acc, frac = self.affine(c4.n, g, b)
        c5 = lane_c.stage("c_aff", acc=acc, last=c4.last)
        y = overflow_fix(round_shift_const(c5.acc, frac - a.frac_bits, a.rounding), a)
        with m.If(ce):
            m.d.sync += [self.out_data.eq(y), self.out_last.eq(c5.last), self.out_valid.eq(lane_c.valid)]
        if lane_c.depth + 1 != plan.out_depth:
            raise AssertionError(f"C pass has {lane_c.depth + 1} stages, the plan assumes {plan.out_depth}")

        # --- hand-over counters ---------------------------------------------------------------------------
        m.d.sync += [
            occ.eq(occ + (accept & a_first) - c_end),
            n_mean.eq(n_mean + m_done - b_start),
            n_r.eq(n_r + r_done - c_start),
        ]
        return m


__all__ = ["LayerNormUnit", "const_divider"]
