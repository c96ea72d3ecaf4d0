"""The loop-level model of the kernel as written (edgemoe/perf/loops.py) and the headline it gives."""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

from edgemoe.boards import BOARDS
from edgemoe.hls.plan import AV_FOLD_MAX, PROB_HANDOFF, SM_LEAD_GAP, SM_RECURRENCE, KernelPlan
from edgemoe.hls.writer import render
from edgemoe.loading import load_config
from edgemoe.perf.cycles import as_written_findings, estimate, format_loops
from edgemoe.perf.loops import (BANK_PORTS, MAXI_OUTSTANDING, RECIP_HANDOFF_OPS, SM_SUM_OPS, Axi, LoopSpec, Memory,
                                Mults, Port, Recurrence, analyse, dataflow_overlap, kernel_constants, kernel_loops,
                                loop_estimate, memory_of, source_loops)
from edgemoe.perf.primitives import OP_LATENCY

TINY = "m3vit-tiny-cityscapes"
ZCU = "m3vit-tiny-zcu102"
MICRO = "m3vit-micro"
#: m3vit-micro with 5 x 40-word tiles that start inside a bus word (tests/test_hls.py's unaligned configs)
#: the ZCU102 preset on one 256-bit weight port and a 32x32 unit (what the lane and unpack tests start from)
ZCU_ONE_PORT = ["hardware.cu_in=32", "hardware.cu_out=32", "hardware.axi_width=256", "hardware.weight_lanes=1"]
UNALIGNED = ["model.embed_dim=40", "model.num_heads=2", "model.expert_hidden=80", "hardware.cu_in=4",
             "hardware.cu_out=5"]
MEM = Memory(latency=60.0, port_bpc=16.0, ddr_bpc=50.0, word_bits={"weights": 16, "activations": 32, "image": 8},
             bundle_of={"weights": "gmem1", "activations": "gmem2", "image": "gmem0"})


