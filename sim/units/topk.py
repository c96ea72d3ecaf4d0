"""Top-k and expert-queue unit: the gate's routing, bit-exact with the golden model.

Per token, the ``k`` best of ``E`` gate logits, ranked as
:func:`edgemoe.golden.numerics.topk.topk` (highest logit first, equal logits
rank the lower expert index first); per image, the per-expert token queues
(ascending token index) and counts of :class:`edgemoe.golden.moe.Routing`
(``queue(image, e)``, ``counts(E)``): Edge-MoE's patch reordering for MoE
(each expert runs once per image over the tokens routed to it).

Ports (valid/ready handshakes):

* in: ``in_logit`` (gate_logit), ``in_last`` (this token is the image's last;
  read on a token's last word), ``in_valid`` / ``in_ready``.  Logits come
  E per token, expert 0 first (the unit counts experts; a token ends on its
  E-th word).  An image ends at ``in_last`` or at its ``num_tokens``-th token.
* out: one stream of tagged words, ``out_kind`` =

  - ``0`` TOKEN, at each token's end: ``out_token``, ``out_experts`` (k fields
    of expert indices, best first, field 0 in the low bits) and ``out_logits``
    (their logits);
  - ``1`` COUNT, after the image's last token, for each expert e ascending:
    ``out_expert`` = e, ``out_count`` = tokens queued (0 for an idle expert),
  - ``2`` QUEUE, after each COUNT word with a non-zero count: the queue,
    ``out_expert``, ``out_count`` = position, ``out_token`` = token index;

  ``out_last`` marks the image's final word; ``out_valid`` / ``out_ready``.

Structure:

* selection: a sorted list of the k best (logit, index) so far; each word is
  inserted in one cycle (k comparators; ``>`` so that an equal later logit,
  which has the higher index, ranks after the earlier one): one logit per cycle;
* at a token's end the list moves to a pending register: the TOKEN word is
  offered, and the k experts are appended to their queues (a RAM of
  ``E x 2**ceil(log2 N)`` token indices, one write per cycle, per-expert
  counters), taking k <= E cycles while the next token streams in;
* after the image's last token: the dump of counts and queues
  (``E + k * tokens`` words) from the RAM's registered read port, then the
  counters clear for the next image.  Input waits during the dump.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.hdl import Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgemoe.golden.numerics.fixed import FixedType

from .base import shape_of
from .softmax import eq_const, pick

KIND_TOKEN, KIND_COUNT, KIND_QUEUE = 0, 1, 2


def _bits(n: int) -> int:
    return max(int(n).bit_length(), 1)


class TopKQueueUnit(wiring.Component):
    """Top-k selection + per-expert token queues (see module doc)."""

    def __init__(self, logit: FixedType, num_experts: int, top_k: int, num_tokens: int):
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k = {top_k}: must be in 1..num_experts ({num_experts})")
        self.logit, self.E, self.k, self.N = logit, num_experts, top_k, num_tokens
        self.expert_bits = _bits(num_experts - 1)
        self.token_bits = _bits(num_tokens - 1)
        self.count_bits = _bits(num_tokens)
        super().__init__({
            "in_logit": In(shape_of(logit)), "in_last": In(1), "in_valid": In(1), "in_ready": Out(1),
            "out_valid": Out(1), "out_ready": In(1), "out_kind": Out(2), "out_last": Out(1),
            "out_token": Out(self.token_bits), "out_expert": Out(self.expert_bits),
            "out_count": Out(self.count_bits),
            "out_experts": Out(top_k * self.expert_bits), "out_logits": Out(top_k * logit.bits),
        })
        self.latency = 1        # token's last logit -> its TOKEN word
        self.roms: dict[str, tuple[int, int]] = {}
        self.rams = {"queues": (num_experts << self.token_bits, self.token_bits)}

    @classmethod
    def from_config(cls, cfg) -> "TopKQueueUnit":
        m = cfg.model
        return cls(cfg.precision.gate_logit, m.num_experts, m.top_k, m.num_tokens)

    def elaborate(self, platform):
        m = Module()
        E, k, N = self.E, self.k, self.N
        eb, tb, cb = self.expert_bits, self.token_bits, self.count_bits
        ls = shape_of(self.logit)

        mem = Memory(shape=unsigned(tb), depth=E << tb, init=[])
        m.submodules.queues = mem
        # (Amaranth names a port's signals after the variable: `port__*`, the lint waiver's name)
        port = mem.write_port()
        wp = port
        port = mem.read_port(domain="sync")
        rp = port

        INPUT, WAIT, DUMP = 0, 1, 2
        state = Signal(2, name="state")
        e_cnt = Signal(range(max(E, 2)), name="expert_cnt")
        tok = Signal(tb, name="token_cnt")
        best_v = [Signal(ls, name=f"best_logit{j}") for j in range(k)]
        best_i = [Signal(eb, name=f"best_expert{j}") for j in range(k)]
        best_ok = [Signal(name=f"best_ok{j}") for j in range(k)]
        # the pending token's list lives in the output port fields (no alias wires)
        lb = self.logit.bits
        pend_v = [self.out_logits[j * lb:(j + 1) * lb] for j in range(k)]
        pend_i = [self.out_experts[j * eb:(j + 1) * eb] for j in range(k)]
        pend_tok = wp.data                                    # the pending token = the queue word written
        pend_out = Signal(name="pend_out")                    # TOKEN word not yet taken
        app = Signal(range(k + 1), init=k, name="append_idx")  # next append; k = none left
        counts = [Signal(cb, name=f"count{e}") for e in range(E)]
        d_e = self.out_expert                                 # dump: the expert being listed
        d_pos = Signal(tb, name="dump_pos")
        d_kind = Signal(2, name="dump_kind")

        # --- insertion of the incoming logit into the sorted k-list -------------------------
        v_in = self.in_logit
        empty = eq_const(e_cnt, 0)
        ok = [b & ~empty for b in best_ok]
        gt = [Signal(name=f"rank_gt{j}") for j in range(k)]
        for j in range(k):
            m.d.comb += gt[j].eq(~ok[j] | (v_in > best_v[j]))
        # (Mux expressions, no comb if/case blocks: see softmax.pick)
        new_v, new_i, new_ok = [], [], []
        for j in range(k):
            shifted = (best_v[j - 1], best_i[j - 1], ok[j - 1]) if j > 0 else (v_in, e_cnt, 1)
            take_prev = gt[j - 1] if j > 0 else Const(0, 1)
            for dst, keep, prev, ins, name in zip((new_v, new_i, new_ok), (best_v[j], best_i[j], ok[j]), shifted,
                                                  (v_in, e_cnt, 1), ("ins_logit", "ins_expert", "ins_ok")):
                sig = Signal(Value.cast(keep).shape() if name != "ins_ok" else 1, name=f"{name}{j}")
                m.d.comb += sig.eq(Mux(gt[j], Mux(take_prev, prev, ins), keep))
                dst.append(sig)

        # --- handshakes ----------------------------------------------------------------------------
        tok_end = eq_const(e_cnt, E - 1)
        tok_hs = Signal(name="token_hs")
        dump_adv = Signal(name="dump_adv")
        pend_free = Signal(name="pend_free")    # the pending token is fully handled after this cycle
        accept = Signal(name="accept")
        m.d.comb += [
            tok_hs.eq(pend_out & self.out_ready),
            dump_adv.eq(eq_const(state, DUMP) & self.out_ready),
            pend_free.eq((~pend_out | self.out_ready) & ((app >= k - 1) if k > 1 else Const(1, 1))),
            self.in_ready.eq(eq_const(state, INPUT) & (~tok_end | pend_free)),
            accept.eq(self.in_valid & self.in_ready),
        ]

        # --- queue appends: one expert of the pending token per cycle -------------------------
        busy = app < k
        a_e = pick(pend_i, app)
        a_pos = pick(counts, a_e)
        m.d.comb += [wp.addr.eq(Cat(a_pos[:tb], a_e)), wp.en.eq(busy)]
        with m.If(busy):
            m.d.sync += app.eq(app + 1)
            for e in range(E):
                with m.If(eq_const(a_e, e)):
                    m.d.sync += counts[e].eq(a_pos + 1)
        with m.If(tok_hs):
            m.d.sync += pend_out.eq(0)

        # --- input words ---------------------------------------------------------------------------
        with m.If(accept):
            with m.If(tok_end):
                img_end = self.in_last | eq_const(tok, N - 1)
                m.d.sync += [e_cnt.eq(0), pend_tok.eq(tok), pend_out.eq(1), app.eq(0)]
                m.d.sync += [x.eq(y) for x, y in zip(pend_v + pend_i, new_v + new_i)]
                with m.If(img_end):
                    m.d.sync += [tok.eq(0), state.eq(WAIT)]
                with m.Else():
                    m.d.sync += tok.eq(tok + 1)
            with m.Else():
                m.d.sync += e_cnt.eq(e_cnt + 1)
                m.d.sync += [x.eq(y) for x, y in zip(best_v + best_i + best_ok, new_v + new_i + new_ok)]

        # --- the dump of counts and queues ---------------------------------------------------------
        cnt = pick(counts, d_e)
        more = Signal(name="dump_more")
        finish = Signal(name="dump_finish")
        last_e = eq_const(d_e, E - 1)
        m.d.comb += [
            more.eq(Mux(eq_const(d_kind, KIND_COUNT), cnt.any(), d_pos + 1 < cnt)),
            finish.eq(~more & last_e),
        ]
        n_kind = Mux(more, KIND_QUEUE, KIND_COUNT)
        n_pos = Mux(more & eq_const(d_kind, KIND_QUEUE), (d_pos + 1)[:tb], 0)
        n_e = Mux(more | last_e, d_e, (d_e + 1)[:eb])
        m.d.comb += rp.addr.eq(Mux(dump_adv, Cat(n_pos, n_e), Cat(d_pos, d_e)))

        with m.If(eq_const(state, WAIT) & ~pend_out & ~busy):
            m.d.sync += [state.eq(DUMP), d_e.eq(0), d_pos.eq(0), d_kind.eq(KIND_COUNT)]
        with m.If(dump_adv):
            m.d.sync += [d_e.eq(n_e), d_pos.eq(n_pos), d_kind.eq(n_kind)]
            with m.If(finish):
                m.d.sync += [state.eq(INPUT)] + [c.eq(0) for c in counts]

        # --- output word ---------------------------------------------------------------------------
        in_dump = eq_const(state, DUMP)
        m.d.comb += [
            self.out_valid.eq(pend_out | in_dump),
            self.out_kind.eq(Mux(in_dump, d_kind, KIND_TOKEN)),
            self.out_token.eq(Mux(in_dump, rp.data, pend_tok)),
            self.out_count.eq(Mux(eq_const(d_kind, KIND_COUNT), cnt, d_pos)),
            self.out_last.eq(in_dump & finish),
        ]
        return m


__all__ = ["TopKQueueUnit", "KIND_TOKEN", "KIND_COUNT", "KIND_QUEUE"]
