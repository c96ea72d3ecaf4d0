"""cocotb tests of the online softmax unit (``edgemoe.sim.units.softmax``).

Every output word (slot, max, 1/sum) is compared exactly with the golden
online softmax (``edgemoe.sim.units.registry.softmax_expected``: online_init,
online_step per score, online_finish; and, for whole attention heads in the
hardware's schedule, ``online_softmax_state`` over ``key_order``).

Tests:

* ``reset_idle``         -- no output without input;
* ``schedule_full_rate`` -- random heads (N x N scores) streamed in the reordered
  attention's order (P slots interleaved, one score per cycle): exactness,
  latency (row's last score -> its output word) and II, interleaved
  round-robin rows (``ii``) and a single row alone (``ii_single_row``);
* ``edge_rows``          -- ties, all-equal rows, rising and falling maxima,
  both rails, rows of length 1, a row long enough to saturate the sum;
  random interleaving, gaps and stalls;
* ``random_backpressure``-- random rows (lengths 1..2N, uniform, small and
  clustered scores), random interleaving, gaps, stalls and stall bursts;
* ``hold_and_reset``     -- output stalled: input stops once a result waits,
  nothing lost; a reset in mid-row restores the initial state.
"""
from __future__ import annotations

import random

import cocotb
import torch

from edgemoe.sim.tb.context import TbContext
from edgemoe.sim.tb.harness import backpressure_parts, reset_idle_test
from edgemoe.sim.tb.scoreboard import check, compare
from edgemoe.sim.units.registry import SOFTMAX_RECURRENCE, schedule_expected, schedule_stream, softmax_expected

IN_FIELDS = ("in_score", "in_last", "in_slot")
OUT_FIELDS = {"out_slot": False, "out_max": True, "out_inv": False}


def _setup(dut):
    ctx = TbContext.from_env()
    return ctx, ctx.harness(dut, IN_FIELDS, OUT_FIELDS)


def _expected(ctx, words):
    return softmax_expected(words, ctx.cfg.precision, perturb=ctx.perturb)


def _rows_out(tr) -> list[tuple[int, int, int]]:
    return [(w["out_slot"], w["out_max"], w["out_inv"]) for w in tr.outputs]


def interleave(rows: list[list[int]], parallel: int, rng: random.Random, round_robin: bool = False):
    """(score, last, slot) words: up to ``parallel`` rows in flight, one per slot, mixed at random
    (or round-robin); a slot takes the next row when its row ends."""
    queue = list(rows)
    live: dict[int, list[int]] = {}
    words = []
    turn = 0
    while queue or live:
        for o in range(parallel):
            if o not in live and queue:
                live[o] = list(queue.pop(0))
        slots = sorted(live)
        if round_robin:
            o = next((s for s in slots if s >= turn), slots[0])
            turn = (o + 1) % parallel
        else:
            o = rng.choice(slots)
        row = live[o]
        words.append((row.pop(0), int(not row), o))
        if not row:
            del live[o]
    return words