def mac_out_ii(cfg, plan) -> int:
    """The II the row buffers' bank ports allow the compute unit's MAC loop: in one iteration the epilogue writes
    EPI_LANES consecutive columns of ``out``, and ``sm_s`` (the scores) takes CU_SCORES's CU_OUT stores (a row's
    scores, in its last MAC iteration) and the side job's ATTN_P reads, each run of consecutive columns spread
    over the CU_IN cyclic banks, two ports a bank."""
    ci = cfg.hardware.cu_in
    out = -(-plan.epilogue_lanes // ci)
    scores = -(-cfg.hardware.cu_out // ci) + -(-cfg.hardware.attn_parallel // ci)
    return math.ceil(max(out, scores) / BANK_PORTS)


def ii_of(**kw) -> object:
    spec = LoopSpec("L", "f", None, kw.pop("pragma", "PIPELINE II=1"), "1", **kw)
    return analyse(spec, {"L": spec}, MEM, OP_LATENCY, 2520)


# --- the constraints, one at a time ----------------------------------------------------------------

def test_bank_ports_two_accesses_per_bank_per_cycle():
    assert ii_of(ports=(Port("a", reads=2),)).ii == 1
    r = ii_of(ports=(Port("a", reads=4),))
    assert (r.ii, r.binding) == (2, "bank ports") and "a: 4 accesses on 1 bank" in r.detail["bank ports"]
    assert ii_of(ports=(Port("a", reads=64, writes=64),)).ii == 64          # an unpartitioned accumulator
    assert ii_of(ports=(Port("a", reads=16, spread=16),)).ii == 1           # cyclic 16: one read per bank
    assert ii_of(ports=(Port("a", reads=80, spread=16),)).ii == math.ceil(5 / BANK_PORTS)
    assert ii_of(ports=(Port("a", reads=3), Port("b", reads=9))).constraints["bank ports"] == 5


def test_maxi_one_transaction_per_cycle_and_latency_without_burst():
    burst = ii_of(axi=(Axi("weights", reads=1, burst=True),))
    assert burst.ii == 1 and burst.constraints["m_axi"] == 1                # one 16-bit beat per cycle
    assert burst.depth >= MEM.latency                                        # the first beat's latency, per entry
    two = ii_of(axi=(Axi("weights", reads=1, burst=True), Axi("weights", reads=1, burst=True)))
    assert two.ii == 2 and two.binding == "m_axi"                            # one read per cycle per bundle
    single = ii_of(axi=(Axi("weights", reads=1, why="conditional"),))
    assert single.ii == pytest.approx(MEM.latency / MAXI_OUTSTANDING)        # Little's law
    assert "latency / outstanding" in single.detail["m_axi"] and "conditional" in single.detail["m_axi"]
    # one read and one write per cycle: a read and a write on one bundle fit one cycle
    assert ii_of(axi=(Axi("activations", reads=1, burst=True), Axi("activations", writes=1, burst=True))).ii == 1
    # two bundles are two ports
    assert ii_of(axi=(Axi("weights", reads=1, burst=True), Axi("image", reads=1, burst=True))).ii == 1
    # port bandwidth: 32-bit words on a 2-byte-per-cycle port
    narrow = Memory(60.0, 2.0, 50.0, MEM.word_bits, MEM.bundle_of)
    spec = LoopSpec("L", "f", None, "PIPELINE II=1", "1", axi=(Axi("activations", writes=1, burst=True),))
    assert analyse(spec, {"L": spec}, narrow, OP_LATENCY, 2520).ii == 2


def test_recurrence_and_dsps():
    r = ii_of(recurrences=(Recurrence("l = l * alpha + e", ("mul_wide", "add", "cast")),))
    assert r.ii == OP_LATENCY["mul_wide"] + OP_LATENCY["add"] + OP_LATENCY["cast"] and r.binding == "recurrence"
    assert ii_of(recurrences=(Recurrence("acc += x", ("add",)),)).binding == "pragma II met"
    d = ii_of(mults=(Mults(3000, 16, 16),))                                  # 3000 DSPs on a 2520-DSP board
    assert (d.ii, d.binding) == (2, "DSPs")
    assert ii_of(mults=(Mults(1000, 32, 16),)).constraints["DSPs"] == 1


def test_sequential_and_unrolled_loops():
    seq = ii_of(pragma="-", ops=("bram", "add"))
    assert seq.ii == OP_LATENCY["bram"] + OP_LATENCY["add"] + OP_LATENCY["loop"]
    assert seq.binding.startswith("sequential")
    assert ii_of(pragma="-").ii == 2                                         # one cycle of body, one of exit test
    rt = ii_of(pragma="-", ops=("store",), axi=(Axi("weights", reads=1),))    # a DRAM round trip per iteration
    assert rt.ii == 1 + MEM.latency + 2 * OP_LATENCY["loop"] and rt.maxi == MEM.latency + OP_LATENCY["loop"]
    outer = LoopSpec("P", "f", None, "PIPELINE II=1", "4")
    inner = LoopSpec("I", "f", "P", "UNROLL factor=4", "16")
    innermost = LoopSpec("J", "f", "I", "-", "2")
    specs = {"P": outer, "I": inner, "J": innermost}
    for s in (inner, innermost):
        r = analyse(s, specs, MEM, OP_LATENCY, 2520)
        assert r.ii == 0 and r.unrolled_in == "P"


# --- the model and the kernel cannot drift ------------------------------------------------------------

@pytest.mark.parametrize("name,sets", [(TINY, []), (MICRO, []),
                                       (MICRO, ["hardware.cu_in=4", "hardware.attn_parallel=1"]),
                                       (TINY, ["hardware.board=u50", "precision.profile=w8a16"]),
                                       # rows not whole bus words of the activations, fewer pixels than a bus word
                                       (MICRO, UNALIGNED + ["precision.profile=w8a16", "hardware.axi_width=1024"])])
def test_model_loops_are_the_kernels_loops(name, sets):
    """Every labelled loop of the generated source is in the model with its function and parent, and no other."""
    cfg = load_config(name, sets)
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    found = source_loops(src)
    assert len(found) == len({f[0] for f in found}), "a label twice in the kernel"
    model = {(s.label, s.function, s.parent) for s in kernel_loops(cfg, KernelPlan.from_config(cfg))}
    assert set(found) == model, (sorted(set(found) - model), sorted(model - set(found)))
    # and the pragma the model reads is the one under each label
    lines = src.splitlines()
    for s in kernel_loops(cfg, KernelPlan.from_config(cfg)):
        i = next(n for n, line in enumerate(lines) if line.lstrip().startswith(f"{s.label}:"))
        below = []
        for line in lines[i + 1:i + 4]:
            if not line.startswith("#pragma HLS"):
                break
            below.append(line)
        pipeline = [p for p in below if "PIPELINE" in p]
        unroll = [p for p in below if "UNROLL" in p]
        if s.pipelined:
            assert pipeline and (f"II={s.target_ii}" in pipeline[0] or "II=" not in pipeline[0]), s.label
        elif s.pragma.startswith("UNROLL"):
            assert unroll and unroll[0].split("HLS ")[1].strip() == s.pragma, s.label
        else:
            assert not pipeline and not unroll, s.label


def test_source_parser_on_a_small_example():
    src = """static void f(int n) {
    A: for (int i = 0; i < n; i++) {
        B: for (int j = 0; j < 4; j++) x += 1;
        C: for (int j = 0; j < 4; j++)
            D: for (int k = 0; k < 2; k++) y += 1;
    }
    if (n) {
        E: for (int i = 0; i < n; i++) z += 1;
    }
}
void top(int a,
         int b) {
    F: for (int i = 0; i < a; i++) f(i);
}"""
    assert source_loops(src) == [("A", "f", None), ("B", "f", "A"), ("C", "f", "A"), ("D", "f", "C"),
                                 ("E", "f", None), ("F", "top", None)]


# --- what the loops add up to -------------------------------------------------------------------------------

def test_totals_are_sums_of_loops():
    cfg = load_config(TINY)
    le = loop_estimate(cfg, None)
    rows = le.rows()
    assert le.cycles_per_image == pytest.approx(sum(r["cycles"] for r in rows))
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert [r["cycles"] for r in rows] == sorted((r["cycles"] for r in rows), reverse=True)
    assert sum(le.by_step().values()) == pytest.approx(le.cycles_per_image)
    est = estimate(cfg)
    assert est.cycles_per_image == pytest.approx(le.cycles_per_image)
    assert sum(s.cycles_total for s in est.steps) == pytest.approx(est.total_cycles)
    # a pipelined loop: entries x (trip x II + depth), less what runs beside the loader
    mac = le.loops["MAC"]
    assert mac.cycles + mac.hidden == pytest.approx(mac.iterations * mac.ii.ii + mac.entries * mac.ii.depth)


def test_call_counts_follow_the_model_structure():
    """compute_unit: patch embed + qkv, proj per block + fc1, fc2 per dense block + gate and 2 per active expert
    + per head the attention's score pass and its A*V pass (the attention's weights on chip: nothing loaded; the
    online softmax beside them, no call of its own with more than one head); a softmax (the probabilities) per
    head."""
    cfg = load_config(MICRO)
    m = cfg.model
    counts = np.zeros(m.num_experts)
    counts[:3] = [m.num_tokens, m.num_tokens - 2, 2]          # three active experts, exact counts
    le = loop_estimate(cfg, [counts] * len(m.moe_blocks))
    dense = m.depth - len(m.moe_blocks)
    heads = m.depth * m.num_heads
    f = le.functions
    assert m.num_heads > 1
    attn = 2 * heads
    assert f["compute_unit"].calls == 1 + 2 * m.depth + 2 * dense + len(m.moe_blocks) * (1 + 2 * 3) + attn
    assert sum(c for (step, _), c in f["compute_unit"].by_step.items() if step == "attn") == attn
    assert le.loops["LOAD_W"].entries == f["compute_unit"].calls - attn      # the attention streams nothing
    assert f["layernorm"].calls == 2 * m.depth and f["softmax"].calls == heads and "attention" not in f
    for lab in ("SCORES_LOOP", "AV_LOOP"):
        assert le.loops[lab].entries == m.depth and le.loops[lab].iterations == heads, lab
    assert "HEADS_LOOP" not in le.loops
    assert "residual_add" not in f and f["write_rows"].calls == 1      # the residual adds are in proj / fc2 / MoE
    # the routing: one pipeline per MoE block, no function of its own; the gather: the queued rows' chunks
    plan = KernelPlan.from_config(cfg)
    assert "gate_token" not in f and "route_tokens" not in f
    assert le.loops["GATE"].entries == len(m.moe_blocks)
    assert le.loops["GATE"].iterations == len(m.moe_blocks) * plan.gate_steps
    assert le.loops["GATHER"].entries == len(m.moe_blocks) * 3
    assert le.loops["GATHER"].iterations == (len(m.moe_blocks) * m.num_tokens * m.top_k
                                             * m.embed_dim // plan.elementwise_lanes)
    # the online softmax: the compute unit's side job, its ATTN_P lanes a step, N_TOKENS x ATTN_GROUPS steps a head
    assert "SM_STEPS" not in le.loops and le.loops["SM_LANES"].ii.unrolled_in == "MAC"
    assert le.loops["SM_LANES"].iterations == pytest.approx(
        heads * m.num_tokens * plan.attn_groups * cfg.hardware.attn_parallel)
    # tap-only loops never run in an inference call
    assert all(le.loops[t].iterations == 0 for t in ("PIX", "TAP_GS", "TAP_TK", "TAP_EC", "TAP_SM"))
    # batch: the same loops per image, the call overhead and its constants' burst shared
    b4 = loop_estimate(cfg, [counts] * len(m.moe_blocks), batch=4)
    assert b4.loops["MAC"].iterations == le.loops["MAC"].iterations
    assert b4.loops["CONSTS"].entries == 1 / 4 and le.loops["CONSTS"].iterations == plan.const_beats
    assert b4.cycles_per_image == pytest.approx(le.cycles_per_image - (200 + le.loops["CONSTS"].cycles) * 3 / 4)


@pytest.mark.parametrize("name,sets", [(TINY, []), (MICRO, ["hardware.cu_in=4"]), (MICRO, ["hardware.cu_in=2"])])
def test_elementwise_loops_take_lanes_of_a_row_per_cycle(name, sets):
    """The gather and the clear (in the routing pipeline) take EW_LANES (= cu_in) columns per iteration, the
    loops that cast every column CAST_LANES (a divisor of it); each chunk hits distinct banks, so every one meets
    II 1.  The LayerNorm has no sum loop: the embedding and the residual adds hand it each row's sum."""
    cfg = load_config(name, sets)
    m, plan = cfg.model, KernelPlan.from_config(cfg)
    ew, cast = plan.elementwise_lanes, plan.cast_lanes
    assert ew == cfg.hardware.cu_in and ew % cast == 0 and m.embed_dim % ew == 0
    assert plan.moe_acc_banks % plan.epilogue_lanes == 0 and plan.moe_acc_banks % ew == 0
    assert plan.ln_param_banks % plan.words_per_beat == 0 and plan.ln_param_banks % cast == 0
    counts = np.full(m.num_experts, m.num_tokens * m.top_k / m.num_experts)
    le = loop_estimate(cfg, [counts] * len(m.moe_blocks))
    # the LayerNorm: one pipeline over rows x chunks, LN_SKEW rows longer (the normalisation trails by that many)
    assert "LN_SUM" not in le.loops and "LN_ROWS" not in le.loops
    assert le.loops["LN_STEPS"].iterations == 2 * m.depth * (m.num_tokens + plan.ln_skew) * m.embed_dim // cast
    assert le.loops["LN_STEPS"].entries == 2 * m.depth
    assert "ADD_D" not in le.loops       # the residual adds: in the compute unit's epilogue and MOE_OUT_D
    assert le.loops["GATE_CLEAR_U"].iterations == len(m.moe_blocks) * m.num_tokens * m.embed_dim
    assert le.loops["GATHER"].iterations == pytest.approx(sum(counts) * len(m.moe_blocks) * m.embed_dim / ew)
    assert le.loops["MOE_OUT_D"].iterations == len(m.moe_blocks) * m.num_tokens * m.embed_dim // cast
    for lab in ("EMBED_D", "LN_STEPS", "GATE", "GATHER", "MOE_OUT_D"):
        assert le.loops[lab].ii.ii == 1, (lab, le.loops[lab].ii.detail)
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert f"variable=c cyclic factor={cast} dim=2" in src and f"variable=ln_par cyclic factor={plan.ln_param_banks}" in src
    if plan.moe_acc_banks > 1:
        assert f"variable=moe_acc cyclic factor={plan.moe_acc_banks} dim=2" in src


@pytest.mark.parametrize("lanes", [4, 8, 16, 32, 64])
def test_layernorm_skew_keeps_the_1_over_std_hand_off_off_the_ii(lanes, monkeypatch):
    """More LN_LANES make a row fewer iterations; the normalisation then trails by more rows (LN_SKEW), so a
    row's 1/std (add, divide by DIM, add, rsqrt, store) is ready before its first use and LN_STEPS keeps II 1.
    LN_HANDOFF, the plan's figure for that path, covers the operators' latencies."""
    import edgemoe.hls.plan as plan_module
    from edgemoe.perf.loops import LN_HANDOFF_OPS

    assert plan_module.LN_HANDOFF >= sum(OP_LATENCY[o] for o in LN_HANDOFF_OPS)
    monkeypatch.setattr(plan_module, "LN_LANES", lanes)
    cfg = load_config(ZCU)
    plan = KernelPlan.from_config(cfg)
    assert plan.ln_lanes == lanes and plan.ln_chunks * lanes == cfg.model.embed_dim
    assert (plan.ln_skew - 1) * plan.ln_chunks + 1 >= plan_module.LN_HANDOFF
    assert plan.ln_skew == 2 or (plan.ln_skew - 2) * plan.ln_chunks + 1 < plan_module.LN_HANDOFF   # the fewest
    m = cfg.model
    counts = np.full(m.num_experts, m.num_tokens * m.top_k / m.num_experts)
    ln = loop_estimate(cfg, [counts] * len(m.moe_blocks)).loops["LN_STEPS"]
    assert ln.ii.ii == 1, ln.ii.detail
    src = render(cfg, ["src/edgemoe_vit.cpp", "include/edgemoe_config.h"])
    assert f"LN_SKEW = {plan.ln_skew};" in src["include/edgemoe_config.h"]
    assert f"variable=c inter distance={(plan.ln_skew - 1) * plan.ln_chunks} true" in src["src/edgemoe_vit.cpp"]


@pytest.mark.parametrize("name,sets", [(ZCU, []), (TINY, []), (MICRO, []), (MICRO, ["model.top_k=1"]),
                                       (MICRO, ["model.num_experts=8", "model.top_k=3"]),
                                       (MICRO, ["model.num_experts=5", "hardware.cu_in=4"])])
def test_routing_is_one_pipeline_over_tokens_and_experts(name, sets):
    """Gate softmax, top-k and the queue fill of every token are one II=1 loop (GATE) of GATE_SLOTS + GATE_SKEW
    token slots of EXPERTS iterations (longer only where moe_acc's clear, which it carries, is), a slot taking
    GATE_LANES tokens side by side (2 where a slot's GATE_LANES x TOP_K queue entries fit its EXPERTS iterations):
    the top-k of slot s's tokens, the exps of slot s - 1's and the queue writes of slot s - GATE_SKEW's, so no
    per-token pipeline pays its depth. The lanes' logit reads share one bank's two ports (stage B takes its logits
    from the lanes' delay lines), each lane reads its own exp and reciprocal ROMs; the stages hand tokens on in
    registers."""
    cfg = load_config(name, sets)
    m, plan = cfg.model, KernelPlan.from_config(cfg)
    n, e, ew, k = m.num_tokens, m.num_experts, plan.elementwise_lanes, m.top_k
    GL = plan.gate_lanes
    assert GL == (2 if 2 * k <= e else 1) and plan.gate_slots == -(-n // GL)
    assert plan.gate_steps == max((plan.gate_slots + plan.gate_skew) * e, n * m.embed_dim // ew)
    le = loop_estimate(cfg, None)
    gate = le.loops["GATE"]
    assert gate.iterations == len(m.moe_blocks) * plan.gate_steps and gate.entries == len(m.moe_blocks)
    assert gate.ii.ii == 1 and gate.ii.binding == "pragma II met", gate.ii.detail
    ports = {p.array: p for p in gate.spec.ports}
    assert ports["logits"].reads == GL <= 2 and ports["logits"].spread == 1
    assert ports["exp2_gate"].reads == ports["exp2_gate"].spread == ports["recip_gate"].spread == 2 * GL
    assert ports["route.ex"].writes == ports["route.inv"].writes == GL
    assert ports["q_count"].spread == e                                    # registers
    blocks = len(m.moe_blocks)
    assert le.loops["GATE_A"].iterations == blocks * plan.gate_steps * GL
    assert le.loops["GATE_INSERT"].iterations == blocks * plan.gate_steps * GL * k
    assert le.loops["GATE_B"].iterations == blocks * plan.gate_slots * e * GL
    assert le.loops["GATE_PICK"].iterations == blocks * plan.gate_slots * e * GL * k
    assert le.loops["GATE_SHIFT"].iterations == blocks * plan.gate_slots * GL * k * (GL * k - 1)
    assert not {"GATE_TOKENS", "GATE_MAX", "GATE_EXP", "TOPK_SCAN", "Q_FILL", "Q_FILL_K", "MOE_CLEAR",
                "GATHER_D"} & set(le.loops)
    steps = {k[0] for k in le.by_step()}
    assert "gate_topk" in steps and not {"queues", "moe_clear"} & steps
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert f"static const int GATE_STEPS = {plan.gate_steps}, GATE_SKEW = {plan.gate_skew};" in src
    assert f"static const int GATE_LANES = {GL}, GATE_SLOTS = {plan.gate_slots};" in src
    assert "GATE: for (int it = 0; it < GATE_STEPS; it++) {\n#pragma HLS PIPELINE II=1" in src
    assert "#pragma HLS ARRAY_PARTITION variable=q_count complete" in src
    body = src[src.index("GATE: for"):src.index("// Top level")]
    # the stages last first (each reads its hand-off registers before the stage ahead latches the next token)
    assert body.index("// C: the tokens of slot s - GATE_SKEW") < body.index("// B: the tokens of slot s - 1") \
        < body.index("// A: the tokens of slot s")
    assert "delay[g][0]" in body and "logits[t][e]" in body and "logits[s" not in body
    assert "exp2_gate[g]" in body and "recip_gate[g]" in body
    assert "acc_rows[base + cr][cd + u] = 0;" in body
    assert "route.queue[qe][pos] = base + t;" in body and "count[qe] = pos + 1;" in body
    assert "gate_token" not in src and "MOE_CLEAR" not in src
    const, specs = kernel_constants(cfg, plan), {s.label: s for s in kernel_loops(cfg, plan)}
    assert eval(_loop_bound(src, "GATE"), {}, const) == eval(specs["GATE"].trip, {}, const)  # noqa: S307
    if name == ZCU:   # the preset: the routing steps were ~25k cycles per MoE block
        blk = m.moe_blocks[0]
        by = le.by_step()
        assert by[("gate_topk", blk)] + by[("expert_gather", blk)] < 6000


@pytest.mark.parametrize("name,sets", [(TINY, []), (ZCU, []), (MICRO, UNALIGNED),
                                       (MICRO, ["precision.profile=w8a16", "hardware.cu_in=4"])])
def test_residual_adds_are_in_the_epilogues(name, sets):
    """No residual_add step: proj and fc2 run on the compute unit in CU_RESID mode, whose epilogue also adds
    each output into x (EPI_LANES consecutive columns: one read and one write per bank of x) and sums the row
    into x_sum; the MoE output adds its rows in MOE_OUT_D (CAST_LANES columns).  The adds cost no loop its II
    (the MAC loop's is what its writes to out allow: test_score_stores_share_the_out_banks_with_the_epilogue)
    and the figures have no resid steps, on chip; Edge-MoE's design keeps its own."""
    cfg = load_config(name, sets)
    m, plan = cfg.model, KernelPlan.from_config(cfg)
    E, ci = plan.epilogue_lanes, cfg.hardware.cu_in
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert "residual_add" not in src and "ADD_D" not in src
    calls = re.findall(r"compute_unit\(([^;]*)\);", src)
    resid = [c for c in calls if "CU_RESID" in c]
    assert len(resid) == 2 and "OFF_PROJ_W[b]" in resid[0] and "OFF_FC2_W[b]" in resid[1]
    # every call passes the residual stream, then its weights' source and column offsets, then the side job's
    # scores, state and switch; proj and fc2 stream their weights, no side job
    calls = [" ".join(c.split()) for c in calls]
    assert all(re.search(r"\bx, x_sum, W_(DRAM|KEYS|VALUES), [^,]+, [^,]+, [^,]+, \w+, sm_max, sm_sum, "
                         r"[^,]+, [^,]+, [^,]+, p_tail, [^,]+, \w+$", c)
               for c in calls), calls
    assert all(c.endswith("x, x_sum, W_DRAM, 0, 0, 0, logits, sm_max, sm_sum, false, 0, 0, p_tail, pre, nt")
               for c in calls if "CU_RESID" in c)
    assert "x[r][d0 + u] = v;" in src.split("MOE_OUT_U:")[1].split("x_sum[r] = s;")[0]
    le = loop_estimate(cfg, None)
    mac = le.loops["MAC"]
    x = Port("x", reads=E, writes=E, spread=min(E, ci))
    assert x in mac.spec.ports and x.per_bank <= BANK_PORTS
    assert mac.ii.ii == mac.ii.constraints["bank ports"] == mac_out_ii(cfg, plan), mac.ii.detail
    assert not mac.ii.detail.get("bank ports", "").startswith("x:")
    out = le.loops["MOE_OUT_D"]
    assert out.ii.ii == 1 and any(p.array == "x" and p.writes == plan.cast_lanes for p in out.spec.ports)
    assert not [k for k in le.by_step() if k[0].startswith("resid")]
    assert "residual_add" not in le.functions
    est = estimate(cfg)
    assert not [s for s in est.steps if s.name.startswith("resid")]
    # the epilogue's work costs no iterations: proj's MAC iterations are those of a CU_STORE layer of its shape
    proj = sum(v[1] for (step, b), v in mac.by_step.items() if step == "proj")
    lin = plan.linear("blocks.0.proj")
    # (with rows of whole bus words: its biases and tile 0 prefetched by the last A*V, and its last pass
    # prefetches the gate's or fc1's)
    aligned = plan.weight_rows_aligned
    after = [plan.linear(f"blocks.{b}.gate.0" if m.is_moe(b) else f"blocks.{b}.fc1") for b in range(m.depth)]
    assert proj == pytest.approx(sum(sum(plan.mac_passes(lin, m.num_tokens, aligned,
                                                         plan.prefix_steps(a) if aligned else 0)) for a in after))
    dram = estimate(cfg, mode="edgemoe-dram")
    assert {s.name for s in dram.steps if s.name.startswith("resid")} == {"resid1", "resid2"}


@pytest.mark.parametrize("name,sets", [(ZCU, []), (TINY, []), (MICRO, ["hardware.cu_in=4"]),
                                       (MICRO, ["model.img_height=32", "model.img_width=48"]),
                                       (MICRO, UNALIGNED + ["precision.profile=w8a16", "hardware.axi_width=1024"])])
def test_the_edges_move_words_per_cycle(name, sets):
    """The patch gather reads an image word (IMAGE_LANES pixels of one patch row) per cycle into as many distinct
    banks of big, one burst; the call's constants (cls, the position table, the LayerNorms) are one burst at its
    start, and the embedding casts CAST_LANES columns
    per cycle in one pipeline over every row; the output tokens are one pipeline, one burst, no per-row entry."""
    cfg = load_config(name, sets)
    m, h, plan = cfg.model, cfg.hardware, KernelPlan.from_config(cfg)
    il = plan.image_lanes
    assert il & (il - 1) == 0 and m.patch_size % il == 0 and h.cu_in % il == 0
    assert il * plan.pixel_word_bits <= h.axi_width and plan.image_word_bits == il * plan.pixel_word_bits
    assert plan.image_words * il == m.in_chans * m.img_height * m.img_width
    assert plan.interface_depths["image"] == plan.image_words
    assert plan.pos_beats == -(-m.num_tokens * m.embed_dim // plan.words_per_beat)
    le = loop_estimate(cfg, None)
    specs = {s.label: s for s in kernel_loops(cfg, plan)}
    pix = le.loops["PATCH_PIX"]
    assert pix.entries == 1 and pix.iterations == plan.image_words and pix.ii.ii == 1, pix.ii.detail
    assert specs["PATCH_PIX"].ports == (Port("big", writes=il, spread=il),)
    # the tap: an image word a cycle, whole bus words of its pixels written one a cycle (or a bus word every
    # OUT_PER_BEAT / IMAGE_LANES words, written when full)
    opb = plan.out_per_beat
    assert specs["PIX"].target_ii == max(1, il // opb) and specs["PIX"].axi[1].writes == il / opb
    assert "EMBED_R" not in le.loops and "WRITE_R" not in le.loops and "WRITE_C" not in le.loops
    # the call's constants: the cls token, the position table and every LayerNorm's gamma and beta, one burst
    assert plan.const_beats == plan.cls_beats + plan.pos_beats + 4 * m.depth * plan.ln_param_beats
    assert le.loops["CONSTS"].entries == 1 and le.loops["CONSTS"].iterations == plan.const_beats
    assert "EMBED_POS" not in le.loops and "READ_LN" not in le.loops and "READ_BEATS" not in le.loops
    emb = le.loops["EMBED_D"]
    assert emb.entries == 1 and emb.iterations == m.num_tokens * m.embed_dim // plan.cast_lanes and emb.ii.ii == 1
    out = le.loops["WRITE_W"]
    assert out.entries == le.functions["write_rows"].calls == 1
    # a bus word (OUT_PER_BEAT words) an iteration, the tokens from a bus word
    assert out.iterations == -(-m.num_tokens * m.embed_dim // opb) == plan.token_region.beats
    assert specs["WRITE_W"].target_ii == plan.write_ii and memory_of(cfg, plan).word_bits["activations"] == h.axi_width
    if plan.write_rows_aligned and opb <= h.cu_in:   # a bus word reads its OUT_PER_BEAT banks once each
        assert out.ii.constraints["bank ports"] == 1
    # the gather's cycles: the words, the pipeline's depth (a DRAM round trip) and nothing per patch or row
    assert pix.cycles == pytest.approx(plan.image_words + pix.ii.depth)
    assert pix.ii.depth < plan.m_axi_latency + 10
    src = render(cfg, ["src/edgemoe_vit.cpp", "include/edgemoe_config.h"])
    kernel, header = src["src/edgemoe_vit.cpp"], src["include/edgemoe_config.h"]
    assert "PATCH_PIX: for (int k = 0; k < IMAGE_WORDS; k++)" in kernel
    assert f"IMAGE_LANES = {il}, IMAGE_WORDS = {plan.image_words};" in header
    assert f"typedef ap_uint<{plan.image_word_bits}> image_word_t;" in header
    assert f"run_images(const image_word_t* image," in kernel
    assert f"port=image offset=slave bundle={h.bundle_of['image']} depth={plan.image_words} " in kernel


def test_the_edges_on_the_zcu102_preset():
    """The preset's image words are 16 pixels (a patch row; 128 bits, an HP port's width): the gather, the
    embedding and the output together take about 0.12 ms, the output's word per cycle most of it."""
    cfg = load_config(ZCU)
    plan = KernelPlan.from_config(cfg)
    assert plan.image_lanes == cfg.model.patch_size == 16 and plan.image_word_bits == 128
    le = loop_estimate(cfg, None)
    by = le.by_step()
    edges = sum(v for (step, _), v in by.items() if step in ("patch_gather", "embed", "write_tokens"))
    assert edges / (cfg.hardware.clock_mhz * 1e3) < 0.125, edges   # ms; 0.55 with a pixel, a word per cycle


def test_output_tokens_are_whole_bus_words_on_the_zcu102_preset():
    """The preset's activations port takes 512-bit bus words of 16 output words: WRITE_W writes the N x DIM tokens
    in N x DIM / 16 of them, a row's bus words reading 16 of x's 64 banks once each (II 1 by the banks), so the
    HPC port's bandwidth binds it: under a quarter of the word-a-cycle loop's N x DIM cycles.  The small taps put
    a word a cycle into a bus word and write it when full: a write of its own (no burst) every 16 iterations."""
    cfg = load_config(ZCU)
    m, plan = cfg.model, KernelPlan.from_config(cfg)
    assert plan.out_per_beat == 16 and plan.write_rows_aligned and plan.write_bank_reads == 1
    assert plan.write_ii == 1 and plan.token_region.beats * 16 == m.num_tokens * m.embed_dim
    le = loop_estimate(cfg, None)
    w = le.loops["WRITE_W"]
    assert w.entries == 1 and w.iterations == m.num_tokens * m.embed_dim / 16
    assert w.ii.constraints["bank ports"] == 1 and w.ii.binding == "m_axi", w.ii.detail
    assert w.cycles < m.num_tokens * m.embed_dim / 4
    assert "WRITE_LANES" not in le.loops   # rows of whole bus words: one (r, cb) counter pair
    specs = {s.label: s for s in kernel_loops(cfg, plan)}
    for label in ("TAP_SM", "TAP_GS", "TAP_TK", "TAP_EC", "PACK_W"):
        (a,) = specs[label].axi
        assert a.arg == "activations" and a.writes == 1 / 16 and not a.burst and specs[label].tap_only, label
    assert le.by_step()[("write_tokens", m.depth)] < 7_000   # 24,831 cycles a word a cycle


@pytest.mark.parametrize("sets,ii", [(UNALIGNED + ["hardware.axi_width=1024"], 4),    # 32 words over 4 banks
                                     (UNALIGNED, 1),                                   # 8 words over 4 banks
                                     (["model.embed_dim=24", "model.num_heads=3", "hardware.cu_in=8",
                                       "hardware.cu_out=8", "hardware.axi_width=512"], 1)])   # 16 across rows of 24
def test_write_rows_ii_is_its_busiest_bank(sets, ii):
    """write_rows' II is the busiest bank's reads by one bus word over two ports, the same in the template's
    pragma and the loop model; rows that are not whole bus words take a lane counter each (WRITE_LANES)."""
    cfg = load_config(MICRO, sets)
    plan = KernelPlan.from_config(cfg)
    assert plan.write_ii == ii == -(-plan.write_bank_reads // BANK_PORTS)
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert f"#pragma HLS PIPELINE II={ii}\n        act_beat_t beat = 0;\n        WRITE_J:" in src
    le = loop_estimate(cfg, None)
    w = le.loops["WRITE_W"]
    assert w.ii.constraints["bank ports"] == ii and w.iterations == plan.token_region.beats
    assert ("WRITE_LANES" in le.loops) == (not plan.write_rows_aligned) == ("WRITE_LANES:" in src)


def test_dataflow_call_is_the_longer_process_plus_one_tile():
    assert dataflow_overlap(100.0, 1000.0, 10) == (1010.0, pytest.approx(0.9), 0.0)    # loads behind compute
    assert dataflow_overlap(1000.0, 100.0, 4) == (1025.0, 0.0, pytest.approx(0.75))    # compute behind loads
    assert dataflow_overlap(0.0, 50.0, 3) == (50.0, 0.0, 0.0)


@pytest.mark.parametrize("sets", [[], UNALIGNED])
def test_compute_unit_calls_add_up_to_max_of_loader_and_compute(sets):
    """Per image, the loader's and the compute process's loops add up to the sum over calls of
    max(loader, compute) + fill: the shorter process's share of one tile, except where the compute binds and
    the layer is one burst (rows of whole bus words), where the compute's pass 0 unpacks the first tile's bus
    words as they arrive, so the call waits only for what of their arrival (the load loop's depth, then its II
    a bus word) pass 0 (PASS_LEAD, then UNPACK_STEPS a bus word) does not cover.  With one token through an expert: where tiles start inside a bus word the
    loader pays a DRAM round trip per tile and is the longer process (than the compute at its pragma's II; as
    written, the 4 x 5 unit's MAC loop runs at II 2: test_score_stores_share_the_out_banks_with_the_epilogue);
    with rows of whole bus words it reads the layer in two bursts and the compute (the unpack, UNPACK_STEPS
    cycles a bus word) is.  With every token of the tiny preset the compute is.  The attention's passes take
    their weights from on chip: their loader reads nothing."""
    cfg = load_config(MICRO, sets)
    m, plan = cfg.model, KernelPlan.from_config(cfg)
    counts = np.zeros(m.num_experts)
    counts[0] = 1                                             # one token through expert 0
    le = loop_estimate(cfg, [counts] * len(m.moe_blocks))
    lo = [r for r in le.loops.values() if r.spec.function == "load_tiles"]
    co = [r for r in le.loops.values() if r.spec.function == "compute_tiles"]
    assert all(r.cycles >= -1e-9 for r in lo + co)
    by = lambda recs, step: sum(r.cycles_of(*r.by_step[step]) for r in recs if step in r.by_step)  # noqa: E731
    raw = lambda recs, step: sum(r.raw_cycles(*r.by_step[step][:3]) for r in recs if step in r.by_step)  # noqa: E731
    target = lambda recs, step: sum(r.raw_cycles(*r.by_step[step][:3], ii=r.spec.target_ii)  # noqa: E731
                                    for r in recs if step in r.by_step)
    b = m.moe_blocks[0]
    for step, tiles in ((("expert_fc2", b), -(-m.embed_dim // cfg.hardware.cu_out)),
                        (("qkv", 0), -(-3 * m.embed_dim // cfg.hardware.cu_out))):
        load, comp = raw(lo, step), raw(co, step)
        lin = plan.linear("blocks.0.qkv" if step[0] == "qkv" else f"blocks.{b}.experts.0.fc2")
        if plan.weight_rows_aligned and load <= comp:
            # the call before prefetched the layer's biases and tile 0 (every DRAM call but the group's first
            # patch embedding): it starts with pass 1, whose unpack takes tile 1's bus words as they arrive beside
            # its MACs, so the call waits only for what of their arrival (and PASS_TAIL) that pass does not cover
            rows = m.num_tokens if step[0] == "qkv" else 1
            t1 = plan.tile_spans(lin)[1][1][1]
            lw = le.loops["LOAD_W"].ii
            arrival = lw.depth + t1 * lw.ii
            fill = max(0.0, arrival + plan.pass_tail - plan.mac_passes(lin, rows, True)[0])
            assert fill < load / tiles                           # less than the share of a tile it was
            assert by(lo, step) + by(co, step) == pytest.approx(comp + fill)
        else:
            assert by(lo, step) + by(co, step) == pytest.approx(dataflow_overlap(load, comp, tiles)[0])
    # the attention's calls (a score and an A*V pass per head): load_tiles returns at once
    streamed = le.functions["compute_unit"].calls - len(plan.attention_calls()) * m.depth
    assert le.functions["load_tiles"].calls == le.functions["compute_unit"].calls
    # (but the last A*V's streams proj's biases and tile 0 for its last pass: hidden behind its MACs)
    attn_loads = [r for r in lo if any(k[0] == "attn" for k in r.by_step)]
    assert [r.spec.label for r in attn_loads] == (["LOAD_NEXT"] if plan.weight_rows_aligned else [])
    assert all(r.cycles_of(*r.by_step[("attn", 0)]) == pytest.approx(0.0) for r in attn_loads)
    assert raw(co, ("attn", 0)) > 0
    if plan.weight_rows_aligned:
        # one burst per call: the layer's biases (none for the gates), then its matrix, back to back in the layout
        assert "LOAD_TILES" not in le.loops and "LOAD_B" not in le.loops
        assert le.loops["LOAD_W"].entries == streamed
        for lin in plan.linears:
            bias, w = plan.layer_spans(lin)
            assert plan.layer_burst(lin) == ((bias[0], bias[1] + w[1]) if bias else w[:2])
        assert raw(lo, ("expert_fc2", b)) < raw(co, ("expert_fc2", b))   # one token: the unpack binds
    else:
        assert le.loops["LOAD_TILES"].entries == streamed
        assert raw(lo, ("expert_fc2", b)) > target(co, ("expert_fc2", b))   # one token: the loads bind
    # the tiny preset's qkv (129 tokens, 12 k-chunks a row): the compute binds
    tiny = loop_estimate(load_config(TINY), None)
    lo = [r for r in tiny.loops.values() if r.spec.function == "load_tiles"]
    co = [r for r in tiny.loops.values() if r.spec.function == "compute_tiles"]
    assert raw(lo, ("qkv", 0)) < raw(co, ("qkv", 0))


def _mac_iterations(cfg, plan, lin, rows, pre=False, after=None):
    """A compute_unit call's MAC-loop iterations, as the flat pipeline's brief states them: the first tile's
    unpack in front (between a lead and a tail of PASS_GAP - 1 iterations, the lead longer by EPI_GROUPS with a
    bias per tile; none when the call before prefetched it: ``pre``), then per tile max(its MAC iterations,
    the next tile's unpack with its lead and tail), and the last row's epilogue once, or, when the call
    prefetches the biases and tile 0 of layer ``after``, their unpack with its lead and tail if longer."""
    macs = rows * -(-lin.k // cfg.hardware.cu_in)
    gap = plan.pass_gap - 1
    lead = gap if plan.weight_rows_aligned else gap + plan.epilogue_groups
    steps = [(b[1] if b else 0) + w[1] * plan.unpack_steps for b, w in plan.tile_spans(lin)]
    if plan.weight_rows_aligned:   # the layer's biases come first, all in pass 0 (one burst)
        bias = plan.layer_spans(lin)[0]
        steps = [w[1] * plan.unpack_steps + (bias[1] if bias and t == 0 else 0)
                 for t, (_, w) in enumerate(plan.tile_spans(lin))]
    unpack = [lead + s + gap for s in steps]
    last = macs + plan.epilogue_groups
    if after is not None:
        bias = plan.layer_spans(after)[0]
        last = max(last, lead + (bias[1] if bias else 0) + plan.tile_spans(after)[0][1][1] * plan.unpack_steps + gap)
    return (0 if pre else unpack[0]) + sum(max(macs, u) for u in unpack[1:]) + last


@pytest.mark.parametrize("name,sets", [(TINY, []), (ZCU, []), (MICRO, []), (MICRO, UNALIGNED),
                                       (MICRO, UNALIGNED + ["precision.profile=w8a16", "hardware.axi_width=1024"])])
def test_compute_tiles_unpacks_the_next_tile_inside_the_mac_loop(name, sets):
    """compute_tiles as written: pass p runs tile p - 1's MACs and unpacks tile p from the FIFO (a ping-pong
    tile buffer), and all a call's passes are one II=1 pipeline, entered once per call: a call takes per tile
    max(MAC iterations, the next tile's unpack with its lead and tail) + the first tile's unpack + the last
    row's epilogue, and pays the pipeline's depth once; a dense layer's unpack is hidden."""
    cfg = load_config(name, sets)
    m, plan = cfg.model, KernelPlan.from_config(cfg)
    counts = np.zeros(m.num_experts)
    counts[:3] = [m.num_tokens, m.num_tokens - 2, 2]          # three active experts, exact rows
    le = loop_estimate(cfg, [counts] * len(m.moe_blocks))
    mac = le.loops["MAC"]
    assert "TILES" not in le.loops and mac.spec.parent is None
    b = m.moe_blocks[0]
    lin = {x.name: x for x in plan.linears}
    # rows of whole bus words: every call prefetched by the one before (qkv by the patch embedding, an expert's
    # fc2 by its fc1), and an expert's fc2 prefetches the next active expert's fc1, the last the next block's qkv
    aligned = plan.weight_rows_aligned
    after = [lin[f"blocks.{b}.experts.{e + 1}.fc1"] for e in range(2)] + [lin.get(f"blocks.{b + 1}.qkv")]
    cases = [(("qkv", 0), [(lin["blocks.0.qkv"], m.num_tokens, None)]),
             (("expert_fc2", b), [(lin[f"blocks.{b}.experts.{e}.fc2"], int(n), after[e] if aligned else None)
                                  for e, n in enumerate(counts[:3])])]
    for step, calls in cases:
        assert mac.by_step[step][0] == len(calls), step   # one entry (one depth) per call, not per tile
        assert mac.by_step[step][1] == pytest.approx(sum(_mac_iterations(cfg, plan, x, n, aligned, a)
                                                         for x, n, a in calls)), step
        assert mac.raw_cycles(*mac.by_step[step][:3]) == pytest.approx(
            mac.by_step[step][1] * mac.ii.ii + len(calls) * mac.ii.depth), step
    if name != MICRO:   # the tiny model's 129 tokens: a dense layer's tiles are MAC-bound, its unpack hidden
        qkv = lin["blocks.0.qkv"]
        spans = plan.tile_spans(qkv)
        first = (plan.pass_gap - 1) + plan.layer_spans(qkv)[0][1] + spans[0][1][1] * plan.unpack_steps + (
            plan.pass_gap - 1)                                    # the layer's biases first
        macs = m.num_tokens * -(-qkv.k // cfg.hardware.cu_in)
        assert mac.by_step[("qkv", 0)][1] == (0 if aligned else first) + len(spans) * macs + plan.epilogue_groups
    # the unpack is in the MAC pipeline, whose recurrences still allow II 1 (no UNPACK loop of its own) unless a
    # bus word wraps past several rows: then the next bus word's (o0, k0) is a chain of compare-subtracts. The
    # II is that or what the writes to out allow (2 on a unit wider in CU_OUT than in CU_IN)
    if plan.unpack_wraps == 1 or plan.weight_rows_aligned:
        assert mac.ii.constraints["recurrence"] == 1, mac.ii.detail
        assert mac.ii.ii == mac_out_ii(cfg, plan), mac.ii.detail
        assert mac.ii.binding == ("pragma II met" if mac.ii.ii == 1 else "bank ports")
    else:
        assert "(o0, k0, h)" in mac.ii.detail["recurrence"]
        assert mac.ii.constraints["recurrence"] == plan.unpack_wraps * OP_LATENCY["add"]
        assert mac.ii.ii == max(plan.unpack_wraps * OP_LATENCY["add"], mac_out_ii(cfg, plan)), mac.ii.detail
    assert not {"UNPACK_B", "UNPACK_W"} & set(le.loops)
    # the weight beats the loader streams (aligned rows: its one burst is the biases' beats, then the matrix's,
    # less what the call before streamed for it; then the next call's, which the compute's last pass pops)
    popped = le.loops["LOAD_W"].iterations + (le.loops["LOAD_NEXT"].iterations if plan.weight_rows_aligned else 0)
    weight_beats = popped - (le.loops["UNPACK_B_J"].iterations / plan.words_per_beat if plan.weight_rows_aligned else 0)
    assert le.loops["UNPACK_W_J"].iterations == pytest.approx(plan.unpack_fields * plan.unpack_steps * weight_beats)
    # ... and in the generated source: the unpack's field loops under MAC, a beat popped there, the two halves
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    found = set(source_loops(src))
    assert {("UNPACK_B_J", "compute_tiles", "MAC"), ("UNPACK_W_J", "compute_tiles", "MAC")} <= found
    assert not [f for f in found if f[0] in ("UNPACK_B", "UNPACK_W")]
    body = src[src.index("MAC: for"):src.index("// One linear layer on the compute unit")]
    store = "w[nxt][o0][k0 + j] = " if plan.weight_rows_aligned else "w[nxt][o][k] = "
    assert "beats.read_nb(wbeat)" in body and "beats.read()" not in body and store in body and "w[cur][o][kb + c + i]" in body
    # the halves' hazards across a pass boundary, stated as the distance the lead and tail keep
    for var in ("w", "b"):
        assert f"#pragma HLS DEPENDENCE variable={var} inter distance={plan.pass_gap} true" in body
        assert f"variable={var} inter false" not in body
    assert f"enum {{ PASS_LEAD = {plan.pass_lead}, PASS_TAIL = {plan.pass_tail} }};" in src
    # the tile buffer holds a matrix element or (the attention's passes) a key or value word
    assert "static cu_weight_t w[2][CU_OUT][ROW_WORDS];" in src
    assert f"enum {{ UNPACK_STEPS = {plan.unpack_steps}, UNPACK_FIELDS = {plan.unpack_fields} }};" in src


@pytest.mark.parametrize("sets", [[], UNALIGNED])
def test_mac_pipeline_keeps_a_pass_gap_between_the_halves_accesses(sets):
    """In the flat MAC pipeline pass p + 1's MACs read the half pass p's unpack wrote, and its unpack writes the
    half pass p's MACs (and, with a bias per tile, the epilogue of their last row over pass p + 1's first
    EPI_GROUPS iterations) read: the unpack starts PASS_LEAD iterations into a pass and ends PASS_TAIL before its
    end, so those accesses are PASS_GAP iterations apart, which covers a BRAM write and a read.  As a recurrence
    over PASS_GAP iterations it leaves II 1; back to back (distance 1) it would bind the loop."""
    cfg = load_config(MICRO, sets)
    plan = KernelPlan.from_config(cfg)
    assert plan.pass_tail == plan.pass_gap - 1
    assert plan.pass_lead == plan.pass_gap - 1 + (0 if plan.weight_rows_aligned else plan.epilogue_groups)
    specs = {s.label: s for s in kernel_loops(cfg, plan)}
    mac = specs["MAC"]
    (hazard,) = [r for r in mac.recurrences if r.distance == plan.pass_gap and not r.what.startswith("side job")]
    # the CU_RESID row sum's read-modify-write of x_sum recurs a whole pass apart: PASS_MIN iterations
    (row_sum,) = [r for r in mac.recurrences
                  if r.distance > 1 and r is not hazard and not r.what.startswith("side job")]
    assert row_sum.distance == plan.pass_min == plan.pass_lead + 1 + plan.pass_tail > plan.pass_gap
    assert sum(OP_LATENCY[o] for o in row_sum.ops) <= plan.pass_min
    latency = sum(OP_LATENCY[o] for o in hazard.ops)
    assert hazard.distance == plan.pass_gap and latency == OP_LATENCY["store"] + OP_LATENCY["bram"] <= plan.pass_gap
    mem, board = memory_of(cfg, plan), BOARDS[cfg.hardware.board]
    ii = analyse(mac, specs, mem, OP_LATENCY, board.dsp)
    if plan.weight_rows_aligned or plan.unpack_wraps == 1:
        assert ii.constraints["recurrence"] == 1, ii.detail
    adjacent = analyse(dataclasses.replace(mac, recurrences=tuple(
        dataclasses.replace(r, distance=1) if r is hazard else r for r in mac.recurrences)), specs, mem, OP_LATENCY,
        board.dsp)
    assert adjacent.constraints["recurrence"] == latency > ii.constraints["recurrence"]
    assert adjacent.ii == max(latency, ii.ii) and adjacent.binding == "recurrence"


def test_unpack_steps_keep_one_write_per_tile_bank():
    """The MACs read one word of each of w's CU_IN banks per tile row and iteration; the unpack beside them
    writes at most CU_IN consecutive (o, k) per iteration, so a bank takes one read and one write.  On the
    ZCU102 preset's 32-wide unit a bus word of 32 8-bit weights is one step; on a 16-wide unit it is two steps of
    16, since a whole bus word per iteration would put three accesses on a bank (II 2)."""
    for name, sets, steps, fields in ((TINY, [], 1, 16), (ZCU, [], 1, 64), (ZCU, ZCU_ONE_PORT, 1, 32),
                                      (ZCU, ZCU_ONE_PORT + ["hardware.cu_in=16"], 2, 16)):
        plan = KernelPlan.from_config(load_config(name, sets))
        assert (plan.unpack_steps, plan.unpack_fields) == (steps, fields), (name, sets)
    for name, sets in ((MICRO, ["precision.profile=w8a16", "hardware.axi_width=1024"]),
                       (MICRO, UNALIGNED), (TINY, ["hardware.cu_in=32"])):
        cfg = load_config(name, sets)
        plan = KernelPlan.from_config(cfg)
        assert plan.unpack_fields <= cfg.hardware.cu_in, sets
        assert plan.unpack_fields * plan.unpack_steps >= plan.matrix_per_beat > plan.unpack_fields * (
            plan.unpack_steps - 1), sets
    co, ci = 32, 16
    assert ii_of(ports=(Port("w", reads=co * ci, writes=co * ci * math.ceil(16 / ci), spread=co * ci),)).ii == 1
    assert ii_of(ports=(Port("w", reads=co * ci, writes=co * ci * math.ceil(32 / ci), spread=co * ci),)).ii == 2


def test_weight_streaming_is_per_port_on_zynq():
    z = load_config(TINY)
    u = load_config(TINY, ["hardware.board=u50"])
    mz, mu = memory_of(z, KernelPlan.from_config(z)), memory_of(u, KernelPlan.from_config(u))
    board = BOARDS["zcu102"]
    assert mz.port_bpc == pytest.approx(board.port_gbps * 1e9 / (z.hardware.clock_mhz * 1e6))
    assert mz.port_bpc < z.hardware.axi_width / 8                            # a 128-bit HP port
    assert mz.ddr_bpc == pytest.approx(board.mem_gbps * board.mem_efficiency * 1e9 / (z.hardware.clock_mhz * 1e6))
    assert mz.latency == KernelPlan.from_config(z).m_axi_latency == math.ceil(board.dram_latency_ns * 300 / 1e3)
    assert math.isinf(mu.port_bpc) and not math.isinf(memory_of(u, KernelPlan.from_config(u), True).port_bpc)


# --- the headline ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [TINY, MICRO])
def test_headline_is_as_written_and_not_below_intended(name):
    est = estimate(load_config(name))
    assert est.loops is not None
    assert est.ms_per_image == pytest.approx(est.loops.ms_per_image)
    assert est.roofline.modelled_ms == est.ms_per_image
    assert est.ms_per_image >= est.intended_ms_per_image
    text = est.table()
    assert f"total (as written): {est.cycles_per_image:,.0f} cycles/image" in text and "intended" in text
    assert estimate(load_config(name), mode="edgemoe-dram").loops is None


def test_loops_table_and_findings():
    cfg = load_config(MICRO)
    est = estimate(cfg)
    text = format_loops(est, top=10)
    assert text == est.loops_table(10)
    lines = text.splitlines()
    assert lines[0].startswith("loops of the kernel as written") and "binding" in lines[1]
    top = est.loops.rows()[0]
    assert lines[2].split()[0] == top["label"] and "more rows" in lines[-1]
    rows = as_written_findings(cfg)
    assert rows[0]["penalty"] == "(intended schedule)" and rows[-1]["penalty"] == "(all: as written)"
    assert rows[-1]["ms_per_image"] == pytest.approx(est.ms_per_image)
    assert sum(r["ms_per_image"] for r in rows[1:-1]) == pytest.approx(est.ms_per_image)
    assert "no generated kernel" in format_loops(estimate(cfg, mode="edgemoe-dram"))


# --- weight lanes -----------------------------------------------------------------------------------------

def _load_w(cfg):
    plan = KernelPlan.from_config(cfg)
    specs = {s.label: s for s in kernel_loops(cfg, plan)}
    return analyse(specs["LOAD_W"], specs, memory_of(cfg, plan), OP_LATENCY, BOARDS[cfg.hardware.board].dsp)


def test_weight_lanes_split_the_port_bandwidth_until_the_ddr_binds():
    """Each lane is an m_axi read on its own bundle at the lane's bits: the port-bandwidth II of LOAD_W halves
    with every doubling of the lanes, until the DDR total (all bundles together) binds."""
    base = load_config(ZCU, ZCU_ONE_PORT)
    one, two = _load_w(base), _load_w(load_config(ZCU, ZCU_ONE_PORT + ["hardware.weight_lanes=2"]))
    mem = memory_of(base, KernelPlan.from_config(base))
    assert one.binding == "m_axi" and one.detail["m_axi"] == "gmem1: port bandwidth"
    assert one.ii == pytest.approx(256 / 8 / mem.port_bpc)           # a 256-bit bus word on one 128-bit HP port
    assert two.ii == 1 and two.binding == "pragma II met"             # 128 bits on each of two HP ports
    cfg2 = load_config(ZCU, ZCU_ONE_PORT + ["hardware.weight_lanes=2"])
    loads = {s.label: s for s in kernel_loops(cfg2, KernelPlan.from_config(cfg2))}
    assert [a.arg for a in loads["LOAD_W"].axi] == ["weights_0", "weights_1"]
    wide = [_load_w(load_config(ZCU, ZCU_ONE_PORT + ["hardware.axi_width=512", f"hardware.weight_lanes={n}"]))
            for n in (1, 2)]
    assert [r.detail["m_axi"] for r in wide] == ["gmem1: port bandwidth", "gmem1_0: port bandwidth"]
    assert wide[1].ii == pytest.approx(wide[0].ii / 2)
    # four lanes (the ZCU102's HPC ports too) of a 512-bit bus word would take 0.9 cycles on their ports, but
    # the DDR total (64 bytes a cycle on all of them) binds
    four = _load_w(load_config(ZCU, ZCU_ONE_PORT + ["hardware.axi_width=512", "hardware.weight_lanes=4"]))
    assert four.ii == pytest.approx(512 / 8 / mem.ddr_bpc) and four.ii > wide[0].ii / 4
    assert four.detail["m_axi"].endswith("DDR bandwidth")


def test_weight_lanes_in_the_estimate_and_the_resources():
    """The whole estimate follows: as written and intended faster with 2 lanes on the ZCU102; an m_axi adapter
    per bundle, the lanes' at the lane width."""
    from edgemoe.perf.resources import estimate_resources

    one, two = load_config(ZCU, ZCU_ONE_PORT), load_config(ZCU, ZCU_ONE_PORT + ["hardware.weight_lanes=2"])
    e1, e2 = estimate(one), estimate(two)
    assert e2.ms_per_image < e1.ms_per_image and e2.intended_ms_per_image < e1.intended_ms_per_image
    axi = {i.shape: i.count for i in estimate_resources(two, "onchip", 1).items if i.what.startswith("m_axi adapter")}
    assert axi == {"256b": 2, "128b": 2}
    axi1 = {i.shape: i.count for i in estimate_resources(one, "onchip", 1).items if i.what.startswith("m_axi adapter")}
    assert axi1 == {"256b": 3}


#: attention configs: the presets, and the test configs' P (1, 3, 4, 5, 7), one head; ATTN_GROUPS from 33 down
#: to 1 (a query's softmax state revisited sooner than its recurrence's latency: few tokens, many lanes)
ATTN_CASES = [(TINY, []), (ZCU, []), (MICRO, ["hardware.attn_parallel=3"]), (MICRO, ["hardware.attn_parallel=1"]),
              (MICRO, ["hardware.attn_parallel=4"]), (MICRO, ["hardware.attn_parallel=5", "hardware.cu_in=16"]),
              (MICRO, ["hardware.cu_in=4"]),
              (MICRO, ["model.img_height=32", "model.img_width=48", "model.num_heads=1", "hardware.attn_parallel=7"])]

#: the online softmax's sum recurrence as the template writes it (online_step): read l, l * alpha (softmax_sum_t
#: x exp_t, one DSP), + e, the cast to softmax_sum_t, the store
SUM_RECURRENCE = ("bram", "mul", "add", "cast", "store")


def _loop_bound(src: str, label: str) -> str:
    """The bound of ``LABEL: for (int v = 0; v < BOUND; v++) {`` in a generated source."""
    found = re.search(rf"^\s*{label}: for \(int (\w+) = 0; \1 < (.+); \1\+\+\) \{{$", src, re.M)
    assert found, label
    return found.group(2)


def _value_steps(cfg) -> int:
    """UNPACK_V steps of one A*V call as compute_tiles runs them: per tile, each of the N_TOKENS keys' value
    columns of the tile's outputs (the last tile's may be fewer than CU_OUT), CU_IN a step."""
    m, h = cfg.model, cfg.hardware
    return sum(m.num_tokens * -(-min(h.cu_out, m.head_dim - o) // h.cu_in) for o in range(0, m.head_dim, h.cu_out))


def _side_schedule(plan, n_heads, per_head, pace):
    """A block's attention calls re-derived from the kernel's rules, independently of KernelPlan.attention_calls:
    the side job steps every ``pace`` iterations while its head's scores are stored (heads below ``ready``; in a
    score pass also the pass's own head once the MACs are at tile SM_LEAD_TILES), a call lasts its passes and
    until the heads below ``need`` are done."""
    n = plan.config.model.num_tokens
    order = [("scores", h, h, int(h == n_heads - 1 and n_heads > 1)) for h in range(n_heads)]
    order += [("none", 0, 1, 1)] if n_heads == 1 else []
    order += [("av", h, n_heads, min(h + 2, n_heads)) for h in range(n_heads)]
    done, out = 0, []
    for i, (kind, head, ready, need) in enumerate(order):
        it = 0
        # its passes: pass 0 (tile 0's unpack) done by the call before, with more than one head; the last pass
        # as long as the next call's first tile's unpack, PASS_LEAD + its steps + PASS_TAIL, if that is longer
        pre = n_heads > 1 and i > 0
        parts = [1] if kind == "none" else plan.attention_passes(kind, n)[1 if pre else 0:]
        if n_heads > 1 and i + 1 < len(order):
            first = plan.attention_shape(order[i + 1][0])[2][0]
            parts[-1] = max(parts[-1], plan.pass_lead + first + plan.pass_tail)
        elif i + 1 == len(order) and plan.weight_rows_aligned:
            # the last A*V: proj's biases (a bus word a step) and tile 0 (UNPACK_STEPS a bus word), from DRAM
            proj = plan.linear("blocks.0.proj")
            first = plan.layer_spans(proj)[0][1] + plan.tile_spans(proj)[0][1][1] * plan.unpack_steps
            parts[-1] = max(parts[-1], plan.pass_lead + first + plan.pass_tail)
        passes = sum(parts)
        own = sum(parts[:plan.sm_lead_tiles + (0 if pre else 1)]) if kind == "scores" else passes + 10 ** 9
        while it < passes or done < need * per_head:      # the MAC loop: an iteration, then the side job's step
            cap = ready + (1 if it >= own else 0)
            if done < cap * per_head and it % pace == 0:
                done += 1
            it += 1
        out.append((kind, head, it))
    return out


@pytest.mark.parametrize("name,sets", ATTN_CASES)
def test_attention_is_score_passes_then_probabilities_and_av_per_head(name, sets):
    """run_images runs a block's attention as SCORES_LOOP (every head's score pass on the compute unit: q . k,
    HEAD_DIM-long rows, SCORE_COLS = N_TOKENS + ATTN_P - 1 outputs, the key rows unpacked from big by UNPACK_K,
    each head's scores into its own SCORE_COLS columns of logits), then AV_LOOP (per head its probabilities,
    PROBS, and its A*V pass: the probabilities' K_PAD columns x the head's HEAD_DIM value columns, unpacked by
    UNPACK_V, the keys past K_PAD folded into the last chunk). The online softmax is the compute unit's side job
    (N_TOKENS x ATTN_GROUPS steps of ATTN_P lanes a head, one every SM_PACE iterations, so a query's state
    revisited every ATTN_GROUPS steps never binds the MAC loop's II), head by head across the calls: a head's
    from the call after its score pass on, and the call before a head's probabilities lasts until that head's is
    done. The MAC iterations are the plan's attention calls, which a step-by-step walk of those rules reproduces;
    the loader streams nothing but, after the last A*V, proj's biases and tile 0 (rows of whole bus words: its last
    pass unpacks them).  PROBS: (N_TOKENS + PROB_LEAD) x PROB_CHUNKS iterations, PROB_LANES lanes (and
    AV_FOLD beside a row's last chunk), the padded keys zeroed beside a row's last chunk, each row's 1/sum
    PROB_LEAD rows ahead; each lane's accesses on banks of its own. The model's trip counts are the template's
    loop bounds."""
    cfg = load_config(name, sets)
    m, h, plan = cfg.model, cfg.hardware, KernelPlan.from_config(cfg)
    P, G, n, hd, ci = h.attn_parallel, plan.attn_groups, m.num_tokens, m.head_dim, h.cu_in
    K, PL, pace, fold, H = plan.k_pad, plan.prob_lanes, plan.sm_pace, plan.av_fold, m.num_heads
    assert G == -(-n // P) and plan.score_cols == n + P - 1
    assert fold == (n % ci if n > ci and n % ci <= AV_FOLD_MAX else 0) and K == -(-(n - fold) // ci) * ci
    assert plan.row_words >= H * plan.score_cols                       # every head's scores in logits
    latency = sum(OP_LATENCY[o] for o in SUM_RECURRENCE)
    assert SUM_RECURRENCE == SM_SUM_OPS and SM_RECURRENCE >= latency
    assert G * pace >= SM_RECURRENCE and (pace == 1 or G * (pace - 1) < SM_RECURRENCE)   # the fewest
    # PROB_LANES: the largest of CU_IN's divisors that is at most half of it
    assert ci % PL == 0 and (PL <= ci // 2 or ci == 1)
    assert all(ci % d for d in range(PL + 1, ci // 2 + 1))
    le = loop_estimate(cfg, None)
    heads = m.depth * H
    for lab in ("SCORES_LOOP", "AV_LOOP"):
        assert le.loops[lab].entries == m.depth and le.loops[lab].iterations == heads, lab
    assert le.functions["softmax"].calls == heads and "attention" not in le.functions and "HEADS_LOOP" not in le.loops
    C, lead, pad = plan.prob_chunks, plan.prob_lead, plan.prob_pad_lanes
    assert C == -(-(n - fold) // PL) and pad == K - C * PL and 0 <= pad < ci and lead * C >= PROB_HANDOFF
    assert lead == 1 or (lead - 1) * C < PROB_HANDOFF                                       # the fewest rows
    assert PROB_HANDOFF >= sum(OP_LATENCY[o] for o in RECIP_HANDOFF_OPS)
    for lab, it in (("SM_LANES", heads * n * G * P), ("PROBS", heads * (n + lead) * C),
                    ("PROB_U", heads * (n + lead) * C * PL), ("TAP_SM", 0)):
        assert le.loops[lab].iterations == pytest.approx(it), lab
    assert ("PROB_PAD" in le.loops) == (pad > 0) and not {"SM_FINAL", "SM_STEPS"} & set(le.loops)
    assert ("FOLD_U" in le.loops) == ("FOLD_J" in le.loops) == (fold > 0)
    assert le.loops["PROBS"].entries == heads
    for lab, up in (("SM_LANES", "MAC"), ("PROB_U", "PROBS"), ("UNPACK_K", "MAC"), ("UNPACK_V", "MAC")):
        assert le.loops[lab].ii.unrolled_in == up, lab
    assert not {"SCORES_AV", "HEAD_COPY", "SCORE_D", "SC_LANES", "AV_LANES", "AV_D", "AV_OUT_U"} & set(le.loops)
    # the calls: the plan's, as a walk of the kernel's rules gives them; one MAC pipeline entry each; the key rows'
    # HEAD_DIM words and the value columns unpacked CU_IN a step; nothing through the loader
    calls = plan.attention_calls()
    assert [(c.kind, c.head, c.iterations) for c in calls] == _side_schedule(plan, H, n * G, pace)
    assert sum(c.side_steps for c in calls) == H * n * G                # every head's online softmax, once
    assert [c.kind for c in calls] == ["scores"] * H + ["none"] * (H == 1) + ["av"] * H
    for b in range(m.depth):
        step = ("attn", b)
        assert le.functions["compute_unit"].by_step[step] == len(calls)
        entries, iters = le.loops["MAC"].by_step[step][:2]
        assert entries == len(calls) and iters == sum(c.iterations for c in calls)
        assert le.loops["UNPACK_K"].by_step[step][1] == pytest.approx(H * plan.score_cols * hd)
        assert le.loops["UNPACK_V"].by_step[step][1] == pytest.approx(H * ci * _value_steps(cfg))
        assert not [lab for lab in ("LOAD_B", "LOAD_W", "LOAD_TILES")
                    if lab in le.loops and step in le.loops[lab].by_step]
    # the side job in the MAC loop: its recurrence over ATTN_GROUPS steps of SM_PACE iterations never binds the II
    mac = le.loops["MAC"]
    (state,) = [r for r in mac.spec.recurrences if r.what.startswith("side job: a query's sum")]
    assert state.ops == SM_SUM_OPS and state.distance == G * pace
    assert mac.ii.constraints["recurrence"] <= 1, mac.ii.detail
    ports = {p.array: p for p in mac.spec.ports}
    assert ports["sm_s"].reads == ci * -(-P // ci) and ports["sm_s"].spread == ci     # ATTN_P consecutive columns
    assert ports["exp2_lane"].reads == 2 * ports["exp2_lane"].spread == 4 * P   # both ports of both banks
    assert Mults(P, cfg.precision.softmax_sum.bits, cfg.precision.exp.bits) in mac.spec.mults
    assert "exp" in mac.spec.units
    probs = le.loops["PROBS"]
    assert probs.ii.ii == 1, probs.ii.detail
    pp = {p.array: p for p in probs.spec.ports}
    assert pp["S"].reads == PL + fold and pp["big"].writes == PL + pad and pp["S"].per_bank == pp["big"].per_bank == 1
    assert ("p_tail" in pp) == (fold > 0)
    (hand,) = [r for r in probs.spec.recurrences if r.ops == RECIP_HANDOFF_OPS]
    assert hand.distance == lead * C
    assert pp["exp2_prob"].reads == pp["exp2_prob"].spread == 2 * (PL + fold)
    assert Mults(PL + fold, cfg.precision.exp.bits, cfg.precision.softmax_inv.bits) in probs.spec.mults
    # ... and in the generated source
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    hdr = render(cfg, ["include/edgemoe_config.h"])["include/edgemoe_config.h"]
    for const, v in (("ATTN_P", P), ("ATTN_GROUPS", G), ("SCORE_COLS", plan.score_cols), ("PROB_COL", plan.prob_col),
                     ("K_PAD", K), ("AV_FOLD", fold), ("PROB_LANES", PL), ("PROB_LEAD", lead), ("SM_PACE", pace)):
        assert f"static const int {const} = {v};" in hdr, const
    assert f"PROB_CHUNKS = {C}, PROB_PAD_LANES = {pad};" in hdr
    assert "static const int SM_STATE_GROUPS = HEADS * ATTN_GROUPS;" in hdr
    const, specs = kernel_constants(cfg, plan), {s.label: s for s in kernel_loops(cfg, plan)}
    for lab in ("SCORES_LOOP", "AV_LOOP", "PROBS", "PROB_U", "TAP_SM"):
        assert eval(_loop_bound(src, lab), {}, const) == eval(specs[lab].trip, {}, const), lab  # noqa: S307
    assert "SCORES_AV" not in src and "HEAD_COPY" not in src and "HEADS_LOOP" not in src
    body = src[src.index("SCORES_LOOP: for"):src.index("if (attn_tap) return;")]
    calls_src = [" ".join(c.split()) for c in re.findall(r"compute_unit\(([^;]*)\);", body)]
    assert len(calls_src) == 3       # the score pass, the one-head online softmax, the A*V
    scores, alone, av = calls_src
    assert body.index("softmax(logits, big, p_tail, sm_max, sm_sum, hd, attn_tap,") > body.index("AV_LOOP: for")
    # (in, rows, k_dim, ...): the A*V call's k_dim is K_PAD, K_PAD / CU_IN chunks a row
    assert scores.startswith("big, N_TOKENS, HEAD_DIM,") and ", SCORE_COLS, -1, 0, OUT_ACT, CU_SCORES, hbuf," in scores
    assert scores.split("x_sum, ")[1].startswith("W_KEYS, hd * HEAD_DIM, DIM + hd * HEAD_DIM, hd * SCORE_COLS, logits,")
    assert scores.endswith("sm_max, sm_sum, hd == 0, hd, hd == HEADS - 1 && HEADS > 1 ? 1 : 0, p_tail, hd > 0, nt")
    assert alone.startswith("big, 0, ") and alone.endswith("logits, sm_max, sm_sum, false, 1, 1, p_tail, false, NO_NEXT")
    assert av.startswith("big, N_TOKENS, K_PAD,") and ", OUT_ACT, CU_STORE, tbuf," in av
    assert av.split("x_sum, ")[1].startswith("W_VALUES, PROB_COL,")
    assert av.endswith("logits, sm_max, sm_sum, false, HEADS, hd + 2 < HEADS ? hd + 2 : HEADS, p_tail, HEADS > 1, nt")
    # the next call's first tile: the next head's key rows, then the first head's value columns, then the next's
    assert "next_tile(W_KEYS, DIM + (hd + 1) * HEAD_DIM, HEAD_DIM, SCORE_COLS)" in body
    assert "HEADS > 1 ? next_tile(W_VALUES, 2 * DIM, K_PAD, HEAD_DIM) : NO_NEXT" in body
    assert "next_tile(W_VALUES, 2 * DIM + (hd + 1) * HEAD_DIM, K_PAD, HEAD_DIM)" in body
    assert [c.pre for c in calls] == [H > 1 and i > 0 for i in range(len(calls))]
    assert [c.prefetch for c in calls[:-1]] == [c.kind for c in calls[1:]] if H > 1 else not any(
        c.prefetch for c in calls[:-1])
    assert calls[-1].prefetch == ("proj" if plan.weight_rows_aligned else "")
    assert "next_layer(OFF_PROJ_W[b], OFF_PROJ_B[b], DIM, DIM)" in body
    sm_src = src[src.index("SM_LANES: for"):src.index("// the call's end")]
    mac_src = src[src.index("MAC: for"):src.index("SM_LANES: for")]
    assert f"#pragma HLS DEPENDENCE variable=sm_max inter distance={G * pace} true" in mac_src
    assert f"#pragma HLS DEPENDENCE variable=sm_sum inter distance={G * pace} true" in mac_src
    assert "sm_s[sg * ATTN_P + p][sm_c0 + ss + p]" in sm_src and "exp2_lane[p]" in sm_src
    assert "sm_max[p][sm_g0 + sg] = m;" in sm_src and "sm_c0 += SCORE_COLS;" in sm_src
    assert "run = tile || r < mrows || po < CU_OUT || sm_h < sm_need || (pf && !unpacked);" in src
    assert "wide_t(lw * alpha)" in src and "const softmax_sum_t lw = l;" in src   # the narrow product
    probs_src = src[src.index("PROBS: for"):]
    assert "exp2_prob[u]" in probs_src and "big[i][PROB_COL + j] = pr;" in probs_src
    assert "wide_t(S[i][c0 + j]) - mx" in probs_src
    assert f"#pragma HLS DEPENDENCE variable=row_inv inter distance={lead * C} true" in probs_src
    assert "row_inv[lp][lg] = reciprocal(row_sum[lp][g0 + lg], SOFTMAX_SUM_FRAC);" in probs_src
    assert ("PROB_PAD: for" in probs_src) == (pad > 0)
    assert ("FOLD_U: for" in probs_src) == ("FOLD_J: for" in mac_src) == (fold > 0)
    assert f"#pragma HLS ARRAY_PARTITION variable=logits cyclic factor={ci} dim=2" in src
    for a in ("sm_max", "sm_sum", "row_inv", "exp2_lane", "exp2_prob"):
        assert f"variable={a} complete dim=1" in src, a


@pytest.mark.parametrize("name,sets", [(TINY, []), (ZCU, []), (MICRO, []), (TINY, ["hardware.cu_out=32"]),
                                       (MICRO, UNALIGNED)])
def test_score_stores_share_the_score_banks_with_the_side_job(name, sets):
    """CU_SCORES stores a row's CU_OUT scores (consecutive columns of the head's in sm_s, cyclic CU_IN) in its last MAC
    iteration, in the same pipeline iteration as the side job's ATTN_P reads of sm_s (the tool cannot tell that
    they never meet a word: the DEPENDENCE pragmas say so): a bank of sm_s takes ceil(CU_OUT / CU_IN) + ceil(ATTN_P
    / CU_IN) accesses, two ports a bank; out takes the epilogue's EPI_LANES writes only.  While CU_OUT and ATTN_P
    are at most CU_IN (every preset) the MAC loop meets II 1; a unit wider in CU_OUT than in CU_IN (32 x 16, the
    unaligned configs' 5 x 4) runs every layer's MACs at II 2 as written."""
    cfg = load_config(name, sets)
    plan = KernelPlan.from_config(cfg)
    h = cfg.hardware
    ci, co, E, P = h.cu_in, h.cu_out, plan.epilogue_lanes, h.attn_parallel
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    body = src[src.index("MAC: for"):src.index("// One linear layer on the compute unit")]
    assert "sm_s[r][out_c0 + t * CU_OUT + o] = to_attn_score(" in body and "out[dr][out_c0 + col] = y;" in body
    assert "out[r][" not in body
    assert body.index("MAC_O: for") < body.index("sm_s[r][out_c0 + t * CU_OUT + o]")    # CU_OUT stores a cycle
    assert "const wide_t sc = sm_s[sg * ATTN_P + p][sm_c0 + ss + p];" in body            # ATTN_P reads a cycle
    for pragma in (f"#pragma HLS DEPENDENCE variable=sm_s inter distance={plan.sm_lead_gap} true",
                   "#pragma HLS DEPENDENCE variable=sm_s intra false"):
        assert pragma in body
    assert plan.sm_lead_gap >= SM_LEAD_GAP
    mac = loop_estimate(cfg, None).loops["MAC"]
    ports = {p.array: p for p in mac.spec.ports}
    assert ports["out"].spread == ci and ports["out"].per_bank == -(-E // ci)
    assert ports["sm_s"].spread == ci and ports["sm_s"].per_bank == -(-co // ci) + -(-P // ci)
    assert mac.ii.constraints["bank ports"] == mac_out_ii(cfg, plan)
    if co <= ci and E <= ci and P <= ci:
        assert mac.ii.ii == 1 and mac.ii.binding == "pragma II met", mac.ii.detail
    else:
        assert mac.ii.ii == 2 and mac.ii.binding == "bank ports", mac.ii.detail


def test_attention_on_the_zcu102_preset():
    """On the ZCU102 preset a block's attention is every head's score pass, then per head its probabilities (PROBS,
    the 1/sums in it) and its A*V (2 k-chunks a row: key 128 folded into the second); every pipeline at II 1:
    their iterations, a depth per entry and the calls, nothing loaded. The online softmax of the three heads
    (N_TOKENS x ATTN_GROUPS steps each) runs beside the calls: it costs a block only the iterations the calls run
    past their own passes, so a block's attention is within a few of those of its two products and the
    probabilities, and more than two online softmaxes shorter than the heads run one after the other.  The
    intended schedule agrees within 3% (it leaves out the calls' overheads)."""
    cfg = load_config(ZCU)
    m, plan = cfg.model, KernelPlan.from_config(cfg)
    n, G, H = m.num_tokens, plan.attn_groups, m.num_heads
    le = loop_estimate(cfg, None)
    loops, f = le.loops, le.functions
    for lab in ("MAC", "PROBS"):
        assert loops[lab].ii.ii == 1, (lab, loops[lab].ii.detail)
    assert plan.sm_pace == 1 and plan.av_fold == 1 and plan.k_pad == 2 * cfg.hardware.cu_in
    # the side job takes a score pass's own head two tiles in: the fewest that keep its reads SM_LEAD_GAP
    # iterations or more behind the stores (a score is read no sooner than the next call otherwise)
    assert plan.sm_lead_tiles == 2 and plan._own_head_gap(2) >= SM_LEAD_GAP > plan._own_head_gap(1)
    assert [c.side_steps for c in plan.attention_calls()][0] > 0
    probs = (n + plan.prob_lead) * plan.prob_chunks
    sm = n * G
    sc, av = sum(plan.attention_passes("scores", n)), sum(plan.attention_passes("av", n))
    calls = plan.attention_calls()
    iters = sum(c.iterations for c in calls)
    assert iters == sum(c.passes for c in calls)   # the online softmaxes all hidden: no call runs past its passes
    per_block = (iters + len(calls) * loops["MAC"].ii.depth + H * (probs + loops["PROBS"].ii.depth)
                 + len(calls) * (f["compute_unit"].latency + f["load_tiles"].latency + f["compute_tiles"].latency)
                 + H * f["softmax"].latency + H * (loops["SCORES_LOOP"].ii.ii + loops["AV_LOOP"].ii.ii))
    attn = sum(c for (step, _), c in le.by_step().items() if step == "attn") / m.depth
    assert attn == pytest.approx(per_block)
    serial = H * (sc + sm + probs + av)
    assert serial - attn > 2 * sm
    est = estimate(cfg)
    assert est.step_cycles("attn", field_="cycles_intended") == pytest.approx(attn * m.depth, rel=0.03)
