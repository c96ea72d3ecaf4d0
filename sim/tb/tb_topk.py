"""cocotb tests of the top-k / expert-queue unit (``edgemoe.sim.units.topk``).

Every output word is compared exactly with ``edgemoe.sim.units.registry.topk_expected``
(golden ``topk`` per token; ``Routing.counts`` / ``Routing.queue`` per image).

Tests:

* ``reset_idle``          -- no output without input;
* ``full_rate``           -- random images, an all-equal image (ties), one
  expert winning every token (one full queue, idle experts), consumer
  always ready: exactness, one logit per cycle within an image (``ii``),
  token latency (token's last logit -> TOKEN word), cycles per image;
* ``edge_images``         -- rails, ties at the rails, ascending / descending
  logits (insertion at every rank), every expert winning in turn, short
  images (1 token, ``in_last`` early), a full image without ``in_last``;
  random gaps and stalls;
* ``random_backpressure`` -- random images of random lengths with gaps,
  stalls and stall bursts;
* ``hold_and_reset``      -- output stalled: input stops, nothing lost; a
  reset in mid-image clears the queues and counts.
"""
from __future__ import annotations

import random

import cocotb
import torch

from edgemoe.sim.tb.context import TbContext
from edgemoe.sim.tb.harness import backpressure_parts, from_word, reset_idle_test
from edgemoe.sim.tb.scoreboard import check, compare
from edgemoe.sim.units.registry import KIND_COUNT, KIND_QUEUE, KIND_TOKEN, topk_expected


def _setup(dut):
    ctx = TbContext.from_env()
    out = {"out_kind": False, "out_token": False, "out_expert": False, "out_count": False,
           "out_experts": False, "out_logits": False, "out_last": False}
    return ctx, ctx.harness(dut, ("in_logit", "in_last"), out)


def _decode(ctx, dut, w: dict) -> tuple:
    k = ctx.cfg.model.top_k
    eb = len(dut.out_experts) // k
    lt = ctx.cfg.precision.gate_logit
    lb = lt.bits
    if w["out_kind"] == KIND_TOKEN:
        ex = tuple((w["out_experts"] >> (j * eb)) & ((1 << eb) - 1) for j in range(k))
        lg = tuple(from_word((w["out_logits"] >> (j * lb)) & ((1 << lb) - 1), lb, lt.signed) for j in range(k))
        return (KIND_TOKEN, w["out_token"], ex, lg)
    if w["out_kind"] == KIND_COUNT:
        return (KIND_COUNT, w["out_expert"], w["out_count"])
    return (KIND_QUEUE, w["out_expert"], w["out_count"], w["out_token"])


def _items(logits: torch.Tensor, flag_last: bool = True) -> list[tuple[int, int]]:
    """Input words of one image [T, E]: expert 0 first; ``in_last`` on the image's final word."""
    t, e = logits.shape
    return [(int(logits[n, x]), int(flag_last and n == t - 1 and x == e - 1)) for n in range(t) for x in range(e)]


async def _run(ctx, h, dut, images: list[torch.Tensor], label: str, flags=None, **knobs):
    """Stream ``images`` (each [T, E]); returns (problems, transfer)."""
    flags = flags or [True] * len(images)
    items, exp = [], []
    for img, fl in zip(images, flags):
        items += _items(img, fl)
        exp += topk_expected(img.unsqueeze(0), ctx.cfg.model.top_k, perturb=ctx.perturb)
    tr = await h.transfer(items, len(exp), **knobs)
    got = [_decode(ctx, dut, w) for w in tr.outputs]
    problems = compare(got, exp, label)
    lasts = [i for i, w in enumerate(tr.outputs) if w["out_last"]]
    want = [i for i in range(len(exp)) if i + 1 == len(exp) or
            (exp[i][0] != KIND_TOKEN and exp[i + 1][0] == KIND_TOKEN)]
    if lasts != want:
        problems.append(f"{label}: out_last on words {lasts[:8]}, expected {want[:8]}")
    return problems, tr, items


