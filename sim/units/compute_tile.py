"""Compute tile: ``cu_in x cu_out`` MACs with exact accumulators, bit-exact with
:func:`edgemoe.golden.numerics.matmul.linear` (and :func:`~edgemoe.golden.numerics.approx.gelu`,
and the expert's ``y * score`` of :func:`edgemoe.golden.moe.moe`).

One output tile (``cu_out`` neurons) of a linear layer, the block of MACs of
the HLS kernel's ``compute_unit``, with the weights streamed alongside the
activations (no weight buffer in the unit).  Ports (raw words, fields packed
low index in the low bits; valid/ready handshakes, one beat per cycle):

* in: ``in_x`` -- ``cu_in`` words of ``act`` (inputs k0 .. k0+cu_in-1 of the row);
  ``in_w`` -- ``cu_out x cu_in`` words of ``weight`` (field ``o * cu_in + i``:
  neuron o, input k0+i); ``in_last`` -- this beat ends the row (K inputs,
  zero-padded to a multiple of ``cu_in``); read with ``in_last`` only:
  ``in_bias`` -- ``cu_out`` words of ``bias``, ``in_score`` -- ``gate_score``,
  ``in_mode`` -- 0 store, 1 GELU, 2 score-scaled; ``in_valid`` / ``in_ready``;
* out, one word per row: ``out_data`` -- ``cu_out`` signed fields of
  ``act.bits + gate_score.bits`` bits: mode 0 ``y = linear(x, w, b)`` cast to
  ``act``, mode 1 ``gelu(y)``, mode 2 the exact product ``y * score`` (what
  the MoE accumulates into the token's row, at ``act.frac + gate_score.frac``
  fraction bits); ``out_mode``; ``out_valid`` / ``out_ready``.

Pipeline (global stall, ``in_ready = ~out_valid | out_ready``):

1. ``x_i * w_oi`` (``cu_in x cu_out`` multipliers);
2. per neuron, the sum of its ``cu_in`` products (exact);
3. the accumulator: ``acc = (fresh ? 0 : acc) + sum`` (width from the types and
   ``k_max`` terms); at ``last`` the row total is registered, the next beat
   starts fresh;
4. the bias aligned into the exact sum (at ``max(act.frac + weight.frac,
   bias.frac)`` fraction bits), one cast to ``act`` (its rounding and overflow);
5. .. 8. the GELU of :func:`.gelu.gelu_datapath` (one per neuron), ``y``
   and the score carried alongside;
9. the output register: ``y``, ``gelu(y)`` or ``y * score`` by mode.

Latency 9 cycles from a row's last beat to its output word; II = 1 beat.
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edgemoe.golden.numerics.fixed import FixedType

from .base import Lane, overflow_fix, resize, round_shift_const, width_for
from .gelu import gelu_datapath

MODE_STORE, MODE_GELU, MODE_SCORE = 0, 1, 2


def _field(v, j: int, bits: int, signed_: bool):
    f = v[j * bits:(j + 1) * bits]
    return f.as_signed() if signed_ else f.as_unsigned()


class ComputeTileUnit(wiring.Component):
    """``cu_in x cu_out`` MAC tile with exact accumulators and the FINISH cast (see module doc)."""

    def __init__(self, act: FixedType, weight: FixedType, bias: FixedType, score: FixedType, cu_in: int,
                 cu_out: int, k_max: int, gelu_table: FixedType, gelu_step_log2: int, gelu_range: float):
        self.act, self.weight, self.bias, self.score = act, weight, bias, score
        self.cu_in, self.cu_out, self.k_max = cu_in, cu_out, k_max
        self.gelu = (gelu_table, gelu_step_log2, gelu_range)
        self.out_bits = act.bits + score.bits + (0 if act.signed and not score.signed else 1)
        super().__init__({
            "in_x": In(cu_in * act.bits), "in_w": In(cu_out * cu_in * weight.bits),
            "in_bias": In(cu_out * bias.bits), "in_score": In(score.bits), "in_mode": In(2),
            "in_last": In(1), "in_valid": In(1), "in_ready": Out(1),
            "out_data": Out(cu_out * self.out_bits), "out_mode": Out(2), "out_valid": Out(1), "out_ready": In(1),
        })
        self.latency: int | None = None
        self.roms: dict[str, tuple[int, int]] = {}
        self.rams: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_config(cls, cfg) -> "ComputeTileUnit":
        from .registry import tile_k_max

        p, h = cfg.precision, cfg.hardware
        return cls(p.act, p.weight, p.bias, p.gate_score, h.cu_in, h.cu_out, tile_k_max(cfg),
                   p.gelu_table, p.gelu_step_log2, p.gelu_range)

    # exact ranges -------------------------------------------------------------------------------
    def product_range(self) -> tuple[int, int]:
        a, w = self.act, self.weight
        c = [x * y for x in (a.min_raw, a.max_raw) for y in (w.min_raw, w.max_raw)]
        return min(c), max(c)

    def acc_range(self) -> tuple[int, int]:
        lo, hi = self.product_range()
        terms = -(-self.k_max // self.cu_in) * self.cu_in
        return terms * lo, terms * hi

    def elaborate(self, platform):
        m = Module()
        act, wt, bt = self.act, self.weight, self.bias
        ci, co = self.cu_in, self.cu_out
        ce = self.in_ready
        m.d.comb += ce.eq(~self.out_valid | self.out_ready)
        main = Lane(m, ce, self.in_valid, self.roms)

        # 1. products
        x = [_field(self.in_x, i, act.bits, act.signed) for i in range(ci)]
        prods = {f"p{o}_{i}": x[i] * _field(self.in_w, o * ci + i, wt.bits, wt.signed)
                 for o in range(co) for i in range(ci)}
        s1 = main.stage("mul", last=self.in_last, bias=self.in_bias, score=self.in_score, mode=self.in_mode,
                        **prods)
        # 2. per-neuron sums
        plo, phi = self.product_range()
        sums = {}
        for o in range(co):
            total = getattr(s1, f"p{o}_0")
            for i in range(1, ci):
                total = total + getattr(s1, f"p{o}_{i}")
            sums[f"s{o}"] = resize(total, width_for(ci * plo, ci * phi))
        s2 = main.stage("sum", last=s1.last, bias=s1.bias, score=s1.score, mode=s1.mode, **sums)
        # 3. accumulators; the row total at `last`
        alo, ahi = self.acc_range()
        ashape = width_for(alo, ahi)
        fresh = Signal(init=1, name="acc_fresh")
        totals = {}
        for o in range(co):
            acc = Signal(ashape, name=f"acc{o}", reset_less=True)
            t = resize(Mux(fresh, 0, acc) + getattr(s2, f"s{o}"), ashape)
            with m.If(ce & s2.valid):
                m.d.sync += acc.eq(t)
            totals[f"t{o}"] = t
        with m.If(ce & s2.valid):
            m.d.sync += fresh.eq(s2.last)
        main.valid = s2.valid & s2.last
        s3 = main.stage("row", bias=s2.bias, score=s2.score, mode=s2.mode, **totals)
        # 4. bias into the exact sum, one cast to act
        pf = act.frac_bits + wt.frac_bits
        frac = max(pf, bt.frac_bits)
        ys = {}
        for o in range(co):
            b = _field(s3.bias, o, bt.bits, bt.signed)
            v = (getattr(s3, f"t{o}") << (frac - pf)) + (b << (frac - bt.frac_bits))
            vlo = (alo << (frac - pf)) + (bt.min_raw << (frac - bt.frac_bits))
            vhi = (ahi << (frac - pf)) + (bt.max_raw << (frac - bt.frac_bits))
            v = resize(v, width_for(vlo, vhi))
            sh = frac - act.frac_bits
            q = round_shift_const(v, sh, act.rounding)
            qlo, qhi = (vlo >> sh, (vhi >> sh) + 1) if sh > 0 else (vlo << -sh, vhi << -sh)
            ys[f"y{o}"] = overflow_fix(q, act, lo=qlo, hi=qhi)
        s4 = main.stage("cast", score=s3.score, mode=s3.mode, **ys)
        # 5.-8. GELU per neuron (own lanes under the same clock enable), y and the score alongside
        g = []
        for o in range(co):
            lane = Lane(m, ce, None, self.roms)
            g.append(gelu_datapath(lane, getattr(s4, f"y{o}"), act, *self.gelu, name=f"gelu{o}"))
            depth = lane.depth
        carry = {"score": s4.score, "mode": s4.mode, **{f"y{o}": getattr(s4, f"y{o}") for o in range(co)}}
        for d in range(depth):
            carry = vars(main.stage(f"carry{d}", **carry))
            carry.pop("valid")
        # 9. the output word
        mode = carry["mode"]
        words = []
        for o in range(co):
            y = carry[f"y{o}"]
            r = Mux(mode == MODE_GELU, g[o], Mux(mode == MODE_SCORE, y * carry["score"], y))
            words.append(resize(r, signed(self.out_bits)))
        with m.If(ce):
            m.d.sync += [self.out_data.eq(Cat(*words)), self.out_mode.eq(mode), self.out_valid.eq(main.valid)]
        self.latency = main.depth + 1         # a row's last beat -> its output word
        return m


__all__ = ["ComputeTileUnit", "MODE_STORE", "MODE_GELU", "MODE_SCORE"]
