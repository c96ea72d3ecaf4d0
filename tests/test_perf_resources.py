"""The resource model counts what the kernel instantiates (edgemoe/perf/resources.py).

DSPs per multiply from operand widths, BRAM from the buffer shapes, the shared compute unit once, the
attention's unrolled multipliers per query slot, and the fit verdict against the board.
"""
from __future__ import annotations

import math
import re

import pytest

from edgemoe.boards import BOARDS
from edgemoe.hls.plan import KernelPlan
from edgemoe.hls.writer import render
from edgemoe.loading import load_config
from edgemoe.perf.primitives import bram36_for, dsp_per_mult
from edgemoe.perf.resources import (ALLOCATION_LIMITS, CALL_SITES, DEFAULT_CAP, RESOURCES, WIDE_BITS, cast_bits,
                                    estimate_resources, function_instances, table_bits)

TINY = "m3vit-tiny-cityscapes"
MICRO = "m3vit-micro"
#: tiles that start inside a bus word, CU_OUT a power of two
UNALIGNED_POW2 = ["model.embed_dim=40", "model.num_heads=2", "model.expert_hidden=80", "hardware.cu_in=4",
                  "hardware.cu_out=4"]


def cfg_of(name=TINY, *sets):
    return load_config(name, list(sets))


def item(res, where: str, what: str):
    """The one item at ``where`` whose name starts with ``what``."""
    found = [it for it in res.items if it.where == where and it.what.startswith(what)]
    assert len(found) == 1, (where, what, [(it.where, it.what) for it in res.items])
    return found[0]


# --- DSPs per multiply -----------------------------------------------------------------------------

def test_dsp_per_multiply_from_operand_widths():
    assert dsp_per_mult(27, 18) == 1                   # one DSP48E2: signed 27 x 18
    assert dsp_per_mult(32, 16) == 2
    assert dsp_per_mult(24, 24) == 2
    assert dsp_per_mult(32, 32) == 4
    assert dsp_per_mult(64, 64) > dsp_per_mult(32, 32) > dsp_per_mult(32, 16)
    assert dsp_per_mult(18, 17, b_signed=False) == 1   # an unsigned 17-bit operand fits the 18-bit port


def test_wide_t_operands_are_64_bits_unless_the_type_wraps():
    sat = cfg_of(TINY)
    wrap = cfg_of(TINY, "precision.exp=ufixed<18,1,RND,WRAP>")
    assert cast_bits(sat.precision.exp) == (WIDE_BITS, True)
    assert cast_bits(wrap.precision.exp) == (18, False)
    a, b = estimate_resources(sat), estimate_resources(wrap)
    la, lb = (item(r, "attention/SCORES_AV (scores)", "online_step: l * alpha") for r in (a, b))
    P = sat.hardware.attn_parallel
    assert la.count == P and la.dsp == P * dsp_per_mult(64, 64)          # wide_t x wide_t
    assert lb.dsp == P * dsp_per_mult(64, 18, b_signed=False) < la.dsp


