"""cocotb tests of the LayerNorm unit (``edgemoe.sim.units.layernorm``).

Every output word is compared exactly with the golden
:func:`edgemoe.golden.numerics.layernorm.layernorm` (through
``edgemoe.sim.units.registry.layernorm_expected``: rows [R, D] raw ``act``,
gamma / beta raw ``ln_gamma`` / ``ln_beta``, eps = ``model.ln_eps``), with
``out_last`` on each row's last word.  Gamma / beta are loaded through the
parameter port before the rows (and reloaded between batches).

Tests:

* ``reset_idle``          -- no output without input;
* ``full_rate``           -- random rows back to back, consumer always ready:
  exactness, II (cycles per input word over all rows, ``ii``), latency from a
  row's last input word to its first output word (``latency``) and to its last
  (``latency_last``), cycles per output row;
* ``edge_rows``           -- zero / all-equal rows (var = 0: rsqrt(eps)), rows
  whose variance floors to 0 with c != 0, both rails, alternating rails (c and
  the variance at their extremes), single outliers, ramps, tiny variations on
  a large mean; under random gamma / beta with rails and four rail parameter
  sets; random gaps and stalls;
* ``random_backpressure`` -- random rows (uniform, small, clustered, one octave,
  offset + small spread) with gaps, stalls and stall bursts;
* ``hold_and_reset``      -- output stalled: the input stops once the row
  slots are full (``slots * D`` words), nothing lost; a reset in mid-row
  restarts cleanly and keeps gamma / beta.

Self-test (the runner's ``perturb``): with ``perturb=True`` the expectation
rounds the ln_norm cast by another mode; with ``perturb="eps"`` it uses twice
the epsilon (only rows of small variance change: ``edge_rows_and_params``
must fail).
"""
from __future__ import annotations

import random

import cocotb
from cocotb.triggers import RisingEdge

from edgemoe.sim.formats import layernorm_plan
from edgemoe.sim.tb.context import TbContext
from edgemoe.sim.tb.harness import backpressure_parts, reset_idle_test, to_word
from edgemoe.sim.tb.scoreboard import check, compare
from edgemoe.sim.units.registry import layernorm_expected

IN_FIELDS = ("in_data",)
OUT_FIELDS = {"out_data": True, "out_last": False}


def _setup(dut):
    ctx = TbContext.from_env()
    h = ctx.harness(dut, IN_FIELDS, OUT_FIELDS)
    dut.param_we.value = 0
    return ctx, h


def _perturb(ctx):
    """The self-test's perturbation: "eps" (twice the epsilon) when named, else "rounding" (the ln_norm
    cast's rounding mode swapped); see ``layernorm_expected``."""
    if not ctx.perturb:
        return False
    return ctx.perturb if isinstance(ctx.perturb, str) else "rounding"


async def load_params(dut, p, gamma: list[int], beta: list[int]) -> None:
    """One parameter write per cycle (the unit must be idle: no row in flight)."""
    for i, (g, b) in enumerate(zip(gamma, beta)):
        dut.param_we.value = 1
        dut.param_addr.value = i
        dut.param_gamma.value = to_word(g, p.ln_gamma.bits)
        dut.param_beta.value = to_word(b, p.ln_beta.bits)
        await RisingEdge(dut.clk)
    dut.param_we.value = 0
    await RisingEdge(dut.clk)


def random_params(rng: random.Random, p, d: int, p_rail: float = 0.1) -> tuple[list[int], list[int]]:
    """gamma / beta: uniform over their types, a fraction at the rails, a few near 1.0 / 0."""
    def one(t, typical: int):
        u = rng.random()
        if u < p_rail:
            return rng.choice((t.min_raw, t.max_raw))
        if u < 3 * p_rail:
            return max(t.min_raw, min(t.max_raw, typical + rng.randint(-64, 64)))
        return rng.randint(t.min_raw, t.max_raw)

    return ([one(p.ln_gamma, 1 << p.ln_gamma.frac_bits) for _ in range(d)],
            [one(p.ln_beta, 0) for _ in range(d)])


