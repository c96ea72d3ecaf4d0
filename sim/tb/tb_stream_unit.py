"""cocotb tests of one stream unit (any entry of ``edgemoe.sim.units.registry.STREAM_UNITS``).

Loaded by the runner (``edgemoe.sim.runner.run_unit``); the unit, the
config and the seed come from the run's parameters
(``edgemoe.sim.tb.context.TbContext``).  Every output word is
compared exactly with the golden model; each test raises on the first
problem list, which the runner turns into a pytest failure.

Tests:

* ``reset_idle``          -- after reset no output appears without input;
* ``edges_full_rate``     -- edge and tie vectors back to back with the
  consumer always ready: exactness, latency (input handshake to output
  handshake) and initiation interval, written to the perf JSON;
* ``random_backpressure`` -- random words (or, in exhaustive mode, every
  input word) with random input gaps and random ready stalls (single cycles
  and bursts): exactness, no loss, no duplicates;
* ``full_hold_and_flush`` -- ready held low: the pipe fills, stops accepting
  and keeps its words (released afterwards, all exact); a reset in the
  middle of a stream flushes it (no stale words after reset).
"""
from __future__ import annotations

import cocotb
from cocotb.triggers import RisingEdge

from edgemoe.sim.tb.context import TbContext
from edgemoe.sim.tb.harness import backpressure_parts, reset_idle_test
from edgemoe.sim.tb.scoreboard import check, compare
from edgemoe.sim.units.registry import random_words, unit_vectors


def _setup(dut):
    ctx = TbContext.from_env()
    return ctx, ctx.harness(dut)


reset_idle = reset_idle_test(_setup, cycles=32)


@cocotb.test()
async def edges_full_rate(dut):
    ctx, h = _setup(dut)
    await h.start()
    vg = unit_vectors(ctx.spec, ctx.cfg, seed=ctx.seed, n_random=0)
    words = vg["edge"] + vg["tie"]
    tr = await h.transfer(words)
    await h.expect_idle(16)
    check(compare(tr.outputs, ctx.expected(words), "edges+ties", inputs=words))
    lat = tr.latencies
    ctx.record(latency=min(lat), latency_max=max(lat), ii=tr.initiation_interval,
               full_rate_words=len(words), full_rate_cycles=tr.cycles,
               edge_vectors=len(vg["edge"]), tie_vectors=len(vg["tie"]))
    if min(lat) != max(lat):
        raise AssertionError(f"latency varies without stalls: {min(lat)}..{max(lat)}")
    if tr.initiation_interval != 1.0:
        raise AssertionError(f"initiation interval {tr.initiation_interval} != 1 at full rate")


@cocotb.test()
async def random_backpressure(dut):
    ctx, h = _setup(dut)
    await h.start()
    if ctx.exhaustive:                               # every input word, in a shuffled order
        import random
        t = ctx.spec.in_type(ctx.cfg)
        words = list(range(t.min_raw, t.max_raw + 1))
        random.Random(ctx.seed).shuffle(words)
    else:
        words = unit_vectors(ctx.spec, ctx.cfg, seed=ctx.seed + 1, n_random=ctx.n_random)["random"]
    parts = backpressure_parts(words)
    problems = []
    cycles = n = 0
    for k, (part, knobs) in enumerate(parts):
        tr = await h.transfer(part, **knobs)
        problems += compare(tr.outputs, ctx.expected(part), f"stalls{k} {knobs}", inputs=part)
        cycles += tr.cycles
        n += len(part)
    await h.expect_idle(16)
    ctx.record(backpressure_words=n, backpressure_cycles=cycles)
    check(problems)


@cocotb.test()
async def full_hold_and_flush(dut):
    import random

    ctx, h = _setup(dut)
    await h.start()
    t = ctx.spec.in_type(ctx.cfg)
    words = random_words(t, random.Random(ctx.seed + 2), 64, ctx.spec.log_uniform)
    # consumer stalled: the pipe takes one word per stage, then must stop and hold them
    held = await h.hold(words, 40)
    if not 1 <= held < 40:
        raise AssertionError(f"{held} words accepted in 40 cycles with the consumer stalled")
    # release: the held words come out first, then the rest, all exact and in order
    tr = await h.transfer(words[held:])
    tail = await h.drain(held)
    problems = compare(tr.outputs + tail, ctx.expected(words), "fill/hold/release", inputs=words)
    await h.expect_idle(16)
    # reset in mid-stream: nothing in flight survives it
    for w in words[:8]:
        dut.in_data.value = w & ((1 << t.bits) - 1)
        dut.in_valid.value = 1
        dut.out_ready.value = 1
        await RisingEdge(dut.clk)
    await h.reset()
    await h.expect_idle(32)
    ctx.record(hold_depth=held)
    check(problems)