def test_multipliers_follow_the_kernel_types():
    cfg = cfg_of(TINY)
    plan = KernelPlan.from_config(cfg)
    p = cfg.precision
    res = estimate_resources(cfg)
    mac = item(res, "compute_tiles/MAC", "MAC:")
    assert mac.dsp == mac.count * dsp_per_mult(plan.cu_word_bits, plan.matrix_word_bits)
    # q and k are copied to head-local qkv_t arrays: the score products are qkv_t x qkv_t (24 x 24 bits in
    # w16a32: 2 DSPs; 16 x 16 in w16a16: one), not the 32-bit cu_word_t containers (4)
    score = item(res, "attention/SCORES_AV (scores)", "score:")
    assert score.dsp == score.count * dsp_per_mult(p.qkv.bits, p.qkv.bits) == score.count * 2
    s16 = item(estimate_resources(cfg_of(TINY, "precision.profile=w16a16")), "attention/SCORES_AV (scores)", "score:")
    assert s16.dsp == s16.count
    # y * score in FINISH: cu_word_t x gate_score_t, not wide_t x wide_t; one per epilogue lane
    fin = item(res, "compute_tiles/FINISH", "FINISH: wide_t(y) * wide_t(row_score[r])")
    assert fin.count == plan.epilogue_lanes
    assert fin.dsp == fin.count * dsp_per_mult(plan.cu_word_bits, p.gate_score.bits, b_signed=p.gate_score.signed)
    # LayerNorm: its three products once per CAST_LANES lane and call site, at the operands' widths as written
    ln = function_instances()["layernorm"] * plan.cast_lanes    # one instance for both call sites
    var = item(res, "layernorm/LN_STEPS", "LN_VAR: wide_t(c[d]) * wide_t(c[d])")
    assert var.count == ln and var.dsp == ln * dsp_per_mult(p.ln_centered.bits, p.ln_centered.bits)
    norm = item(res, "layernorm/LN_STEPS", "LN_OUT: wide_t(c[d]) * inv_std")
    assert norm.count == ln and norm.dsp == ln * dsp_per_mult(p.ln_centered.bits, WIDE_BITS)
    aff = item(res, "layernorm/LN_STEPS", "LN_OUT: n * wide_t(gamma[d])")
    assert aff.count == ln and aff.dsp == ln * dsp_per_mult(WIDE_BITS, plan.weight_word_bits)
    # the routing's products at its narrow types: the chosen experts' exp_t x softmax_inv_t, one per top-k entry
    # (not wide_t x wide_t), and exp_neg's x * LOG2E_RAW on a difference of two gate_logit_t
    pick = item(res, "route_tokens/GATE_PICK", "GATE_PICK: wide_t(xj) * wide_t(inv)")
    assert pick.count == cfg.model.top_k
    assert pick.dsp == pick.count * dsp_per_mult(p.exp.bits, p.softmax_inv.bits, p.exp.signed, p.softmax_inv.signed)
    assert pick.dsp < pick.count * dsp_per_mult(64, 64)
    assert item(res, "route_tokens/GATE", "exp_neg: x * LOG2E_RAW").shape.startswith(f"{p.gate_logit.bits + 1}s x")
    # 16-bit words: one DSP per MAC instead of two
    r16 = estimate_resources(cfg_of(TINY, "precision.profile=w16a16"))
    assert item(r16, "compute_tiles/MAC", "MAC:").dsp == mac.count == mac.dsp // 2


# --- memories from the buffer shapes ---------------------------------------------------------------

def test_bram_per_bank_from_width_and_depth():
    assert bram36_for(1024, 36) == 1 and bram36_for(2048, 18) == 1 and bram36_for(4096, 9) == 1
    assert bram36_for(512, 72) == 1
    assert bram36_for(512, 36) == 0.5                  # one BRAM18
    assert bram36_for(6192, 32) == 6.5                 # 13 BRAM18 of 512 x 36
    assert bram36_for(1024, 37) == 1.5                 # one bit too wide: a BRAM18 more


