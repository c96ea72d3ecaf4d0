"""cocotb tests of the compute tile (``edgemoe.sim.units.compute_tile``).

Every output word is compared exactly with the golden spec: per row,
``linear(x, act, w, weight, b, bias, act)`` (mode 0), ``gelu`` of it (mode 1),
or its product with the row's gate score (mode 2, the term ``moe`` accumulates).

Tests:

* ``reset_idle``          -- no output without input;
* ``full_rate``           -- random rows (K = embed_dim) of every mode, consumer
  always ready: exactness, one beat per cycle (``ii``), latency (a row's last
  beat -> its word), cycles per row;
* ``edge_rows``           -- rails (all products at +-max, the longest row
  ``k_max`` so the accumulator's range is hit), zero rows, one-beat rows,
  rows padded to ``cu_in``, rail biases and scores; random gaps and stalls;
* ``random_backpressure`` -- random rows (random K, magnitudes, modes) with
  gaps, stalls and stall bursts.
"""
from __future__ import annotations

import random

import cocotb
import torch

from edgemoe.golden.numerics.approx import gelu
from edgemoe.golden.numerics.matmul import linear
from edgemoe.sim.tb.context import TbContext
from edgemoe.sim.tb.harness import backpressure_parts, from_word, reset_idle_test, to_word
from edgemoe.sim.tb.scoreboard import check, compare
from edgemoe.sim.units.registry import tile_k_max

STORE, GELU, SCORE = 0, 1, 2


def _setup(dut):
    ctx = TbContext.from_env()
    return ctx, ctx.harness(dut, ("in_x", "in_w", "in_bias", "in_score", "in_mode", "in_last"),
                            {"out_data": False, "out_mode": False})


def _pack(vals, bits: int) -> int:
    w = 0
    for j, v in enumerate(vals):
        w |= to_word(int(v), bits) << (j * bits)
    return w


def _row_expected(p, x, w, b, score, mode, perturb=False) -> tuple:
    """(mode, cu_out results) of one row: x [K], w [cu_out, K], b [cu_out] raw words."""
    act = p.act
    out = act.with_modes(rounding="RND" if act.rounding != "RND" else "TRN") if perturb else act
    y = linear(x.unsqueeze(0), act, w, p.weight, b, p.bias, out)[0]
    if mode == GELU:
        y = gelu(y, act, p.gelu_table, p.gelu_step_log2, p.gelu_range)
    elif mode == SCORE:
        y = y * score
    return (mode, tuple(int(v) for v in y))


