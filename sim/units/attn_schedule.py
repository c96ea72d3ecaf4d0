"""Attention schedule unit: the reordered attention's key stream and query slots.

The address / control generator of Edge-MoE's reordered attention (P query
rows in flight, each meeting the keys in a rotated order so one key stream
serves them all), the same schedule as
:func:`edgemoe.golden.attention.key_order` and the generated HLS kernel's
``STREAM`` loop (``hls/templates/edgemoe_vit.cpp.j2``): at schedule cycle
``t`` the key stream is at key ``t % N``, and query slot ``o`` (``0 <= o < P``)
holds query ``((t - o) // N) * P + o`` at step ``(t - o) % N`` (active when
``t >= o`` and that query exists), refilled when its step is 0.  A query in
slot ``o`` therefore meets keys ``o, o+1, .., N-1, 0, .., o-1``; each cycle
reads one key and at most one query; the schedule lasts
``ATTN_CYCLES = ((N-1)//P)*N + (N-1)%P + N`` cycles (``hls/writer.py``).

Ports:

* ``start_valid`` / ``start_ready``: a handshake starts one schedule
  (``start_ready`` is high while idle);
* one output word per schedule cycle, valid/ready (the schedule pauses
  while ``out_ready`` is low): ``out_key``; per slot (bit / field ``o``)
  ``out_active``, ``out_query``, ``out_step``, ``out_refill`` (step 0: the
  slot loads its query, resets its softmax state), ``out_done`` (step N-1:
  the row's (max, 1/sum) is stored); ``out_load`` / ``out_load_query`` (the
  one query read this cycle, if any); ``out_last`` (the schedule's last cycle).

Counters only (no division): the key counter wraps at N; each slot has a
step counter started at ``(N - o) % N`` (so it wraps to 0 at ``t = o``) and a
query register advanced by ``P`` at each wrap.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .softmax import eq_const
from .registry import attn_cycles


def _bits(n: int) -> int:
    return max(int(n).bit_length(), 1)


class AttnScheduleUnit(wiring.Component):
    """Key / query-slot schedule for ``num_tokens`` tokens and ``parallel`` slots."""

    def __init__(self, num_tokens: int, parallel: int):
        if not 1 <= parallel <= num_tokens:
            raise ValueError(f"parallel = {parallel}: must be in 1..num_tokens ({num_tokens})")
        self.num_tokens, self.parallel = num_tokens, parallel
        self.cycles = attn_cycles(num_tokens, parallel)
        N, P = num_tokens, parallel
        self.key_bits = _bits(N - 1)
        self.query_bits = _bits(N - 1 + P)        # a slot's register runs one group past the end
        self.step_bits = _bits(N - 1)
        super().__init__({
            "start_valid": In(1), "start_ready": Out(1),
            "out_valid": Out(1), "out_ready": In(1),
            "out_key": Out(self.key_bits), "out_last": Out(1),
            "out_active": Out(P), "out_refill": Out(P), "out_done": Out(P),
            "out_query": Out(P * self.query_bits), "out_step": Out(P * self.step_bits),
            "out_load": Out(1), "out_load_query": Out(self.query_bits),
        })
        self.latency = 1          # start handshake -> first schedule word
        self.roms: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_config(cls, cfg) -> "AttnScheduleUnit":
        return cls(cfg.model.num_tokens, cfg.hardware.attn_parallel)

    def elaborate(self, platform):
        m = Module()
        N, P = self.num_tokens, self.parallel
        running = self.out_valid                 # registers drive the ports directly (no alias wires)
        t = Signal(range(max(self.cycles, 2)), name="cycle")
        key = self.out_key
        qb, sb = self.query_bits, self.step_bits
        # per-slot registers are the port fields themselves (no alias wires in the Verilog)
        query = [self.out_query[o * qb:(o + 1) * qb] for o in range(P)]
        step = [self.out_step[o * sb:(o + 1) * sb] for o in range(P)]
        active = [self.out_active[o] for o in range(P)]
        started = [Signal(name=f"started{o}") for o in range(P)]

        last = self.out_last
        advance = Signal(name="advance")
        m.d.comb += [
            self.start_ready.eq(~running),
            last.eq(eq_const(t, self.cycles - 1)),
            advance.eq(running & self.out_ready),
            self.out_refill.eq(Cat(*[a & eq_const(s, 0) for a, s in zip(active, step)])),
            self.out_done.eq(Cat(*[a & eq_const(s, N - 1) for a, s in zip(active, step)])),
        ]
        # the one query read this cycle (refills never coincide: slot o refills only at key o)
        # (expressions only, no comb if/case blocks: see softmax.pick)
        load_q = Const(0, self.query_bits)
        for o in range(P):
            load_q = load_q | Mux(self.out_refill[o], query[o], 0)
        m.d.comb += [self.out_load.eq(self.out_refill.any()), self.out_load_query.eq(load_q)]

        with m.If(self.start_valid & self.start_ready):
            m.d.sync += [running.eq(1), t.eq(0), key.eq(0)]
            for o in range(P):
                m.d.sync += [query[o].eq(o), step[o].eq((N - o) % N),
                             active[o].eq(o == 0), started[o].eq(o == 0)]
        with m.Elif(advance):
            m.d.sync += [t.eq(t + 1), key.eq(Mux(eq_const(key, N - 1), 0, key + 1))]
            with m.If(last):
                m.d.sync += running.eq(0)
            for o in range(P):
                wrap = eq_const(step[o], N - 1)
                m.d.sync += step[o].eq(Mux(wrap, 0, step[o] + 1))
                with m.If(wrap):
                    with m.If(started[o] & active[o]):      # an exhausted slot stays idle
                        nxt = query[o] + P
                        m.d.sync += [query[o].eq(nxt), active[o].eq(nxt < N)]
                    with m.Elif(~started[o]):
                        m.d.sync += [started[o].eq(1), active[o].eq(1)]
        return m


__all__ = ["AttnScheduleUnit", "attn_cycles"]