def test_row_buffers_are_the_kernels_shapes():
    cfg = cfg_of(TINY)
    plan = KernelPlan.from_config(cfg)
    n, ci, cu, rw = cfg.model.num_tokens, cfg.hardware.cu_in, plan.cu_word_bits, plan.row_words
    res = estimate_resources(cfg)
    x = item(res, "run_image", "rows_t x[")
    assert x.shape.startswith(f"{ci} banks x {n * rw // ci} x {cu}b")
    assert x.bram36 == ci * bram36_for(n * rw // ci, cu)
    # logits is not partitioned in the template: one bank of the whole buffer
    lg = item(res, "run_image", "rows_t logits[")
    assert lg.shape.startswith(f"{n * rw} x {cu}b") and lg.bram36 == bram36_for(n * rw, cu)
    # lcm(EPI_LANES, EW_LANES) banks: the epilogue's read-modify-writes, the clear's EW_LANES words
    acc = item(res, "run_image", "moe_acc")
    lanes = plan.moe_acc_banks
    assert lanes % plan.epilogue_lanes == 0 and lanes % plan.elementwise_lanes == 0
    assert acc.bram36 == lanes * bram36_for(-(-n * cfg.model.embed_dim // lanes), 64)
    # a bank of at most 2 Kbit is not a block RAM: the LayerNorm's gamma / beta banks; the routing's q_count,
    # which its pipeline increments at any expert, is registers
    gb = item(res, "layernorm", "gamma[DIM], beta[DIM]")
    assert gb.bram36 == 0 and gb.lut > 0 and "LUTRAM" in gb.shape
    qc = item(res, "run_image", "q_count[EXPERTS]")
    assert qc.bram36 == qc.lut == 0 and qc.ff == cfg.model.num_experts * 16
    # the ping-pong weight tile: CU_OUT x CU_IN banks of two tiles' ROW_WORDS / CU_IN matrix words (the half
    # an address bit), and two tiles' biases in registers
    w = item(res, "compute_tiles", "w[2][CU_OUT][ROW_WORDS]")
    assert w.shape.startswith(f"{cfg.hardware.cu_out * ci} banks x {2 * rw // ci} x {plan.matrix_word_bits}b")
    assert w.lut == cfg.hardware.cu_out * ci * math.ceil(2 * rw // ci / 64) * plan.matrix_word_bits * 2
    # rows of whole bus words: the layer's biases in banks; tiles inside bus words: two tiles' in registers
    assert plan.weight_rows_aligned
    b = item(res, "compute_tiles", "b[MAX_N_OUT]")
    assert b.shape.startswith(f"{plan.layer_bias_banks} banks x {-(-plan.max_n_out // plan.layer_bias_banks)} x")
    unal = cfg_of(MICRO, "model.embed_dim=40", "model.num_heads=2", "model.expert_hidden=80", "hardware.cu_in=4",
                  "hardware.cu_out=5")
    b2 = item(estimate_resources(unal), "compute_tiles", "b[2][CU_OUT]")
    assert b2.ff == 2 * 5 * KernelPlan.from_config(unal).weight_word_bits and b2.lut == 0


@pytest.mark.parametrize("name,sets", [("m3vit-tiny-zcu102", []), (MICRO, ["hardware.cu_in=4"])])
def test_the_edges_are_the_kernels(name, sets):
    """The embedding's position table is N x D weight words in WORDS_PER_BEAT banks (a bus word per cycle), its
    casts CAST_LANES lanes, one read_words (the cls token); the gather's IMAGE_LANES pixels go to fixed banks."""
    cfg = cfg_of(name, *sets)
    plan = KernelPlan.from_config(cfg)
    n, d, wpb = cfg.model.num_tokens, cfg.model.embed_dim, plan.words_per_beat
    res = estimate_resources(cfg)
    pos = item(res, "run_image/EMBED_POS", "pos[N_TOKENS * DIM]")
    assert pos.shape.startswith(f"{wpb} banks x {-(-n * d // wpb)} x {plan.weight_word_bits}b")
    if name == "m3vit-tiny-zcu102":   # 32 banks of 774 x 16b: a BRAM18 each (micro's small banks are LUTRAM)
        assert pos.bram36 == wpb * bram36_for(-(-n * d // wpb), plan.weight_word_bits) == 16
    assert item(res, "run_image/EMBED_D", "EMBED_D: add + to_act").count == plan.cast_lanes
    assert item(res, "run_image (read_words)", "read_words").count == 1
    assert item(res, "run_image/PATCH_PIX", "PATCH_PIX").shape.startswith(f"{plan.image_lanes} lanes")
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert "static weight_word_t pos[N_TOKENS * DIM];" in src
    assert f"#pragma HLS ARRAY_PARTITION variable=pos cyclic factor={wpb}" in src
    assert "OFF_CLS, DIM, cls);" in src and "OFF_POS + r * DIM" not in src   # read_words for the cls token only


def test_weight_fifo_holds_one_tile_of_bus_words():
    cfg = cfg_of(TINY)
    plan = KernelPlan.from_config(cfg)
    res = estimate_resources(cfg)
    fifo = item(res, "compute_unit (DATAFLOW)", "beats")
    assert fifo.kind == "FIFO" and fifo.count == 1
    assert fifo.shape.startswith(f"{plan.tile_beats} x {cfg.hardware.axi_width}b")
    assert fifo.bram36 == bram36_for(plan.tile_beats, cfg.hardware.axi_width) > 0
    # twice the outputs per tile: twice the bus words; 8-bit matrices: half
    wide = estimate_resources(cfg_of(TINY, "hardware.cu_out=32"))
    narrow = estimate_resources(cfg_of(TINY, "precision.profile=w8a16"))
    assert item(wide, "compute_unit (DATAFLOW)", "beats").bram36 > fifo.bram36
    assert item(narrow, "compute_unit (DATAFLOW)", "beats").bram36 < fifo.bram36
    # a stream stays in block RAM where the board has URAM
    u280 = estimate_resources(cfg_of(TINY, "hardware.board=u280"))
    assert item(u280, "compute_unit (DATAFLOW)", "beats").uram == 0
    # the unpacking, rows of whole bus words (the presets): field j goes to column k0 + j of row o0, so each
    # tile bank takes a row's write enable and no field select; 8-bit weights on a 16-wide unit: two steps of
    # 16 of a bus word's 32 fields
    assert plan.weight_rows_aligned and plan.unpack_steps == 1
    en = item(res, "compute_tiles/UNPACK_W_J", "UNPACK_W: row write enables")
    assert en.count == cfg.hardware.cu_in * cfg.hardware.cu_out
    assert not [i for i in res.items if i.what.startswith(("UNPACK_W: field", "UNPACK_W: (o, k)"))]
    zcu = cfg_of("m3vit-tiny-zcu102", "hardware.cu_in=16", "hardware.cu_out=32", "hardware.axi_width=256",
                 "hardware.weight_lanes=1")
    zplan = KernelPlan.from_config(zcu)
    zres = estimate_resources(zcu)
    assert (zplan.unpack_steps, zplan.unpack_fields, zplan.matrix_per_beat) == (2, 16, 32)
    assert item(zres, "compute_tiles/UNPACK_W_J", "UNPACK_W: the step's fields").count == 16
    # rows that start inside a bus word: every tile bank's write port selects among a step's fields
    unal = cfg_of(MICRO, "model.embed_dim=40", "model.num_heads=2", "model.expert_hidden=80", "hardware.cu_in=4",
                  "hardware.cu_out=5")
    uplan = KernelPlan.from_config(unal)
    assert not uplan.weight_rows_aligned
    sel = item(estimate_resources(unal), "compute_tiles/UNPACK_W_J", "UNPACK_W: field")
    assert sel.count == 4 * 5 and sel.shape.endswith(f"x {uplan.unpack_fields} fields") and sel.lut > 0
    assert sel.lut > 10 * item(estimate_resources(cfg_of(MICRO)), "compute_tiles/UNPACK_W_J",
                               "UNPACK_W: row write enables").lut
    # one MAC pipeline over a layer's passes: the pass's counters step by constants, so compute_tiles has no
    # span_of multiplies and no tile count; a tile's weight elements (CU_OUT * k_dim, once per call) only where
    # tiles start inside bus words, a multiplier only where CU_OUT (5 here) is not a shift
    ures = estimate_resources(unal)
    for r, p in ((res, plan), (ures, uplan)):
        ct = [i for i in r.items if i.where.startswith("compute_tiles")]
        assert not [i for i in ct if "span_of" in i.what or i.what.startswith("tiles =")]
        n = item(r, "compute_tiles/MAC", "the pass's counters")
        assert n.count == 1 and n.lut == (4 if p.weight_rows_aligned else 6) * 32
    assert item(ures, "compute_tiles", "tile_elems = CU_OUT * k_dim").dsp > 0
    assert not [i for i in res.items if i.what.startswith("tile_elems")]
    assert not [i for i in estimate_resources(cfg_of(MICRO, *UNALIGNED_POW2)).items
                if i.what.startswith("tile_elems")]


def test_tables_are_roms_of_their_entries_width():
    cfg = cfg_of(TINY)
    plan = KernelPlan.from_config(cfg)
    tb = table_bits(cfg)
    assert all(16 <= b <= 24 for b in tb.values()), tb        # declared long long, entries ~20 bits
    res = estimate_resources(cfg)
    rom = item(res, "compute_tiles/FINISH", "GELU_TABLE")
    assert rom.kind == "ROM" and rom.shape.startswith(f"{plan.table_entries['gelu']} x {tb['gelu']}b")
    # one copy in each function instance that reads it; the attention's lanes read copies of their own
    exp_roms = [it for it in res.items if it.kind == "ROM" and it.what == "EXP2_TABLE"]
    assert {it.where.split()[0] for it in exp_roms} == {"route_tokens"}
    # the scores' two exps take both ports of both banks of a lane's exp2_lane: A*V's exp, beside them in
    # SCORES_AV, reads copies of its own
    for where, what in (("attention/SCORES_AV (scores)", "exp2_lane"), ("attention/SCORES_AV (A*V)", "exp2_av")):
        lanes = item(res, where, what)
        assert lanes.kind == "ROM" and lanes.count == cfg.hardware.attn_parallel


# --- what is shared and what is unrolled -----------------------------------------------------------

def test_shared_compute_unit_is_counted_once():
    inst = function_instances()
    assert ALLOCATION_LIMITS["compute_unit"] == 1 and inst["compute_unit"] == 1
    assert inst["compute_tiles"] == inst["load_tiles"] == 1                # its two DATAFLOW processes
    assert sum(CALL_SITES["compute_unit"].values()) > 1           # many layers call it
    cfg = cfg_of(TINY)
    shallow = cfg_of(TINY, "model.depth=4", "model.moe_blocks=[1,3]")
    for c in (cfg, shallow):
        res = estimate_resources(c)
        mac = item(res, "compute_tiles/MAC", "MAC:")
        assert mac.count == c.hardware.cu_in * c.hardware.cu_out
    assert (item(estimate_resources(cfg), "compute_tiles/MAC", "MAC:").dsp
            == item(estimate_resources(shallow), "compute_tiles/MAC", "MAC:").dsp)
    # a function without ALLOCATION: one instance per call site; the LayerNorm has one
    assert inst["attention"] == sum(CALL_SITES["attention"].values())
    assert ALLOCATION_LIMITS["layernorm"] == inst["layernorm"] == 1 < sum(CALL_SITES["layernorm"].values())
    assert "residual_add" not in inst     # the residual adds are in the compute unit's epilogue and MOE_OUT_D
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    for f, n in ALLOCATION_LIMITS.items():
        assert f"#pragma HLS ALLOCATION function instances={f} limit={n}" in src, f


@pytest.mark.parametrize("name,sets", [(TINY, []), ("m3vit-tiny-zcu102", []), (MICRO, ["hardware.cu_in=4"])])
def test_residual_adds_are_epilogue_lanes(name, sets):
    """The residual adds have no function of their own: an add, a cast and a lane-sum adder per epilogue lane
    in the compute unit (proj, fc2) and per CAST_LANES lane in MOE_OUT_D (the MoE blocks), no multiplier."""
    cfg = cfg_of(name, *sets)
    plan = KernelPlan.from_config(cfg)
    res = estimate_resources(cfg)
    assert not [it for it in res.items if "residual_add" in it.where or "residual_add" in it.what]
    fin = item(res, "compute_tiles/FINISH", "FINISH (CU_RESID): x + y")
    assert fin.count == plan.epilogue_lanes and fin.dsp == 0 and fin.lut > 0
    out = item(res, "run_image/MOE_OUT_D", "MOE_OUT_D: to_act(moe_acc), x + y")
    assert out.count == plan.cast_lanes and out.dsp == 0
    assert item(res, "compute_tiles/MAC", "FINISH (CU_RESID): the row's running sum").count == 1


def test_attention_multipliers_are_head_dim_per_slot():
    cfg = cfg_of(TINY)
    hd, P = cfg.model.head_dim, cfg.hardware.attn_parallel
    res = estimate_resources(cfg)
    assert item(res, "attention/SCORES_AV (scores)", "score:").count == P * hd
    assert not [it for it in res.items if it.where == "attention/SCORES_AV (A*V)" and it.what.startswith("score")]
    # A*V reads the stored scores: per lane (query slot) one probability and HEAD_DIM products
    assert item(res, "attention/SCORES_AV (A*V)", "AV_D:").count == P * hd
    assert item(res, "attention/SCORES_AV (A*V)", "pr = ").count == P
    assert item(res, "attention/SCORES_AV (A*V)", "exp_neg: x * LOG2E_RAW").count == P
    wide = estimate_resources(cfg_of(TINY, "hardware.attn_parallel=8"))
    for where, what in (("attention/SCORES_AV (scores)", "score:"), ("attention/SCORES_AV (A*V)", "AV_D:")):
        s4, s8 = item(res, where, what), item(wide, where, what)
        assert s8.count == 8 * hd and s8.dsp - s4.dsp == 4 * hd * (s4.dsp // s4.count)
    # the accumulators and their staging copy (the finished group's rows go out while the next accumulates):
    # ATTN_P x HEAD_DIM registers each of the accumulator type (mac_t)
    for what in ("acc[ATTN_P][HEAD_DIM]", "stage[ATTN_P][HEAD_DIM]"):
        acc = item(res, "attention", what)
        assert acc.shape.startswith(f"{P * hd} banks x 1 x {cfg.precision.accum.bits}b -> registers")


def test_attention_buffers_hold_two_heads():
    """SCORES_AV writes head t's scores while A*V reads head t - 1's: S and vh hold two heads (the half in a
    bank's address, not more banks), the (max, 1/sum) A*V reads are arrays of their own (SM_FINAL fills them),
    and the preset still fits with them."""
    cfg = cfg_of("m3vit-tiny-zcu102")
    m, P, G = cfg.model, cfg.hardware.attn_parallel, KernelPlan.from_config(cfg).attn_groups
    res = estimate_resources(cfg)
    s = item(res, "attention", "S[ATTN_P][2][ATTN_GROUPS][N_TOKENS]")
    assert s.shape.startswith(f"{P} banks x {2 * G * m.num_tokens} x ")
    vh = item(res, "attention", "vh[2][N_TOKENS][HEAD_DIM]")
    assert vh.shape.startswith(f"{m.head_dim} banks x {2 * m.num_tokens} x ")
    assert item(res, "attention", "av_max, av_inv[ATTN_P][ATTN_GROUPS]").shape.startswith(f"{P} banks x {G} x ")
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert "static attn_score_t S[ATTN_P][2][ATTN_GROUPS][N_TOKENS];" in src
    assert "vh[2][N_TOKENS][HEAD_DIM];" in src and "variable=vh complete dim=3" in src
    assert "variable=S complete dim=1" in src
    assert res.fit and all(res.utilisation[k] <= DEFAULT_CAP for k in RESOURCES), res.verdict


@pytest.mark.parametrize("change,what,where", [
    ("hardware.cu_in=32", "MAC:", "compute_tiles/MAC"),
    ("hardware.cu_out=32", "MAC:", "compute_tiles/MAC"),
    ("hardware.cu_out=32", "UNPACK_W: row write enables", "compute_tiles/UNPACK_W_J"),
    ("hardware.attn_parallel=8", "score:", "attention/SCORES_AV (scores)"),
    ("model.num_heads=2", "AV_D:", "attention/SCORES_AV (A*V)"),         # head_dim 96: more products per key
    ("hardware.attn_parallel=8", "AV_D:", "attention/SCORES_AV (A*V)"),  # more query lanes per key
])
def test_a_config_change_that_should_raise_a_count_does(change, what, where):
    base = estimate_resources(cfg_of(TINY))
    more = estimate_resources(cfg_of(TINY, change))
    b, m = item(base, where, what), item(more, where, what)
    assert m.count > b.count and (m.dsp > b.dsp if b.dsp else m.lut > b.lut)
    assert more.totals["dsp"] > base.totals["dsp"] and more.totals["lut"] > base.totals["lut"]


def test_batch_with_shared_weights_copies_the_row_buffers():
    """As written the kernel runs a call's images one after the other in one set of buffers: the batch changes
    no resource.  The intended schedule's weight sharing (share_weights) would need every image's rows at once."""
    cfg = cfg_of(TINY)
    one, four = estimate_resources(cfg, "onchip", 1), estimate_resources(cfg, "onchip", 4)
    assert four.totals == one.totals and not four.share_weights
    shared = estimate_resources(cfg, "onchip", 4, share_weights=True)
    assert item(shared, "run_image", "rows_t x[").count == 4 and shared.share_weights
    assert shared.totals["bram36"] > 3 * one.totals["bram36"] * 0.9
    assert shared.totals["dsp"] == one.totals["dsp"]
    # the ZCU102 preset fits as written at batch 8; sharing on chip would not (the BRAM binds)
    zcu = cfg_of("m3vit-tiny-zcu102")
    assert estimate_resources(zcu, "onchip", 8).fits()
    assert estimate_resources(zcu, "onchip", 8, share_weights=True).violations() == ["bram36"]


# --- the fit verdict -------------------------------------------------------------------------------

def test_verdict_follows_the_utilisation():
    for cfg in (cfg_of(TINY), cfg_of(MICRO), cfg_of(TINY, "hardware.board=u280")):
        res = estimate_resources(cfg)
        u = res.utilisation
        assert res.fit == all(u[k] <= DEFAULT_CAP for k in RESOURCES)
        assert res.binding == max(RESOURCES, key=lambda k: u[k])
        assert set(res.violations()) == {k for k in RESOURCES if u[k] > DEFAULT_CAP}
        assert ("does not fit" in res.verdict) == (not res.fit)
        text = res.table()
        assert f"verdict: {res.verdict}" in text and "utilisation" in text


def test_tiny_preset_on_the_zcu102():
    """The tiny preset fits the ZCU102 at 80 %: the attention computes each score once (ATTN_P x HEAD_DIM
    products of 24-bit qkv_t words, 2 DSPs each, in SCORES) and A*V reads the stored scores (ATTN_P lanes of
    HEAD_DIM products, no recomputed score), beside the compute unit's 16 x 16 32 x 16-bit MACs (2 each).
    The head's q and k rows are LUTRAM (ATTN_P x HEAD_DIM banks, so SCORES reads ATTN_P rows of each per
    cycle), v and the stored scores block RAM; one LayerNorm serves a block's two calls.
    The rough LUT figure and the block RAM (two heads' scores and v rows, the position table) are the closest
    to the cap, within a few points of each other."""
    cfg = cfg_of(TINY)
    res = estimate_resources(cfg)
    print(res.table())
    hd, P, board = cfg.model.head_dim, cfg.hardware.attn_parallel, BOARDS["zcu102"]
    qb = cfg.precision.qkv.bits
    core = (16 * 16 * dsp_per_mult(32, 16) + P * hd * dsp_per_mult(qb, qb)
            + P * hd * dsp_per_mult(cfg.precision.attn_prob.bits, qb, a_signed=False))
    assert res.totals["dsp"] > core > 0.4 * board.dsp
    attn = next(u for u in res.units if u.name == "attention")
    assert attn.dsp < 0.6 * 2 * P * hd * dsp_per_mult(32, 32)              # was 4 DSPs a product, each twice
    assert res.fit and res.utilisation["dsp"] < DEFAULT_CAP, res.verdict
    assert res.binding in ("lut", "bram36") and res.utilisation["bram36"] < DEFAULT_CAP
    assert abs(res.utilisation["lut"] - res.utilisation["bram36"]) < 0.05


def test_details_list_every_item():
    res = estimate_resources(cfg_of(MICRO))
    short, full = res.table(), res.table(details=True)
    assert all(it.what in full for it in res.items)
    assert len(full.splitlines()) > len(short.splitlines())
    d = res.as_dict()
    assert len(d["items"]) == len(res.items) and d["binding"] == res.binding and d["fits"] == res.fit
    for k in RESOURCES:
        assert math.isclose(res.totals[k], sum(getattr(it, k) for it in res.items), abs_tol=1)


# --- the model and the kernel cannot drift ------------------------------------------------------------

_FUNC = re.compile(r"^(?:static\s+)?[A-Za-z_][\w:<>, ]*?\b([A-Za-z_]\w*)\s*\(")


def source_functions(src: str) -> dict[str, list[str]]:
    """Function name -> its body's lines, for every function defined at column 0 of a generated source."""
    out, name = {}, None
    for line in src.splitlines():
        if line and not line[0].isspace() and not line.startswith(("}", "#", "//")):
            f = _FUNC.match(line)
            name = f.group(1) if f and not line.startswith(("typedef", "enum", "struct")) else None
            if name:
                out[name] = []
            continue
        if name:
            out[name].append(line.split("//")[0])
    return out


@pytest.mark.parametrize("name,sets", [(TINY, []), (MICRO, ["hardware.cu_in=4", "hardware.attn_parallel=1"])])
def test_call_sites_and_allocation_are_the_kernels(name, sets):
    """Every kernel function that is not inlined is in CALL_SITES with its callers and call counts, and the
    ALLOCATION limits are the template's."""
    cfg = load_config(name, sets)
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    funcs = source_functions(src)
    inlined = {f for f, body in funcs.items() if any(re.match(r"\s*#pragma HLS INLINE\s*$", ln) for ln in body)}
    called = {}
    for caller, body in funcs.items():
        for line in body:
            for callee in re.findall(r"\b([A-Za-z_]\w*)\s*\(", line):
                if callee in funcs and callee not in inlined and callee != caller:
                    called.setdefault(callee, {}).setdefault(caller, 0)
                    called[callee][caller] += 1
    assert called == CALL_SITES
    limits = {f: int(n) for f, n in re.findall(r"#pragma HLS ALLOCATION function instances=(\w+) limit=(\d+)", src)}
    assert limits == ALLOCATION_LIMITS
