"""Structure of the cycle and resource models (edgemoe/perf/cycles.py, edgemoe/perf/resources.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgemoe.boards import BOARDS
from edgemoe.hls.layout import WeightLayout
from edgemoe.hls.plan import KernelPlan
from edgemoe.hls.writer import context as template_context
from edgemoe.hls.writer import render
from edgemoe.loading import load_config
from edgemoe.perf.cycles import MODES, as_written_findings, estimate
from edgemoe.perf.measured import SimResults, calibration
from edgemoe.perf.primitives import OP_LATENCY, bram36_for, dsp_per_mult
from edgemoe.perf.resources import estimate_resources, yosys_comparison
from edgemoe.perf.routing import Routing, as_routing, routing_from_golden, skewed_routing, uniform_routing
from edgemoe.sim import results
from edgemoe.sim.formats import layernorm_plan

TINY = "m3vit-tiny-cityscapes"
MICRO = "m3vit-micro"
ZCU = "m3vit-tiny-zcu102"


def cfg_of(name=TINY, *sets):
    return load_config(name, list(sets))


def measured(root):
    """What the sim tools wrote under ``root``, read the way the commands read it."""
    return SimResults.read(results, root, layernorm_plan)


def linear_iters(est, kinds=("linear",)):
    return sum(s.loops.get("MAC_ITER", 0.0) for s in est.steps if s.kind in kinds)


def expert_steps(est, field):
    return sum(getattr(s, field) for s in est.steps if s.name.startswith("expert_fc"))


# --- the unit's width -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis,widths", [("cu_in", (16, 32)), ("cu_out", (8, 16))])
def test_doubling_unit_width_halves_linear_iterations(mode, axis, widths):
    """Twice the unit's width along either axis: half the linear layers' MAC iterations, fewer cycles.  (CU_OUT
    stays at most CU_IN = 16: wider, the score pass's stores and the epilogue put three writes an iteration on
    a bank of out, and the MAC loop runs at II 2 as written: tests/test_perf_loops.py.)"""
    a = estimate(cfg_of(TINY, f"hardware.{axis}={widths[0]}"), mode=mode)
    b = estimate(cfg_of(TINY, f"hardware.{axis}={widths[1]}"), mode=mode)
    assert linear_iters(b) == pytest.approx(linear_iters(a) / 2, rel=1e-9)
    assert b.linear_cycles() < a.linear_cycles()
    if mode == "onchip":
        assert a.loops.loops["MAC"].ii.ii == b.loops.loops["MAC"].ii.ii == 1


def test_doubling_width_roughly_halves_linear_cycles_in_edgemoe_mode():
    """Edge-MoE's linear layers are one II=1 loop over rows x tiles x k-blocks: time follows the width."""
    a = estimate(cfg_of(TINY, "hardware.cu_in=16"), mode="edgemoe-dram")
    b = estimate(cfg_of(TINY, "hardware.cu_in=32"), mode="edgemoe-dram")
    comp = lambda e: sum(s.cycles_compute for s in e.steps if s.kind == "linear")  # noqa: E731
    assert 0.45 < comp(b) / comp(a) < 0.55
    assert 0.45 < b.linear_cycles() / a.linear_cycles() < 0.65  # exposed weight loads do not shrink


def test_onchip_mac_pipeline_has_no_per_row_overhead():
    """The template's MAC loop runs rows x k-chunks in one pipeline, each row's epilogue (FINISH, unrolled
    into EPI_LANES lanes) beside the next row's MACs: no pipeline depth and no CU_OUT-cycle loop per row, so
    doubling the unit's width about halves the compute (EPI_GROUPS iterations per call remain)."""
    a = estimate(cfg_of(TINY, "hardware.cu_in=16"))
    b = estimate(cfg_of(TINY, "hardware.cu_in=32"))
    fin = lambda e: sum(s.loops.get("FINISH", 0.0) for s in e.steps if s.kind == "linear")  # noqa: E731
    assert fin(a) == fin(b) == 0
    assert a.loops.loops["FINISH"].cycles == b.loops.loops["FINISH"].cycles == 0
    assert a.loops.loops["FINISH"].ii.unrolled_in == "MAC"
    # the dense layers' MAC iterations: half the chunks, the epilogue's tail and the first tile's unpack per call
    # stay (an expert's few rows make its passes as long as the next tile's unpack, at either width)
    dense = lambda e: sum(v[1] for (step, _), v in e.loops.loops["MAC"].by_step.items()  # noqa: E731
                          if step in ("patch_embed", "qkv", "proj", "fc1", "fc2"))
    assert 1.9 < dense(a) / dense(b) < 2
    intended = lambda e: sum(s.cycles_intended for s in e.steps if s.kind == "linear")  # noqa: E731
    assert 0.5 < intended(b) / intended(a) < 0.6
    assert intended(b) / intended(a) < b.linear_cycles() / a.linear_cycles() < 1