def _row_items(ctx, x, w, b, score, mode) -> list[tuple]:
    """The beats of one row: x zero-padded to a multiple of cu_in."""
    p, h = ctx.cfg.precision, ctx.cfg.hardware
    ci, co = h.cu_in, h.cu_out
    k = x.shape[0]
    beats = -(-k // ci)
    xp = torch.zeros(beats * ci, dtype=torch.int64)
    xp[:k] = x
    wp = torch.zeros(co, beats * ci, dtype=torch.int64)
    wp[:, :k] = w
    items = []
    for j in range(beats):
        last = j == beats - 1
        xs = xp[j * ci:(j + 1) * ci].tolist()
        ws = wp[:, j * ci:(j + 1) * ci].reshape(-1).tolist()
        items.append((_pack(xs, p.act.bits), _pack(ws, p.weight.bits),
                      _pack(b.tolist(), p.bias.bits) if last else 0, score if last else 0,
                      mode if last else 3, int(last)))
    return items


def _decode(ctx, dut, word: dict) -> tuple:
    co = ctx.cfg.hardware.cu_out
    ob = len(dut.out_data) // co
    vals = tuple(from_word((word["out_data"] >> (o * ob)) & ((1 << ob) - 1), ob, True) for o in range(co))
    return (word["out_mode"], vals)


def _rand_row(ctx, g: torch.Generator, rng: random.Random, k: int, mode=None, scale=None):
    """x [k], w [cu_out, k], b, score, mode; magnitudes drawn per row (so that results do not
    all saturate: GELU needs moderate values)."""
    p, co = ctx.cfg.precision, ctx.cfg.hardware.cu_out

    def words(t, shape, shift):
        v = torch.randint(t.min_raw, t.max_raw + 1, shape, generator=g)
        return v >> shift if shift else v

    if scale is None:
        scale = rng.choice(("full", "mid", "small"))
    if scale == "full":
        sx, sw = 0, 0
    elif scale == "mid":
        sx, sw = p.act.bits - p.act.frac_bits // 2 - 4, 4
    else:
        sx, sw = p.act.int_bits + 1, p.weight.int_bits + 2
    x = words(p.act, (k,), sx)
    w = words(p.weight, (co, k), sw)
    b = words(p.bias, (co,), rng.choice((0, 4, 10)))
    score = rng.randint(p.gate_score.min_raw, p.gate_score.max_raw)
    return x, w, b, score, rng.choice((STORE, GELU, SCORE)) if mode is None else mode


async def _run(ctx, h, dut, rows: list, label: str, **knobs):
    p = ctx.cfg.precision
    items, exp, lasts = [], [], []
    for x, w, b, s, mode in rows:
        items += _row_items(ctx, x, w, b, s, mode)
        lasts.append(len(items) - 1)
        exp.append(_row_expected(p, x, w, b, s, mode, ctx.perturb))
    tr = await h.transfer(items, len(exp), **knobs)
    got = [_decode(ctx, dut, w) for w in tr.outputs]
    return compare(got, exp, label), tr, lasts


reset_idle = reset_idle_test(_setup)


@cocotb.test()
async def full_rate(dut):
    ctx, h = _setup(dut)
    await h.start()
    rng = random.Random(ctx.seed)
    g = torch.Generator().manual_seed(ctx.seed)
    k = ctx.cfg.model.embed_dim
    rows = [_rand_row(ctx, g, rng, k, mode=i % 3) for i in range(max(ctx.n_random // 4, 6))]
    problems, tr, lasts = await _run(ctx, h, dut, rows, "full rate")
    await h.expect_idle(16)
    beats = len(tr.in_cycles)
    ii = (tr.in_cycles[-1] - tr.in_cycles[0]) / (beats - 1)
    lat = [tr.out_cycles[r] - tr.in_cycles[i] for r, i in enumerate(lasts)] if len(tr.out_cycles) == len(lasts) \
        else [0]
    row_beats = -(-k // ctx.cfg.hardware.cu_in)
    hw = ctx.cfg.hardware
    ctx.record(latency=min(lat), latency_max=max(lat), ii=ii, row_beats=row_beats,
               row_cycles=(tr.out_cycles[-1] - tr.out_cycles[0]) / max(len(rows) - 1, 1),
               cu_in=hw.cu_in, cu_out=hw.cu_out, k=k, k_max=tile_k_max(ctx.cfg), macs=hw.cu_in * hw.cu_out)
    check(problems)
    if ii != 1.0 or min(lat) != max(lat):
        raise AssertionError(f"{ii} cycles per beat, latency {min(lat)}..{max(lat)}")


@cocotb.test()
async def edge_rows(dut):
    ctx, h = _setup(dut)
    await h.start()
    p, hw = ctx.cfg.precision, ctx.cfg.hardware
    co, ci = hw.cu_out, hw.cu_in
    a, wt, bt, st = p.act, p.weight, p.bias, p.gate_score
    kmax = tile_k_max(ctx.cfg)
    rng = random.Random(ctx.seed + 10)
    g = torch.Generator().manual_seed(ctx.seed + 10)

    def full(k, xv, wv, bv, s, mode):
        return (torch.full((k,), xv), torch.full((co, k), wv), torch.full((co,), bv), s, mode)

    rows = []
    for mode in (STORE, GELU, SCORE):
        rows += [full(kmax, a.min_raw, wt.min_raw, bt.max_raw, st.max_raw, mode),    # largest positive sum
                 full(kmax, a.min_raw, wt.max_raw, bt.min_raw, st.max_raw, mode),    # most negative sum
                 full(kmax, a.max_raw, wt.max_raw, bt.max_raw, st.min_raw, mode),
                 full(ci, 0, 0, 0, st.max_raw, mode),                                 # zero
                 full(ci, 0, 0, bt.min_raw, st.max_raw, mode),                        # bias only
                 full(ci, 0, 0, bt.max_raw, 1, mode),
                 full(1, a.max_raw, wt.min_raw, 0, st.max_raw, mode),                 # one input, padded
                 full(ci + 3, -1, 1, -1, st.max_raw, mode)]                           # -1 LSB terms
        # per-neuron different rails, a row of the longest length with mixed rails
        x = torch.tensor([rng.choice((a.min_raw, a.max_raw, 0, -1, 1)) for _ in range(kmax)])
        w = torch.tensor([[rng.choice((wt.min_raw, wt.max_raw, 0, -1, 1)) for _ in range(kmax)] for _ in range(co)])
        b = torch.tensor([rng.choice((bt.min_raw, bt.max_raw, 0)) for _ in range(co)])
        rows.append((x, w, b, st.max_raw, mode))
        # results near the rounding cut and the GELU span: tiny values
        for k in (ci, 2 * ci - 1):
            rows.append(_rand_row(ctx, g, rng, k, mode=mode, scale="small"))
    problems, _, _ = await _run(ctx, h, dut, rows, "edge rows", p_gap=0.2, p_stall=0.3)
    await h.expect_idle(16)
    ctx.record(edge_rows=len(rows))
    check(problems)


@cocotb.test()
async def random_backpressure(dut):
    ctx, h = _setup(dut)
    await h.start()
    rng = random.Random(ctx.seed + 20)
    g = torch.Generator().manual_seed(ctx.seed + 20)
    m, ci = ctx.cfg.model, ctx.cfg.hardware.cu_in
    ks = (ci, m.embed_dim, m.expert_hidden, 3 * ci + 1)
    rows = [_rand_row(ctx, g, rng, rng.choice(ks)) for _ in range(max(ctx.n_random, 6))]
    problems, beats, cycles = [], 0, 0
    for i, (part, knobs) in enumerate(backpressure_parts(rows)):
        pr, tr, _ = await _run(ctx, h, dut, part, f"stalls{i} {knobs}", **knobs)
        problems += pr
        beats += len(tr.in_cycles)
        cycles += tr.cycles
    await h.expect_idle(16)
    ctx.record(backpressure_rows=len(rows), backpressure_beats=beats, backpressure_cycles=cycles)
    check(problems)