def _gen(ctx, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


reset_idle = reset_idle_test(_setup)


@cocotb.test()
async def full_rate(dut):
    ctx, h = _setup(dut)
    await h.start()
    m, lt = ctx.cfg.model, ctx.cfg.precision.gate_logit
    n, e, k = m.num_tokens, m.num_experts, m.top_k
    g = _gen(ctx, ctx.seed)
    images = [torch.randint(lt.min_raw, lt.max_raw + 1, (n, e), generator=g),
              torch.full((n, e), 1 << lt.frac_bits),                                  # all equal: ties
              torch.randint(-4, 4, (n, e), generator=g)]                              # many ties
    winner = torch.randint(lt.min_raw, 0, (n, e), generator=g)
    winner[:, e // 2] = lt.max_raw                                                     # one expert takes all
    images.append(winner)
    problems, tr, items = await _run(ctx, h, dut, images, "full rate")
    await h.expect_idle(8)
    # one logit per cycle within an image; token latency; cycles per image
    per_img = n * e
    starts = [tr.in_cycles[i * per_img] for i in range(len(images))]
    ends = [c for c, w in zip(tr.out_cycles, tr.outputs) if w["out_last"]]
    in_ii = max((tr.in_cycles[(i + 1) * per_img - 1] - tr.in_cycles[i * per_img]) / (per_img - 1)
                for i in range(len(images)))
    tok_in = [c for c, it in zip(tr.in_cycles, range(len(items))) if it % e == e - 1]
    tok_out = [c for c, w in zip(tr.out_cycles, tr.outputs) if w["out_kind"] == KIND_TOKEN]
    lat = [o - i for i, o in zip(tok_in, tok_out)]
    dump = [ends[i] - tr.in_cycles[(i + 1) * per_img - 1] for i in range(len(images))]
    img_ii = [b - a for a, b in zip(starts, starts[1:])]
    ctx.record(latency=min(lat), latency_max=max(lat), ii=in_ii, image_cycles=max(img_ii),
               image_words=per_img, dump_latency=max(dump), dump_words=e + n * k,
               num_experts=e, top_k=k, num_tokens=n)
    check(problems)
    if in_ii != 1.0 or min(lat) != max(lat):
        raise AssertionError(f"within an image: {in_ii} cycles per logit, token latency {min(lat)}..{max(lat)}")


@cocotb.test()
async def edge_images(dut):
    ctx, h = _setup(dut)
    await h.start()
    m, lt = ctx.cfg.model, ctx.cfg.precision.gate_logit
    n, e = m.num_tokens, m.num_experts
    g = _gen(ctx, ctx.seed + 10)
    lo, hi = lt.min_raw, lt.max_raw
    rails = torch.tensor([lo, hi, lo + 1, hi - 1, 0, -1, 1, hi])
    images = [
        rails[torch.randint(0, len(rails), (n, e), generator=g)],          # rails and ties at the rails
        torch.full((n, e), lo), torch.full((n, e), hi),
        torch.arange(e).repeat(n, 1) - e // 2,                              # ascending: each new one is best
        (e - torch.arange(e)).repeat(n, 1),                                 # descending: each new one is worst
    ]
    turn = torch.full((n, e), lo)
    for t in range(n):
        turn[t, t % e] = hi                                                 # every expert wins in turn
    images.append(turn)
    images += [torch.randint(-2, 2, (1, e), generator=g),                   # one-token images
               torch.randint(lo, hi + 1, (1, e), generator=g),
               torch.randint(-3, 3, (max(n // 2, 1), e), generator=g)]      # image ended early by in_last
    flags = [True] * len(images)
    images.append(torch.randint(lo, hi + 1, (n, e), generator=g))           # full image without in_last
    flags.append(False)
    problems, tr, _ = await _run(ctx, h, dut, images, "edge images", flags, p_gap=0.2, p_stall=0.3)
    await h.expect_idle(8)
    ctx.record(edge_images=len(images))
    check(problems)


@cocotb.test()
async def random_backpressure(dut):
    ctx, h = _setup(dut)
    await h.start()
    m, lt = ctx.cfg.model, ctx.cfg.precision.gate_logit
    n, e = m.num_tokens, m.num_experts
    rng = random.Random(ctx.seed + 20)
    g = _gen(ctx, ctx.seed + 20)
    count = max(ctx.n_random // 10, 3)
    images = []
    for _ in range(count):
        t = rng.choice((n, n, rng.randint(1, n)))
        span = rng.choice((lt.max_raw, 1 << lt.frac_bits, 4))
        images.append(torch.randint(max(-span, lt.min_raw), span + 1, (t, e), generator=g))
    parts = backpressure_parts(images)
    problems, words, cycles = [], 0, 0
    for i, (part, knobs) in enumerate(parts):
        pr, tr, items = await _run(ctx, h, dut, part, f"stalls{i} {knobs}", **knobs)
        problems += pr
        words += len(items)
        cycles += tr.cycles
    await h.expect_idle(16)
    ctx.record(backpressure_images=len(images), backpressure_words=words, backpressure_cycles=cycles)
    check(problems)


@cocotb.test()
async def hold_and_reset(dut):
    ctx, h = _setup(dut)
    await h.start()
    m = ctx.cfg.model
    n, e, k = m.num_tokens, m.num_experts, m.top_k
    g = _gen(ctx, ctx.seed + 30)
    img = torch.randint(-50, 50, (n, e), generator=g)
    items = _items(img)
    exp = topk_expected(img.unsqueeze(0), k, perturb=ctx.perturb)
    taken = await h.hold(items, 4 * e + 8)
    # the first TOKEN word waits: the next token's last logit cannot be taken
    if taken != 2 * e - 1:
        raise AssertionError(f"{taken} logits taken with the output stalled, expected {2 * e - 1}")
    tr = await h.transfer(items[taken:], len(exp))
    problems = compare([_decode(ctx, dut, w) for w in tr.outputs], exp, "hold/release")
    await h.expect_idle(8)
    # reset in mid-image (queues partly built): the next image starts from empty queues
    await h.transfer(items[:(n // 2 + 1) * e], (n // 2 + 1))
    await h.reset()
    await h.expect_idle(16)
    img2 = torch.randint(-50, 50, (n, e), generator=g)
    exp2 = topk_expected(img2.unsqueeze(0), k, perturb=ctx.perturb)
    tr2 = await h.transfer(_items(img2), len(exp2))
    problems += compare([_decode(ctx, dut, w) for w in tr2.outputs], exp2, "after a mid-image reset")
    ctx.record(hold_taken=taken)
    check(problems)