# --- MoE routing --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,batch", [("onchip", 1), ("edgemoe-dram", 8)])
def test_top_k_one_vs_two_changes_expert_work(mode, batch):
    k1 = estimate(cfg_of(TINY, "model.top_k=1"), mode=mode, batch=batch)
    k2 = estimate(cfg_of(TINY, "model.top_k=2"), mode=mode, batch=batch)
    assert expert_steps(k1, "macs") == pytest.approx(expert_steps(k2, "macs") / 2, rel=1e-6)
    ratio = expert_steps(k1, "cycles_intended") / expert_steps(k2, "cycles_intended")
    written = expert_steps(k1, "cycles_total") / expert_steps(k2, "cycles_total")
    if mode == "onchip":
        # an expert's weights stream once whatever its tokens, and with the MAC pipeline never draining
        # (no per-row epilogue loop) the loads bind the expert layers: half the tokens saves little
        assert 0.85 < ratio <= 1, ratio
        assert 0.85 < written <= 1, written
    else:
        assert 0.45 < ratio < 0.85, ratio              # compute halves, expert weight loads stay
        assert 0.45 < written < 1, written
    assert expert_steps(k1, "weight_bytes") == pytest.approx(expert_steps(k2, "weight_bytes"), rel=0.01)
    assert k1.ms_per_image < k2.ms_per_image


def test_experts_are_weight_load_bound_in_edgemoe_mode_at_batch_1():
    """~16 tokens per expert: loading an expert takes as long as running it, so top-1 saves little."""
    k1 = estimate(cfg_of(TINY, "model.top_k=1"), mode="edgemoe-dram")
    k2 = estimate(cfg_of(TINY, "model.top_k=2"), mode="edgemoe-dram")
    assert expert_steps(k1, "cycles_total") / expert_steps(k2, "cycles_total") > 0.85
    fc1 = [s for s in k2.steps if s.name == "expert_fc1"]
    assert sum(s.loops["LOAD_LAYER"] for s in fc1) >= 0.9 * sum(s.cycles_compute for s in fc1)


