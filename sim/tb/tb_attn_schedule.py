"""cocotb tests of the attention schedule unit (``edgemoe.sim.units.attn_schedule``).

Each recorded schedule (one output word per cycle) is checked by
``edgemoe.sim.units.registry.schedule_problems``: every query meets every
key once in the golden ``key_order``; slot o holds the HLS STREAM loop's
query / step; one key and at most one query read per cycle; refill / done
flags; exactly ``ATTN_CYCLES`` cycles.

Tests:

* ``reset_idle``     -- idle after reset: ready for a start, no output;
* ``full_rate``      -- one schedule with the consumer always ready:
  exactness, start -> first word latency, cycles per word (II);
* ``stalls_restart`` -- random ready stalls (single and bursts), start
  pulses during a run ignored, two schedules back to back;
* ``reset_mid_run``  -- a reset in mid-schedule returns to idle; the next
  schedule is complete.
"""
from __future__ import annotations

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from edgemoe.sim.tb.context import TbContext
from edgemoe.sim.tb.scoreboard import check
from edgemoe.sim.units.registry import attn_cycles, schedule_problems


def _setup(dut):
    ctx = TbContext.from_env()
    out = {f: False for f in ("out_key", "out_last", "out_active", "out_refill", "out_done", "out_query",
                              "out_step", "out_load", "out_load_query")}
    return ctx, ctx.harness(dut, (), out, in_valid="start_valid", in_ready="start_ready")


def _words(ctx, dut, raw: list[dict]) -> list[dict]:
    """Split the per-slot vectors of the recorded words."""
    par = ctx.cfg.hardware.attn_parallel
    qb, sb = len(dut.out_query) // par, len(dut.out_step) // par
    out = []
    for w in raw:
        out.append({
            "key": w["out_key"], "last": w["out_last"], "load": w["out_load"], "load_query": w["out_load_query"],
            "active": [(w["out_active"] >> o) & 1 for o in range(par)],
            "refill": [(w["out_refill"] >> o) & 1 for o in range(par)],
            "done": [(w["out_done"] >> o) & 1 for o in range(par)],
            "query": [(w["out_query"] >> (o * qb)) & ((1 << qb) - 1) for o in range(par)],
            "step": [(w["out_step"] >> (o * sb)) & ((1 << sb) - 1) for o in range(par)],
        })
    return out


def _check(ctx, dut, raw, label):
    n, par = ctx.cfg.model.num_tokens, ctx.cfg.hardware.attn_parallel
    return [f"{label}: {p}" for p in schedule_problems(_words(ctx, dut, raw), n, par, perturb=ctx.perturb)]


@cocotb.test()
async def reset_idle(dut):
    ctx, h = _setup(dut)
    await h.start()
    await ReadOnly()
    if not int(dut.start_ready.value):
        raise AssertionError("not ready for a start after reset")
    await RisingEdge(dut.clk)
    await h.expect_idle(16)


@cocotb.test()
async def full_rate(dut):
    ctx, h = _setup(dut)
    await h.start()
    n, par = ctx.cfg.model.num_tokens, ctx.cfg.hardware.attn_parallel
    cycles = attn_cycles(n, par)
    tr = await h.transfer([()], cycles)
    problems = _check(ctx, dut, tr.outputs, "full rate")
    await h.expect_idle(8)
    latency = tr.out_cycles[0] - tr.in_cycles[0]
    ii = (tr.out_cycles[-1] - tr.out_cycles[0]) / max(len(tr.out_cycles) - 1, 1)
    ctx.record(latency=latency, latency_max=latency, ii=ii, cycles=len(tr.outputs), attn_cycles=cycles,
               total_cycles=tr.out_cycles[-1] - tr.in_cycles[0] + 1, num_tokens=n, parallel=par)
    check(problems)
    if ii != 1.0:
        raise AssertionError(f"{ii} cycles per schedule word at full rate")


@cocotb.test()
async def stalls_restart(dut):
    ctx, h = _setup(dut)
    await h.start()
    n, par = ctx.cfg.model.num_tokens, ctx.cfg.hardware.attn_parallel
    cycles = attn_cycles(n, par)
    problems = []
    for k, knobs in enumerate((dict(p_stall=0.3), dict(p_stall=0.5, stall_burst=5))):
        # the start stays offered after the first one is taken: a running schedule must ignore it
        tr = await h.transfer([(), ()], 2 * cycles, p_gap=0.0, **knobs)
        problems += _check(ctx, dut, tr.outputs[:cycles], f"schedule {2 * k} {knobs}")
        problems += _check(ctx, dut, tr.outputs[cycles:], f"schedule {2 * k + 1} {knobs}")
        if tr.in_cycles[1] <= tr.out_cycles[cycles - 1]:
            problems.append(f"second start taken at cycle {tr.in_cycles[1]}, before the first schedule ended")
    await h.expect_idle(8)
    check(problems)


@cocotb.test()
async def reset_mid_run(dut):
    ctx, h = _setup(dut)
    await h.start()
    n, par = ctx.cfg.model.num_tokens, ctx.cfg.hardware.attn_parallel
    cycles = attn_cycles(n, par)
    await h.transfer([()], max(cycles // 2, 1))
    await h.reset()
    await h.expect_idle(8)
    tr = await h.transfer([()], cycles, p_stall=0.2)
    problems = _check(ctx, dut, tr.outputs, "after reset")
    await h.expect_idle(8)
    check(problems)