def random_row(rng: random.Random, t, n: int) -> list[int]:
    kind = rng.randrange(4)
    if kind == 0:                                     # uniform over the type
        return [rng.randint(t.min_raw, t.max_raw) for _ in range(n)]
    if kind == 1:                                     # within a few units of 0
        r = 1 << (t.frac_bits + 3)
        return [max(t.min_raw, min(t.max_raw, rng.randint(-r, r))) for _ in range(n)]
    if kind == 2:                                     # clustered: ties and small steps
        base = rng.randint(t.min_raw // 2, t.max_raw // 2)
        return [base + rng.choice((0, 0, 1, -1, 2, -3, 1 << max(t.frac_bits - 2, 0))) for _ in range(n)]
    mag = rng.randint(0, t.bits - 1)                  # one octave, both signs
    return [max(t.min_raw, min(t.max_raw, rng.choice((1, -1)) * rng.getrandbits(mag))) for _ in range(n)]


reset_idle = reset_idle_test(_setup)


@cocotb.test()
async def schedule_full_rate(dut):
    ctx, h = _setup(dut)
    await h.start()
    p, n, par = ctx.cfg.precision, ctx.cfg.model.num_tokens, ctx.cfg.hardware.attn_parallel
    t = p.attn_score
    gen = torch.Generator().manual_seed(ctx.seed)
    heads = [torch.randint(t.min_raw, t.max_raw + 1, (n, n), generator=gen),
             torch.randint(-(1 << (t.frac_bits + 2)), 1 << (t.frac_bits + 2), (n, n), generator=gen),
             torch.randint(-3, 4, (n, n), generator=gen) + (1 << t.frac_bits)]       # many ties
    problems, lat, words_all = [], [], 0
    ii = []
    for k, scores in enumerate(heads):
        words, _ = schedule_stream(scores, par)
        exp = softmax_expected(words, p, perturb=True) if ctx.perturb else schedule_expected(scores, par, p)
        tr = await h.transfer(words, len(exp))
        problems += compare(_rows_out(tr), exp, f"head {k} (schedule order)")
        lasts = [c for c, w in zip(tr.in_cycles, words) if w[1]]
        lat += [o - i for i, o in zip(lasts, tr.out_cycles)]
        ii.append((tr.in_cycles[-1] - tr.in_cycles[0]) / (len(words) - 1))
        words_all += len(words)
    await h.expect_idle(8)
    # II with P rows interleaved round-robin (equal lengths), and with one row alone
    rng = random.Random(ctx.seed)
    rows = [[rng.randint(t.min_raw, t.max_raw) for _ in range(2 * n)] for _ in range(par)]
    words = interleave(rows, par, rng, round_robin=True)
    tr = await h.transfer(words, par)
    problems += compare(_rows_out(tr), _expected(ctx, words), "round-robin rows")
    ii_rr = (tr.in_cycles[-1] - tr.in_cycles[0]) / (len(words) - 1)
    single = [(rng.randint(t.min_raw, t.max_raw), int(i == 4 * n - 1), 0) for i in range(4 * n)]
    tr1 = await h.transfer(single, 1)
    problems += compare(_rows_out(tr1), _expected(ctx, single), "single row")
    ii_1 = (tr1.in_cycles[-1] - tr1.in_cycles[0]) / (len(single) - 1)
    await h.expect_idle(8)
    ctx.record(latency=min(lat), latency_max=max(lat), ii=ii_rr, ii_single_row=ii_1,
               ii_schedule=max(ii), schedule_words=words_all, recurrence=SOFTMAX_RECURRENCE, parallel=par)
    check(problems)
    if min(lat) != max(lat):
        raise AssertionError(f"latency varies without stalls: {min(lat)}..{max(lat)}")
    want_rr = 1.0 if par >= SOFTMAX_RECURRENCE else float(SOFTMAX_RECURRENCE)
    if ii_rr != want_rr or ii_1 != float(SOFTMAX_RECURRENCE):
        raise AssertionError(f"II {ii_rr} (P={par} rows round-robin, expected {want_rr}), "
                             f"{ii_1} (one row, expected {SOFTMAX_RECURRENCE})")


@cocotb.test()
async def edge_rows(dut):
    ctx, h = _setup(dut)
    await h.start()
    p, n, par = ctx.cfg.precision, ctx.cfg.model.num_tokens, ctx.cfg.hardware.attn_parallel
    t = p.attn_score
    rng = random.Random(ctx.seed + 10)
    lo, hi, one = t.min_raw, t.max_raw, 1 << t.frac_bits
    rows = [
        [0] * n, [hi] * n, [lo] * n, [lo, hi], [hi, lo], [lo] * 3 + [hi] * 3, [hi, hi, lo, lo, hi],
        [lo + 1, lo], [hi - 1, hi, hi - 1, hi],                              # rails and one LSB inside
        list(range(-n, n)), list(range(n, -n, -1)),                           # rising / falling by one LSB
        [k * one for k in range(-8, 9)], [k * one for k in range(8, -9, -1)],  # rising / falling by units
        [3 * one, 3 * one, 5 * one, 5 * one, 5 * one, -one, 5 * one],        # ties with the running max
        [rng.choice((0, one, -one)) for _ in range(2 * n)],                   # many ties
        [lo + rng.randint(0, 3) for _ in range(n)], [hi - rng.randint(0, 3) for _ in range(n)],
        [(-1) ** k * hi for k in range(n)],                                   # alternating rails
    ]
    rows += [[v] for v in (0, 1, -1, lo, hi, one, -one, lo + 1, hi - 1)]      # rows of length 1
    # long enough that the running sum (all exps = 1) saturates softmax_sum
    sat = (1 << max(p.softmax_sum.int_bits - (1 if p.softmax_sum.signed else 0), 0)) + 8
    rows.append([one] * sat)
    rng.shuffle(rows)
    words = interleave(rows, par, rng)
    exp = _expected(ctx, words)
    tr = await h.transfer(words, len(exp), p_gap=0.2, p_stall=0.2)
    problems = compare(_rows_out(tr), exp, "edge rows")
    await h.expect_idle(8)
    ctx.record(edge_rows=len(rows), edge_words=len(words), saturating_row=sat)
    check(problems)


@cocotb.test()
async def random_backpressure(dut):
    ctx, h = _setup(dut)
    await h.start()
    p, n, par = ctx.cfg.precision, ctx.cfg.model.num_tokens, ctx.cfg.hardware.attn_parallel
    rng = random.Random(ctx.seed + 20)
    rows = [random_row(rng, p.attn_score, rng.randint(1, 2 * n)) for _ in range(max(ctx.n_random, 3))]
    parts = backpressure_parts(rows)
    problems, nwords, cycles = [], 0, 0
    for k, (part, knobs) in enumerate(parts):
        words = interleave(part, par, rng)
        exp = _expected(ctx, words)
        tr = await h.transfer(words, len(exp), **knobs)
        problems += compare(_rows_out(tr), exp, f"stalls{k} {knobs}")
        nwords += len(words)
        cycles += tr.cycles
    await h.expect_idle(16)
    ctx.record(backpressure_rows=len(rows), backpressure_words=nwords, backpressure_cycles=cycles)
    check(problems)


@cocotb.test()
async def hold_and_reset(dut):
    ctx, h = _setup(dut)
    await h.start()
    p, par = ctx.cfg.precision, ctx.cfg.hardware.attn_parallel
    rng = random.Random(ctx.seed + 30)
    rows = [random_row(rng, p.attn_score, rng.randint(1, 3)) for _ in range(40)]
    words = interleave(rows, par, rng)
    exp = _expected(ctx, words)
    taken = await h.hold(words, 60)
    # the first result stops the pipe: no more input once it waits at the output
    if not 1 <= taken < len(words):
        raise AssertionError(f"{taken}/{len(words)} scores taken with the output stalled for 60 cycles")
    tr = await h.transfer(words[taken:], len(exp))
    problems = compare(_rows_out(tr), exp, "hold/release")
    await h.expect_idle(8)
    # reset in mid-row: the slots' state returns to online_init
    half = [(rng.randint(p.attn_score.min_raw, p.attn_score.max_raw), 0, o) for o in range(par) for _ in range(3)]
    await h.transfer(half, 0)
    await h.reset()
    await h.expect_idle(24)
    fresh = interleave([random_row(rng, p.attn_score, rng.randint(1, 5)) for _ in range(2 * par)], par, rng)
    exp2 = _expected(ctx, fresh)
    tr2 = await h.transfer(fresh, len(exp2))
    problems += compare(_rows_out(tr2), exp2, "after a mid-row reset")
    ctx.record(hold_taken=taken)
    check(problems)