def test_routing_counts_drive_expert_loads():
    cfg = cfg_of(TINY)
    m = cfg.model
    n2 = m.num_tokens * m.top_k
    one = np.zeros(m.num_experts)
    one[:2] = m.num_tokens                             # every token to experts 0 and 1
    spread = np.full(m.num_experts, n2 // m.num_experts)
    spread[: n2 - spread.sum()] += 1
    a = estimate(cfg, [one] * len(m.moe_blocks))
    b = estimate(cfg, [spread] * len(m.moe_blocks))
    assert a.routing.active_experts() == [2.0] * len(m.moe_blocks)
    assert expert_steps(a, "macs") == pytest.approx(expert_steps(b, "macs"))
    assert expert_steps(b, "weight_bytes") == pytest.approx(8 * expert_steps(a, "weight_bytes"), rel=1e-6)
    assert a.ms_per_image < b.ms_per_image
    # zero tokens -> the expert is never loaded
    none = [np.eye(m.num_experts)[0] * n2] * len(m.moe_blocks)
    assert estimate(cfg, none).routing.active_experts()[0] == 1.0


def test_uniform_routing_loads_every_weight_once():
    """With every expert active, the model's weight bytes are the packed weight buffer's (same layout)."""
    cfg = cfg_of(TINY)
    layout = WeightLayout.of(cfg)
    for mode in MODES:
        est = estimate(cfg, mode=mode)
        gates_unused = (len(cfg.model.task_names) - 1) * len(cfg.model.moe_blocks) * \
            cfg.model.num_experts * cfg.model.embed_dim * layout.word_bits / 8
        assert est.weight_bytes_per_image == pytest.approx(layout.nbytes - gates_unused, rel=0.01)


def test_skewed_and_uniform_distributions():
    cfg = cfg_of(TINY)
    m = cfg.model
    for rt in (uniform_routing(cfg), skewed_routing(cfg, 1.0), skewed_routing(cfg, 3.0)):
        for c in rt.counts:
            assert c.sum() == pytest.approx(m.num_tokens * m.top_k)
            assert c.max() <= m.num_tokens + 1e-9
    sk = skewed_routing(cfg, 3.0)
    assert sk.active_experts()[0] < uniform_routing(cfg).active_experts()[0]
    assert estimate(cfg, sk).weight_bytes_per_image < estimate(cfg).weight_bytes_per_image


def test_routing_from_golden_micro():
    cfg = cfg_of(MICRO)
    rt = routing_from_golden(cfg, 2, task=0, seed=0)
    m = cfg.model
    assert not rt.expected and rt.images == 2 and len(rt.counts) == len(m.moe_blocks)
    for c in rt.counts:
        assert c.shape == (2, m.num_experts)
        assert np.all(c.sum(axis=1) == m.num_tokens * m.top_k)
    est = estimate(cfg, rt, batch=2, share_weights=False)
    assert est.routing is rt and est.ms_per_image > 0


def test_as_routing_validates():
    cfg = cfg_of(MICRO)
    with pytest.raises(ValueError, match="MoE blocks"):
        as_routing(cfg, [np.ones(4)] * 5)
    with pytest.raises(ValueError, match="experts"):
        as_routing(cfg, [np.ones(3)] * 2)
    r = as_routing(cfg, {1: [4, 4, 5, 5], 3: [[9, 9, 0, 0], [0, 0, 9, 9]]})
    assert isinstance(r, Routing) and r.counts[1].shape == (2, 4) and not r.expected


# --- batching -----------------------------------------------------------------------------------

def test_batching_shares_weight_traffic_in_edgemoe_mode():
    cfg = cfg_of(TINY)
    b1 = estimate(cfg, batch=1, mode="edgemoe-dram")
    b8 = estimate(cfg, batch=8, mode="edgemoe-dram")
    assert b8.share_weights
    assert b8.weight_bytes_per_image == pytest.approx(b1.weight_bytes_per_image / 8, rel=0.01)
    assert b8.ms_per_image <= b1.ms_per_image * 1.001
    # no sharing: same traffic per image, only the call overhead amortised
    b8n = estimate(cfg, batch=8, mode="edgemoe-dram", share_weights=False)
    assert b8n.weight_bytes_per_image == pytest.approx(b1.weight_bytes_per_image)
    assert b8n.ms_per_image == pytest.approx(b1.ms_per_image, rel=0.01)


@pytest.mark.parametrize("moe_batch", [1, 2, 4])
def test_the_kernel_shares_the_experts_by_groups(moe_batch):
    """On chip both columns follow the kernel: the dense layers' weights once per image, each active expert's once
    per group of hardware.moe_batch images; with uniform routing every expert is active, so the experts' traffic
    per image drops by the group's size, and the headline by what that stream cost beyond the experts' MACs."""
    cfg = cfg_of(ZCU, f"hardware.moe_batch={moe_batch}")
    b1, b8 = estimate(cfg, batch=1), estimate(cfg, batch=8)
    dense = sum(s.weight_bytes for s in b1.steps if not s.name.startswith("expert_"))
    assert expert_steps(b8, "weight_bytes") / 8 == pytest.approx(expert_steps(b1, "weight_bytes") / moe_batch,
                                                                 rel=0.02)
    # (the call's constants once per call: the cls token, the position table, the LayerNorms)
    plan = KernelPlan.from_config(cfg)
    consts = plan.const_beats * plan.words_per_beat * plan.weight_word_bits / 8
    assert sum(s.weight_bytes for s in b8.steps if not s.name.startswith("expert_")) / 8 == pytest.approx(
        dense - consts * 7 / 8)
    assert b8.share_weights == (moe_batch > 1)
    assert any(f"groups of hardware.moe_batch = {moe_batch}" in n for n in b8.notes)
    # as written: the expert layers of a group of 2 or more are bound by their MACs, not the weight stream
    fc1 = [s for s in b8.steps if s.name == "expert_fc1"]
    if moe_batch == 1:
        assert b8.ms_per_image == pytest.approx(b1.ms_per_image, rel=0.01)
        assert all(s.cycles_memory > s.cycles_compute for s in fc1)
    else:
        assert b8.ms_per_image < b1.ms_per_image * 0.9
        assert all(s.cycles_compute > s.cycles_memory for s in fc1)
    loops = b8.loops
    assert loops.loops["GROUPS"].iterations == pytest.approx(-(-8 // moe_batch) / 8)


def test_batching_takes_the_union_of_active_experts():
    cfg = cfg_of(MICRO, "hardware.moe_batch=2")
    e = cfg.model.num_experts
    img_a = [9, 9, 0, 0]
    img_b = [0, 0, 9, 9]
    routing = [[img_a, img_b]] * len(cfg.model.moe_blocks)
    shared = estimate(cfg, routing, batch=2)
    alone = estimate(cfg_of(MICRO), routing, batch=2)
    # disjoint experts: the group saves nothing on the experts
    assert expert_steps(shared, "weight_bytes") == pytest.approx(expert_steps(alone, "weight_bytes"))
    # the same experts, their queues within N_TOKENS (9) rows: each expert's weights once for both images
    half = [[[3, 3, 6, 6], [6, 6, 3, 3]]] * len(cfg.model.moe_blocks)
    h2, h1 = estimate(cfg, half, batch=2), estimate(cfg_of(MICRO), half, batch=2)
    assert expert_steps(h2, "weight_bytes") == pytest.approx(expert_steps(h1, "weight_bytes") / 2)
    # more rows than N_TOKENS: an expert runs in passes of N_TOKENS rows, each streaming its weights (18 rows of
    # experts 0 and 1: two passes each, as many loads as four experts once)
    same = [[img_a, img_a]] * len(cfg.model.moe_blocks)
    s2 = estimate(cfg, same, batch=2)
    assert expert_steps(s2, "weight_bytes") == pytest.approx(expert_steps(shared, "weight_bytes"))
    w = s2.loops.loops["EXPERT_PASS"]
    assert w.iterations * 2 == pytest.approx(len(cfg.model.moe_blocks) * 2 * 2)   # a group: 2 experts x 2 passes
    assert s2.loops.loops["GATHER"].entries * 2 == pytest.approx(len(cfg.model.moe_blocks) * 2 * 2)
    assert e == 4


# --- the reference figures ------------------------------------------------------------------------

def test_edgemoe_reference_configuration_in_published_range():
    cfg = cfg_of(TINY)
    h = cfg.hardware
    assert (h.cu_in, h.cu_out, h.attn_parallel, h.axi_width, h.clock_mhz, cfg.precision.name) == \
        (16, 16, 4, 256, 300.0, "w16a32")
    est = estimate(cfg, mode="edgemoe-dram")
    assert 18.0 <= est.ms_per_image <= 25.0, est.ms_per_image
    assert est.macs_per_image == pytest.approx(0.78e9, rel=0.02)


def test_roofline_matches_design_reference():
    """The reference design: ~1.0 ms compute (16x16-bit, one MAC per DSP) and ~2.4 ms of weights at 15 GB/s."""
    r = estimate(cfg_of(TINY, "precision.profile=w16a16")).roofline
    assert r.dsp_per_mac == 1
    assert r.compute_ms == pytest.approx(1.0, rel=0.1)
    assert r.traffic_ms == pytest.approx(2.4, rel=0.1)
    assert r.ratio >= 1 and r.design_ratio >= 1
    assert estimate(cfg_of(TINY)).roofline.dsp_per_mac == 2  # 32-bit activations x 16-bit weights


def attention_calls_as_written(plan, m) -> tuple[list[tuple[int, int]], int]:
    """A block's attention calls of the compute unit stepped as the kernel runs them, an iteration at a time:
    run_images' SCORES_LOOP (head hd's score pass: sm_first on head 0, sm_ready hd, sm_need 1 for the last of
    more than one head), with one head the call with no rows (sm_ready = sm_need = 1), then AV_LOOP (head hd's
    A*V: sm_ready HEADS, sm_need min(hd + 2, HEADS)). With more than one head each call's last pass also
    unpacks the next call's first tile (PASS_LEAD + its unpack steps + PASS_TAIL iterations at least) and every
    call but the first starts with its MACs (pre: no pass 0); the last A*V's unpacks proj's biases and first tile
    (rows of whole bus words: from DRAM); a pass's iterations otherwise as the plan counts
    them. In compute_tiles' MAC loop the side job steps where sp == 0 (sp counts SM_PACE iterations from the
    call's start) and sm_h < sm_ready, or, in a score pass, sm_h is the pass's own head (sm_ready) and the MACs
    are at tile SM_LEAD_TILES or past it; the loop runs while its own passes last or sm_h < sm_need; its place
    (sm_h, sm_it) carries over from call to call. Returns each call's (MAC iterations, side steps) and the heads
    done."""
    n, heads = m.num_tokens, m.num_heads
    per_head, pace = n * plan.attn_groups, plan.sm_pace
    kinds = [("scores", hd, 1 if hd == heads - 1 and heads > 1 else 0) for hd in range(heads)]
    if heads == 1:
        kinds.append(("none", 1, 1))
    kinds += [("av", heads, min(hd + 2, heads)) for hd in range(heads)]
    calls = []
    for i, (kind, ready, need) in enumerate(kinds):
        pre = heads > 1 and i > 0
        if kind == "none":
            parts = [1]               # no rows: the do-while's one iteration
        else:
            parts = plan.attention_passes(kind, n)[1 if pre else 0:]
            if heads > 1 and i + 1 < len(kinds):
                first = plan.attention_shape(kinds[i + 1][0])[2][0]    # the next call's first tile's unpack steps
                parts[-1] = max(parts[-1], plan.pass_lead + first + plan.pass_tail)
            elif i + 1 == len(kinds) and plan.weight_rows_aligned:
                # the last A*V: proj's biases (a step a bus word) and tile 0 (UNPACK_STEPS a bus word), from DRAM
                proj = plan.linear("blocks.0.proj")
                first = plan.layer_spans(proj)[0][1] + plan.tile_spans(proj)[0][1][1] * plan.unpack_steps
                parts[-1] = max(parts[-1], plan.pass_lead + first + plan.pass_tail)
        # the MAC tile t at each iteration: -1 in pass 0 (not pre), then a tile a pass
        tile_at = [p - (0 if pre else 1) for p, length in enumerate(parts) for _ in range(length)]
        calls.append((kind, tile_at, ready, need))
    sm_h = sm_it = 0
    out = []
    for kind, tile_at, ready, need in calls:
        passes = len(tile_at)
        it = sp = steps = 0
        run = True
        while run:
            t = tile_at[it] if it < passes else tile_at[-1]
            go = sm_h < ready or (kind == "scores" and sm_h == ready and t >= plan.sm_lead_tiles)
            if go and sp == 0:
                steps += 1
                sm_it += 1
                if sm_it == per_head:
                    sm_it, sm_h = 0, sm_h + 1
            sp = 0 if sp + 1 == pace else sp + 1
            it += 1
            run = it < passes or sm_h < need
        out.append((it, steps))
    return out, sm_h


def test_softmax_steps_follow_template_groups():
    """The online softmax (the compute unit's side job) takes N_TOKENS x ATTN_GROUPS steps per head (the
    template's ATTN_GROUPS, writer.context), HEADS per block, in both the intended schedule and the loop model: a
    query's (max, sum) is revisited ATTN_GROUPS steps later, so a step every SM_PACE = ceil(the sum's recurrence
    (read l, l * alpha, + e, cast, store) / ATTN_GROUPS) iterations keeps the MAC loop at II 1 when many lanes
    leave few groups (ATTN_P at most CU_IN: more lanes than sm_s's banks cost the MAC loop its II, the score
    passes storing into sm_s beside the side job's reads).  The side job runs the heads one after the other
    beside every attention call of the block (all the score passes, then per head its A*V), each call lasting
    until the head the next probabilities need is done: the block's attention MAC iterations are those of the
    calls stepped as the kernel runs them.  PROBS runs between the calls, PROB_LANES probabilities a cycle (the
    largest divisor of CU_IN that is at most half of it), (N_TOKENS + PROB_LEAD) x PROB_CHUNKS iterations (the
    1/sums PROB_LEAD rows ahead)."""
    latency = sum(OP_LATENCY[o] for o in ("bram", "mul", "add", "cast", "store"))
    seen = set()
    for sets in ([], ["model.num_heads=1"]):
        cfg0 = cfg_of(TINY, *sets)
        src = " ".join(render(cfg0, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"].split())
        # the calls' side-job bounds and the MAC loop's step and end, as attention_calls_as_written takes them
        for text in ("hd * SCORE_COLS, logits, sm_max, sm_sum, hd == 0, hd, hd == HEADS - 1 && HEADS > 1 ? 1 : 0, "
                     "p_tail, hd > 0, nt);",
                     "const NextTile nt = hd + 1 < HEADS ? next_tile(W_KEYS, DIM + (hd + 1) * HEAD_DIM, HEAD_DIM, "
                     "SCORE_COLS) : HEADS > 1 ? next_tile(W_VALUES, 2 * DIM, K_PAD, HEAD_DIM) : NO_NEXT;",
                     "if (HEADS == 1) {", "2 * DIM, 0, logits, sm_max, sm_sum, false, 1, 1, p_tail, false, NO_NEXT);",
                     "logits, sm_max, sm_sum, false, HEADS, hd + 2 < HEADS ? hd + 2 : HEADS, p_tail, HEADS > 1, nt);",
                     "const NextTile nt = hd + 1 < HEADS ? next_tile(W_VALUES, 2 * DIM + (hd + 1) * HEAD_DIM, K_PAD, "
                     "HEAD_DIM) : next_layer(OFF_PROJ_W[b], OFF_PROJ_B[b], DIM, DIM);",
                     "int t = pre ? 0 : -1, mrows = pre ? rows : 0;",
                     "const bool sm_go = sm_h < sm_ready || (mode == CU_SCORES && sm_h == sm_ready && "
                     "t >= SM_LEAD_TILES);", "if (sm_go && sp == 0) {", "if (++sm_it == SM_ITERS) {",
                     "sp = sp + 1 == SM_PACE ? 0 : sp + 1;",
                     "run = tile || r < mrows || po < CU_OUT || sm_h < sm_need || (pf && !unpacked);"):
            assert text in src, text
        for p in (1, 2, 4, 8, 16, 32):
            cfg = cfg_of(TINY, *sets, f"hardware.attn_parallel={p}")
            m = cfg.model
            plan = template_context(cfg)["plan"]
            groups = plan.attn_groups
            assert groups == math.ceil(m.num_tokens / p)
            pace = max(1, math.ceil(latency / groups))
            assert plan.sm_pace == pace
            seen.add(pace > 1)
            est = estimate(cfg)
            heads = m.depth * m.num_heads
            steps = m.num_tokens * groups
            loops = est.loops.loops
            # II 1 while the side job's ATTN_P reads of sm_s fit its CU_IN banks; past that they and the score
            # pass's stores (the same call now) share a bank's ports (tests/test_perf_loops.py)
            mac = loops["MAC"].ii
            if p <= cfg.hardware.cu_in:
                assert mac.ii == 1, mac.detail
            else:
                assert mac.ii > 1 and mac.binding == "bank ports" and "sm_s" in mac.detail["bank ports"]
            assert loops["SM_LANES"].iterations == pytest.approx(heads * steps * p)
            calls, done = attention_calls_as_written(plan, m)
            assert done == m.num_heads and sum(st for _, st in calls) == m.num_heads * steps
            assert [(c.iterations, c.side_steps) for c in plan.attention_calls()] == calls
            attn_iters = loops["MAC"].by_step[("attn", 0)][1]
            assert attn_iters == sum(it for it, _ in calls)
            ci, pl = cfg.hardware.cu_in, plan.prob_lanes
            assert ci % pl == 0 and 2 * pl <= ci and not [d for d in range(pl + 1, ci // 2 + 1) if ci % d == 0]
            assert (plan.prob_chunks - 1) * pl < m.num_tokens - plan.av_fold <= plan.prob_chunks * pl
            probs = (m.num_tokens + plan.prob_lead) * plan.prob_chunks
            assert probs < sum(s.loops["PROBS"] for s in est.steps if s.name == "attn") / heads < probs + 30
            assert loops["PROBS"].iterations == heads * probs and loops["PROBS"].ii.ii == 1
    assert seen == {False, True}       # 129 tokens: a step an iteration up to 16 lanes (9 groups), two at 32 (5)


def test_tiny_as_written_on_zcu102_hides_the_weight_loads():
    """The tiny preset on the ZCU102 as written: the compute unit's loader streams 256-bit bus words (16
    weights each) at the HP port's rate, one tile ahead of the compute in a DATAFLOW region.  The compute
    process runs rows x k-chunks in one II=1 pipeline with the epilogue beside the MACs (before: the MAC
    pipeline's depth and a CU_OUT-cycle FINISH loop per row, ~35 ms of ~71 ms), and attention keeps its
    scores on chip (before: A*V at II 4 and the key stream at II 12): q . k and A*V on the compute unit, the
    softmax's pipelines at II 1 beside them; the LayerNorm is one skewed pipeline.  What remains is the MACs,
    and the loads where few tokens go through an expert."""
    est = estimate(cfg_of(TINY))
    assert 12.0 <= est.ms_per_image <= 30.0, est.ms_per_image
    assert est.ms_per_image >= est.intended_ms_per_image
    rows = est.loops.rows()
    le = est.loops.loops
    assert le["LOAD_W"].ii.binding == "m_axi" and "port bandwidth" in le["LOAD_W"].ii.detail["m_axi"]
    raw = le["LOAD_W"].raw_cycles(le["LOAD_W"].entries, le["LOAD_W"].iterations, 0)
    assert 0 < le["LOAD_W"].hidden < raw                 # behind the dense layers' compute, not the experts'
    assert le["FINISH"].cycles == 0 and le["MAC"].ii.ii == 1
    assert le["PROBS"].ii.ii == 1 and not {"SM_FINAL", "SM_STEPS"} & set(le)
    assert rows[0]["label"] == "MAC"
    assert {r["label"] for r in rows[:3]} >= {"MAC", "LOAD_W"}


def test_as_written_findings_group_the_loops_by_binding_constraint():
    cfg = cfg_of(MICRO)
    rows = as_written_findings(cfg)
    est = estimate(cfg)
    assert rows[0]["ms_per_image"] == pytest.approx(est.intended_ms_per_image)
    assert rows[-1]["ms_per_image"] == pytest.approx(est.ms_per_image) and rows[-1]["factor"] >= 1
    groups = {r["penalty"] for r in rows[1:-1]}
    assert {r["binding"] for r in est.loops.rows() if r["cycles"] > 0} == groups
    assert all(r["factor"] >= -1e-9 for r in rows[1:-1])


# --- calibration ----------------------------------------------------------------------------------

def test_calibration_from_rtl_measurements(tmp_path):
    cfg = cfg_of(MICRO)
    d = tmp_path / cfg.digest()[:12]
    d.mkdir()
    (d / "config.yaml").write_text(cfg.to_yaml())
    (d / "perf.json").write_text(json.dumps({"exp": {"icarus": {"latency": 40, "ii": 1.0}},
                                             "recip": {"verilator": {"latency": 9, "latency_max": 11, "ii": 1.0}}}))
    cal = calibration(cfg, measured(tmp_path))
    assert cal["exp"]["latency"] == 40 and cal["recip"]["latency"] == 11
    assert "this config" in cal["exp"]["how"]
    slow = estimate(cfg, measured=measured(tmp_path))
    assert slow.calibrated and slow.latency["exp"] == 40
    empty = tmp_path / "empty"
    empty.mkdir()
    plain = estimate(cfg, measured=measured(empty))
    assert not plain.calibrated and any("uncalibrated" in n for n in plain.notes)
    assert slow.step_cycles("attn") > plain.step_cycles("attn")


def test_calibration_exp_ii_limits_attention(tmp_path):
    cfg = cfg_of(MICRO)
    d = tmp_path / cfg.digest()[:12]
    d.mkdir()
    (d / "perf.json").write_text(json.dumps({"exp": {"icarus": {"latency": 7, "ii": 8.0}}}))
    slow = estimate(cfg, measured=measured(tmp_path))
    fast = estimate(cfg, calibrate=False)
    assert slow.step_cycles("attn", field_="cycles_intended") > 1.5 * fast.step_cycles("attn", field_="cycles_intended")
    # exps in the loop: the unit's II bounds it; the MAC loop's side job (the online softmax) takes exps too, so
    # an exp unit that is not fully pipelined would hold every layer's MACs to its II
    for lab in ("MAC", "PROBS"):
        ii = slow.loops.loops[lab].ii
        assert ii.ii == 8 and ii.binding == "unit II" and ii.constraints["unit II"] == 8, lab
        assert fast.loops.loops[lab].ii.ii < 8
    assert slow.step_cycles("attn") > fast.step_cycles("attn")


# --- every preset, board and mode ------------------------------------------------------------

@pytest.mark.parametrize("preset", [TINY, MICRO])
@pytest.mark.parametrize("board", list(BOARDS))
def test_model_runs_for_every_preset_board_and_mode(preset, board):
    cfg = cfg_of(preset, f"hardware.board={board}")
    for mode in MODES:
        est = estimate(cfg, mode=mode)
        assert est.ms_per_image > 0 and est.roofline.ratio >= 1
        overhead = 0 if mode == "onchip" else 200          # as written, the call overhead is a step's
        assert est.total_cycles == pytest.approx(sum(s.cycles_total for s in est.steps) + overhead)
        assert est.intended_cycles == pytest.approx(sum(s.cycles_intended for s in est.steps) + 200)
        assert est.ms_per_image >= est.intended_ms_per_image * 0.999 or mode != "onchip"
        text = est.table()
        assert "ms/image" in text and "roofline" in text
        res = estimate_resources(cfg, mode)
        assert res.totals["dsp"] > 0 and res.limits["dsp"] == BOARDS[board].dsp
        assert "utilisation" in res.table()


def test_per_step_totals_are_consistent():
    est = estimate(cfg_of(TINY))
    for s in est.steps:
        assert s.cycles_total >= 0 and s.cycles_compute >= 0 and s.cycles_memory >= 0
        # a step takes at least its compute (overlap can hide memory, not compute)
        assert s.cycles_total >= s.cycles_compute * 0.999 or s.kind == "moe"
    blocks = est.per_block()
    assert sum(blocks.values()) == pytest.approx(est.cycles_per_image)
    assert set(blocks) == set(range(-1, est.cfg.model.depth + 1))


# --- resources --------------------------------------------------------------------------------------

def test_dsp_per_multiplier():
    assert dsp_per_mult(16, 16) == 1
    assert dsp_per_mult(27, 18) == 1
    assert dsp_per_mult(32, 16) == 2
    assert dsp_per_mult(24, 24) == 2
    assert dsp_per_mult(8, 16) == 1
    assert dsp_per_mult(18, 18, a_signed=False) == 1     # 19-bit on the 27-bit port
    assert dsp_per_mult(18, 18, a_signed=False, b_signed=False) == 2
    assert dsp_per_mult(48, 48) == 6


def test_bram_shapes():
    assert bram36_for(1024, 36) == 1
    assert bram36_for(512, 36) == 0.5
    assert bram36_for(129 * 48, 32) == 6.5          # 13 BRAM18 of 512 x 36
    assert bram36_for(4096, 9) == 1


def test_compute_unit_dsps_follow_width_and_types():
    """The compute unit's DSPs, less its epilogue's lanes: its CU_IN x CU_OUT MACs and A*V's CU_OUT x AV_FOLD
    products of the folded keys (FOLD_J), each as wide as a MAC."""
    c16, c32 = cfg_of(TINY), cfg_of(TINY, "hardware.cu_in=32")
    ca = cfg_of(TINY, "precision.profile=w16a16")
    r16, r32, ra = estimate_resources(c16), estimate_resources(c32), estimate_resources(ca)
    cu = lambda r: next(u for u in r.units if u.name == "compute unit").dsp  # noqa: E731
    # the MACs and the folded keys' products, besides the epilogue's lanes (one y * score product and one GELU
    # interpolation each)
    mac = lambda r: cu(r) - sum(it.dsp for it in r.items if it.where == "compute_tiles/FINISH")  # noqa: E731
    fold = lambda r: sum(it.dsp for it in r.items if it.what.startswith("FOLD_J"))  # noqa: E731
    for r, c, per in ((r16, c16, 2), (r32, c32, 2), (ra, ca, 1)):   # 32x16-bit: 2 DSPs each; 16x16-bit: one
        ci, co, f = c.hardware.cu_in, c.hardware.cu_out, KernelPlan.from_config(c).av_fold
        assert f == 1                                    # 129 tokens: one key past the last whole chunk
        assert mac(r) == (ci + f) * co * per and fold(r) == f * co * per
    assert ra.totals["bram36"] < r16.totals["bram36"]    # 16-bit row buffers


def test_onchip_batch_sharing_scales_buffers_dram_mode_does_not():
    cfg = cfg_of(TINY)
    on1 = estimate_resources(cfg, "onchip", 1)
    on8 = estimate_resources(cfg, "onchip", 8, share_weights=True)
    dr1, dr8 = estimate_resources(cfg, "edgemoe-dram", 1), estimate_resources(cfg, "edgemoe-dram", 8)
    assert estimate_resources(cfg, "onchip", 8).totals == on1.totals      # as written: one image's buffers
    assert on8.totals["bram36"] > 5 * on1.totals["bram36"]
    # batch 8 runs out of block RAM; batch 1's buffers fit (the tiny kernel as written is bound by DSP/LUT)
    assert "bram36" in on8.violations() and "bram36" not in on1.violations()
    assert dr8.totals == dr1.totals


def test_uram_used_on_alveo_only():
    z = estimate_resources(cfg_of(TINY, "hardware.board=zcu102"), "onchip", 8)
    u = estimate_resources(cfg_of(TINY, "hardware.board=u280"), "onchip", 8)
    assert z.totals["uram"] == 0 and u.totals["uram"] > 0
    assert u.totals["bram36"] < z.totals["bram36"]
    assert math.isfinite(u.utilisation["uram"])


def test_yosys_figures_side_by_side(tmp_path):
    """The model reads the sim tools' own files: resources.json rows, then per-unit synth.json."""
    cfg = cfg_of(MICRO)
    rows, text = yosys_comparison(cfg, measured(tmp_path))
    assert rows == [] and "no yosys figures" in text and cfg.digest()[:12] in text
    d = tmp_path / cfg.digest()[:12]
    (d / "recip" / "rtl").mkdir(parents=True)
    (d / "resources.json").write_text(json.dumps([
        {"unit": "exp", "dsp": 3, "lut": 420, "ff": 310, "bram": 0.0},
        {"unit": "softmax", "dsp": 11, "lut": 1800, "ff": 1000, "bram": 0.0},
        {"unit": "gelu_naive", "dsp": 0, "lut": 190, "ff": 72, "bram": 32.0}]))
    (d / "recip" / "rtl" / "synth.json").write_text(json.dumps({"key": "k", "resources": {"dsp": 1, "lut": 500,
                                                                                         "ff": 200, "bram": 0.0}}))
    # another config's figures are not this config's
    other = tmp_path / cfg_of(MICRO, "precision.profile=w16a16").digest()[:12]
    other.mkdir()
    (other / "resources.json").write_text(json.dumps([{"unit": "rsqrt", "dsp": 9, "lut": 9, "ff": 9, "bram": 0}]))
    rows, text = yosys_comparison(cfg, measured(tmp_path))
    by = {r["unit"]: r for r in rows}
    assert set(by) == {"exp", "softmax", "gelu_naive", "recip"}
    assert by["exp"]["yosys"]["dsp"] == 3 and by["exp"]["model"]["dsp"] >= 1
    assert by["exp"]["ratio"]["lut"] == pytest.approx(420 / by["exp"]["model"]["lut"])
    assert by["recip"]["yosys"]["lut"] == 500 and by["recip"]["yosys"]["source"].endswith("synth.json")
    assert by["softmax"]["model"]["dsp"] > by["exp"]["model"]["dsp"]   # two exp datapaths + recip + l*alpha
    assert by["gelu_naive"]["model"] is None and by["gelu_naive"]["yosys"]["bram36"] == 32.0
    assert "exp" in text and "420" in text and "x" in text


def test_rtl_unit_models_follow_the_hardware_parameters():
    from edgemoe.perf.resources import rtl_unit_models

    small_cfg = cfg_of(MICRO, "hardware.cu_in=4", "hardware.cu_out=4")
    big_cfg = cfg_of(MICRO, "hardware.cu_in=8", "hardware.cu_out=8")
    small = rtl_unit_models(small_cfg, layernorm_plan=layernorm_plan(small_cfg))
    big = rtl_unit_models(big_cfg, layernorm_plan=layernorm_plan(big_cfg))
    assert big["compute_tile"].dsp > 3 * small["compute_tile"].dsp
    assert set(small) >= {"exp", "recip", "rsqrt", "gelu", "softmax", "compute_tile", "layernorm", "topk",
                          "attn_schedule"}


def test_zcu102_preset_is_faster_than_the_reference_and_fits():
    """m3vit-tiny-zcu102 holds what `edgemoe explore --board zcu102` named: same model, faster as written, fits."""
    ref, fast = load_config("m3vit-tiny-cityscapes"), load_config("m3vit-tiny-zcu102")
    assert fast.model == ref.model
    assert estimate(fast).ms_per_image < 0.8 * estimate(ref).ms_per_image
    assert estimate_resources(fast).fits()


def test_zcu102_preset_meets_the_targets_as_written():
    """The fast preset's as-written headline (the model, uncalibrated as in any fresh checkout) is at most 4 ms
    an image at batch 1 and 2 ms at batch 8, with every resource at or under the 80% cap at batch 8."""
    fast = load_config("m3vit-tiny-zcu102")
    b1, b8 = estimate(fast), estimate(fast, batch=8)
    assert b1.loops is not None and b1.ms_per_image == pytest.approx(b1.loops.ms_per_image)
    assert b1.ms_per_image <= 4.0 and b8.ms_per_image <= 2.0, (b1.ms_per_image, b8.ms_per_image)
    assert estimate_resources(fast, "onchip", 8).fits(0.8)