def random_row(rng: random.Random, t, d: int) -> list[int]:
    """One row of ``d`` raw words of ``t``, of a random kind."""
    clip = lambda v: max(t.min_raw, min(t.max_raw, v))           # noqa: E731
    kind = rng.randrange(5)
    if kind == 0:                                               # uniform over the type
        return [rng.randint(t.min_raw, t.max_raw) for _ in range(d)]
    if kind == 1:                                               # within a few units of 0
        r = 1 << (t.frac_bits + 2)
        return [rng.randint(-r, r) for _ in range(d)]
    if kind == 2:                                               # clustered: ties and small steps
        base = rng.randint(t.min_raw // 2, t.max_raw // 2)
        return [clip(base + rng.choice((0, 0, 1, -1, 255, -256, 1 << max(t.frac_bits - 2, 0)))) for _ in range(d)]
    if kind == 3:                                               # one octave, both signs
        mag = rng.randint(0, t.bits - 1)
        return [clip(rng.choice((1, -1)) * rng.getrandbits(mag)) for _ in range(d)]
    base = rng.randint(t.min_raw, t.max_raw)                    # large offset, small spread
    spread = 1 << rng.randint(0, t.frac_bits)
    return [clip(base + rng.randint(-spread, spread)) for _ in range(d)]


def edge_rows(rng: random.Random, p, d: int) -> list[list[int]]:
    t, ct = p.act, p.ln_centered
    lo, hi, one = t.min_raw, t.max_raw, 1 << t.frac_bits
    clsb = 1 << max(t.frac_bits - ct.frac_bits, 0)              # one ln_centered LSB in act raw
    v = rng.randint(lo // 2, hi // 2)
    rows = [[0] * d, [hi] * d, [lo] * d, [one] * d, [-one] * d, [v] * d,       # var = 0, c = 0
            [(hi if i % 2 == 0 else lo) for i in range(d)],                    # c saturates, var at its top
            [(lo if i % 2 == 0 else hi) for i in range(d)],
            [hi] * (d // 2) + [lo] * (d - d // 2),
            [lo] * (d - 1) + [hi], [hi] * (d - 1) + [lo], [0] * (d - 1) + [hi], [hi] + [0] * (d - 1),  # one outlier
            [0] * (d - 1) + [lo], [v] * (d // 3) + [hi] + [v] * (d - d // 3 - 1),
            # the variance floors to 0 with c != 0: r = rsqrt(eps) meets non-zero words
            [v] * (d - 1) + [v + clsb], [0] * (d - 1) + [clsb], [0] * (d - 1) + [-clsb],
            [(v + (clsb if i % 7 == 0 else 0)) for i in range(d)],
            [max(lo, min(hi, v + (i % 3) - 1)) for i in range(d)],              # sub-LSB spread
            [lo + 1] * (d - 1) + [lo], [hi - 1] * (d - 1) + [hi],
            [max(lo, min(hi, lo + i * ((hi - lo) // max(d - 1, 1)))) for i in range(d)],   # ramp over the range
            [max(lo, min(hi, (i - d // 2) * clsb)) for i in range(d)],                    # ramp of centred LSBs
            [rng.choice((lo, hi, 0, -1, 1)) for _ in range(d)]]
    rows += [[max(lo, min(hi, hi - rng.randint(0, 3) * clsb)) for _ in range(d)],
             [max(lo, min(hi, lo + rng.randint(0, 3) * clsb)) for _ in range(d)]]
    return rows


async def run_rows(ctx, h, dut, rows, gamma, beta, label: str, **knobs):
    """Stream ``rows`` through the unit; returns (problems, transfer)."""
    d = ctx.cfg.model.embed_dim
    exp_rows = layernorm_expected(rows, gamma, beta, ctx.cfg, perturb=_perturb(ctx))
    expected = [(y, int(i == d - 1)) for row in exp_rows for i, y in enumerate(row)]
    items = [(x,) for row in rows for x in row]
    tr = await h.transfer(items, len(expected), **knobs)
    got = [(w["out_data"], w["out_last"]) for w in tr.outputs]
    return compare(got, expected, label), tr


reset_idle = reset_idle_test(_setup)


@cocotb.test()
async def full_rate(dut):
    ctx, h = _setup(dut)
    await h.start()
    p, d = ctx.cfg.precision, ctx.cfg.model.embed_dim
    plan = layernorm_plan(ctx.cfg)
    rng = random.Random(ctx.seed)
    gamma, beta = random_params(rng, p, d)
    await load_params(dut, p, gamma, beta)
    rows = [random_row(rng, p.act, d) for _ in range(max(3 * plan.slots, 8))]
    problems, tr = await run_rows(ctx, h, dut, rows, gamma, beta, "full rate")
    await h.expect_idle(16)
    n = len(tr.in_cycles)
    ii = (tr.in_cycles[-1] - tr.in_cycles[0]) / (n - 1)
    ok = len(tr.out_cycles) == n
    lat = [tr.out_cycles[r * d] - tr.in_cycles[r * d + d - 1] for r in range(len(rows))] if ok else [0]
    lat_last = [tr.out_cycles[r * d + d - 1] - tr.in_cycles[r * d + d - 1] for r in range(len(rows))] if ok else [0]
    out_ii = (tr.out_cycles[-1] - tr.out_cycles[0]) / (n - 1) if ok else 0.0
    ctx.record(latency=min(lat), latency_max=max(lat), latency_last=min(lat_last), ii=ii, out_ii=out_ii,
               row_cycles=ii * d, rows=len(rows), dim=d, slots=plan.slots, design_ii=1.0)
    check(problems)
    if ii != 1.0 or out_ii != 1.0 or min(lat) != max(lat) or min(lat_last) != max(lat_last):
        raise AssertionError(f"II {ii} in / {out_ii} out (expected 1.0), latency {min(lat)}..{max(lat)}, "
                             f"to the last word {min(lat_last)}..{max(lat_last)}")


@cocotb.test()
async def edge_rows_and_params(dut):
    ctx, h = _setup(dut)
    await h.start()
    p, d = ctx.cfg.precision, ctx.cfg.model.embed_dim
    gt, bt = p.ln_gamma, p.ln_beta
    rng = random.Random(ctx.seed + 10)
    rows = edge_rows(rng, p, d)
    rng.shuffle(rows)
    gamma, beta = random_params(rng, p, d, p_rail=0.2)
    await load_params(dut, p, gamma, beta)
    problems, _ = await run_rows(ctx, h, dut, rows, gamma, beta, "edge rows", p_gap=0.2, p_stall=0.2)
    # rail parameter sets (reloaded while idle) on a few edge and random rows
    few = rows[:4] + [random_row(rng, p.act, d) for _ in range(2)]
    sets = {"gamma max, beta min": ([gt.max_raw] * d, [bt.min_raw] * d),
            "gamma min, beta max": ([gt.min_raw] * d, [bt.max_raw] * d),
            "alternating rails": ([(gt.max_raw if i % 2 else gt.min_raw) for i in range(d)],
                                  [(bt.min_raw if i % 3 else bt.max_raw) for i in range(d)]),
            "identity": ([1 << gt.frac_bits] * d, [0] * d)}
    for label, (g, b) in sets.items():
        await h.expect_idle(4)
        await load_params(dut, p, g, b)
        pr, _ = await run_rows(ctx, h, dut, few, g, b, label, p_gap=0.1, p_stall=0.1)
        problems += pr
    await h.expect_idle(16)
    ctx.record(edge_rows=len(rows), param_sets=1 + len(sets))
    check(problems)


@cocotb.test()
async def random_backpressure(dut):
    ctx, h = _setup(dut)
    await h.start()
    p, d = ctx.cfg.precision, ctx.cfg.model.embed_dim
    rng = random.Random(ctx.seed + 20)
    gamma, beta = random_params(rng, p, d)
    await load_params(dut, p, gamma, beta)
    rows = [random_row(rng, p.act, d) for _ in range(max(ctx.n_random, 3))]
    problems, words, cycles = [], 0, 0
    for k, (part, knobs) in enumerate(backpressure_parts(rows)):
        pr, tr = await run_rows(ctx, h, dut, part, gamma, beta, f"stalls{k} {knobs}", **knobs)
        problems += pr
        words += len(tr.in_cycles)
        cycles += tr.cycles
    await h.expect_idle(16)
    ctx.record(backpressure_rows=len(rows), backpressure_words=words, backpressure_cycles=cycles)
    check(problems)


@cocotb.test()
async def hold_and_reset(dut):
    ctx, h = _setup(dut)
    await h.start()
    p, d = ctx.cfg.precision, ctx.cfg.model.embed_dim
    plan = layernorm_plan(ctx.cfg)
    rng = random.Random(ctx.seed + 30)
    gamma, beta = random_params(rng, p, d)
    await load_params(dut, p, gamma, beta)
    rows = [random_row(rng, p.act, d) for _ in range(plan.slots + 2)]
    items = [(x,) for row in rows for x in row]
    taken = await h.hold(items, plan.slots * d + plan.latency + 64)
    # C holds row 0 (its output register is full), so row 0's slot never frees: S rows enter
    if taken != plan.slots * d:
        raise AssertionError(f"{taken} words taken with the output stalled, expected slots * D = {plan.slots * d}")
    exp_rows = layernorm_expected(rows, gamma, beta, ctx.cfg, perturb=_perturb(ctx))
    expected = [(y, int(i == d - 1)) for row in exp_rows for i, y in enumerate(row)]
    tr = await h.transfer(items[taken:], len(expected))
    problems = compare([(w["out_data"], w["out_last"]) for w in tr.outputs], expected, "hold/release")
    await h.expect_idle(8)
    # reset in mid-row (and with rows in every pass): a fresh start, gamma / beta kept
    await h.transfer([(x,) for x in random_row(rng, p.act, d) * 2 + [0] * (d // 2)], 0)
    await h.reset()
    await h.expect_idle(plan.latency + 2 * d)
    fresh = [random_row(rng, p.act, d) for _ in range(3)]
    pr, _ = await run_rows(ctx, h, dut, fresh, gamma, beta, "after a mid-row reset", p_gap=0.1, p_stall=0.1)
    problems += pr
    ctx.record(hold_taken=taken)
    check(problems)
