"""The resource model counts what the kernel instantiates (edgemoe/perf/resources.py).

DSPs per multiply from operand widths, BRAM from the buffer shapes, the shared compute unit once (its MACs
sized for the widest operand pair of every pass it runs, the attention's two products included), the softmax's
lanes, and the fit verdict against the board.
"""
from __future__ import annotations

import math
import re
import shutil

import pytest

from edgemoe.boards import BOARDS
from edgemoe.hls.plan import KernelPlan
from edgemoe.hls.writer import render
from edgemoe.loading import load_config
from edgemoe.perf.primitives import LUTRAM_MAX_BITS, bram36_for, dsp_per_mult, lutram_luts
from edgemoe.perf.resources import (ALLOCATION_LIMITS, CALL_SITES, DEFAULT_CAP, LUT_PER_CAST, RESOURCES, WIDE_BITS,
                                    _lanes_per_bank, estimate_resources, function_instances, mac_chain_in_dsps, mac_dsp,
                                    mac_operand_pairs, table_bits)

TINY = "m3vit-tiny-cityscapes"
MICRO = "m3vit-micro"
ZCU = "m3vit-tiny-zcu102"
#: the score pass's q x k wider than the linear layers' act x matrix element (19 x 19 bits: 2 DSPs; 16 x 16: 1)
WIDE_QKV = ["precision.profile=w16a16", "precision.qkv=fixed<19,8,TRN,SAT>"]
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


def test_layernorm_products_are_at_the_stored_types_widths():
    """inv_std and n are stored in ln_inv_std_t / ln_norm_t before LN_OUT multiplies them: one DSP each at the
    tiny widths, saturating or wrapping alike (a 64-bit wide_t operand would be three)."""
    sat = cfg_of(TINY)
    wrap = cfg_of(TINY, "precision.ln_norm=fixed<24,6,TRN,WRAP>")
    code = render(sat, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert "ln_inv_std_t row_inv_std[LN_SKEW + 1];" in code and "const ln_norm_t n = to_ln_norm(" in code
    wb = KernelPlan.from_config(sat).weight_word_bits
    for cfg in (sat, wrap):
        p = cfg.precision
        res = estimate_resources(cfg)
        la = item(res, "layernorm/LN_STEPS", "LN_OUT: wide_t(n) * wide_t(gamma[d])")
        assert la.dsp == la.count * dsp_per_mult(p.ln_norm.bits, wb) < la.count * dsp_per_mult(WIDE_BITS, wb)
        li = item(res, "layernorm/LN_STEPS", "LN_OUT: wide_t(c[d]) * wide_t(inv_std)")
        assert li.dsp == li.count * dsp_per_mult(p.ln_centered.bits, p.ln_inv_std.bits, p.ln_centered.signed,
                                                 p.ln_inv_std.signed)


def test_online_softmax_product_is_at_the_stored_words_widths():
    sat = cfg_of(TINY)
    # the online softmax's l * alpha multiplies the words as stored (softmax_sum_t x exp_t), whatever the exp
    # type's overflow: one product per softmax lane, not wide_t x wide_t
    p, P = sat.precision, sat.hardware.attn_parallel
    for cfg in (sat, cfg_of(TINY, "precision.exp=ufixed<18,1,RND,WRAP>")):
        la = item(estimate_resources(cfg), "compute_tiles/MAC (side job)", "online_step: l * alpha")
        assert la.count == P
        assert la.dsp == P * dsp_per_mult(p.softmax_sum.bits, p.exp.bits, p.softmax_sum.signed, p.exp.signed)
        assert la.dsp < P * dsp_per_mult(WIDE_BITS, WIDE_BITS)


def test_multipliers_follow_the_kernel_types():
    cfg = cfg_of(TINY)
    plan = KernelPlan.from_config(cfg)
    p = cfg.precision
    res = estimate_resources(cfg)
    mac = item(res, "compute_tiles/MAC", "MAC:")
    assert mac.count == cfg.hardware.cu_in * cfg.hardware.cu_out
    assert mac.dsp == mac.count * mac_dsp(cfg, plan)[1]
    # y * score in FINISH: cu_word_t x gate_score_t, not wide_t x wide_t; one per epilogue lane
    fin = item(res, "compute_tiles/FINISH", "FINISH: wide_t(y) * wide_t(row_score[r])")
    assert fin.count == plan.epilogue_lanes
    assert fin.dsp == fin.count * dsp_per_mult(plan.cu_word_bits, p.gate_score.bits, b_signed=p.gate_score.signed)
    # LayerNorm: its three products once per LN_LANES lane (one instance), at the operands' widths as written
    ln = function_instances()["layernorm"] * plan.ln_lanes    # one instance for both call sites
    var = item(res, "layernorm/LN_STEPS", "LN_VAR: wide_t(c[d]) * wide_t(c[d])")
    assert var.count == ln and var.dsp == ln * dsp_per_mult(p.ln_centered.bits, p.ln_centered.bits)
    norm = item(res, "layernorm/LN_STEPS", "LN_OUT: wide_t(c[d]) * wide_t(inv_std)")
    assert norm.count == ln and norm.dsp == ln * dsp_per_mult(p.ln_centered.bits, p.ln_inv_std.bits,
                                                              b_signed=p.ln_inv_std.signed)
    aff = item(res, "layernorm/LN_STEPS", "LN_OUT: wide_t(n) * wide_t(gamma[d])")
    assert aff.count == ln and aff.dsp == ln * dsp_per_mult(p.ln_norm.bits, plan.weight_word_bits)
    # the routing's products at its narrow types: the chosen experts' exp_t x softmax_inv_t, one per top-k entry
    # (not wide_t x wide_t), and exp_neg's x * LOG2E_RAW on a difference of two gate_logit_t
    pick = item(res, "route_tokens/GATE_PICK", "GATE_PICK: wide_t(xj) * wide_t(inv)")
    assert pick.count == cfg.model.top_k * KernelPlan.from_config(cfg).gate_lanes   # a top-k entry a lane
    assert pick.dsp == pick.count * dsp_per_mult(p.exp.bits, p.softmax_inv.bits, p.exp.signed, p.softmax_inv.signed)
    assert pick.dsp < pick.count * dsp_per_mult(64, 64)
    assert item(res, "route_tokens/GATE", "exp_neg: x * LOG2E_RAW").shape.startswith(f"{p.gate_logit.bits + 1}s x")
    # the softmax's exps take a score word (cu_word_t) minus a running max (attn_score_t): that difference's width
    xd = max(plan.cu_word_bits, p.attn_score.bits) + 1
    for where in ("compute_tiles/MAC (side job)", "softmax/PROBS"):
        assert item(res, where, "exp_neg: x * LOG2E_RAW").shape.startswith(f"{xd}s x")
    # 16-bit words: one DSP per MAC instead of two
    r16 = estimate_resources(cfg_of(TINY, "precision.profile=w16a16"))
    assert item(r16, "compute_tiles/MAC", "MAC:").dsp == mac.count == mac.dsp // 2


def test_mac_chains_add_in_the_dsps_only_when_a_product_and_the_accumulator_fit_one():
    """MAC_CHAIN products an output sum in DSP post-adders (the kernel writes each chain in order with
    expression balancing off); the fabric adds only the chains' sums.  A product over one DSP, or an
    accumulator wider than P's 48 bits, puts every add back in the fabric."""
    code = render(cfg_of(ZCU), ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    body = code[code.index("MAC_C: for"):code.index("acc[o] = sum;")]
    assert "#pragma HLS EXPRESSION_BALANCE off" in body and "chain += MAC(" in body and "sum += chain;" in body
    cases = {ZCU: True, TINY: False,                           # w8a16, 48-bit accumulator; 16 x 32 bits: 2 DSPs
             f"{ZCU}|precision.accum=fixed<52,24,TRN,SAT>": False}
    for spec, in_dsps in cases.items():
        name, *sets = spec.split("|")
        cfg = cfg_of(name, *sets)
        plan = KernelPlan.from_config(cfg)
        ci, co, acc = cfg.hardware.cu_in, cfg.hardware.cu_out, cfg.precision.accum.bits
        assert ci % plan.mac_chain == 0 and plan.mac_chain <= 8
        assert mac_chain_in_dsps(cfg, plan) is in_dsps
        res = estimate_resources(cfg)
        if in_dsps:
            adds = item(res, "compute_tiles/MAC", "MAC chains: their sums + accumulate")
            assert adds.lut == co * (ci // plan.mac_chain) * acc
        else:
            adds = item(res, "compute_tiles/MAC", "MAC adder trees + accumulate")
            assert adds.lut > co * ci * 16            # an adder a product
    # the chains take CU_OUT x (MAC_CHAIN - 1) adders out of the fabric: most of the unit's adders
    fab = estimate_resources(cfg_of(ZCU, "precision.accum=fixed<52,24,TRN,SAT>"))
    dsp = estimate_resources(cfg_of(ZCU))
    assert dsp.totals["lut"] < fab.totals["lut"] - 20000


@pytest.mark.parametrize("name,sets", [(TINY, []), (ZCU, []), (MICRO, []), (TINY, ["precision.profile=w16a16"]),
                                       (TINY, ["precision.profile=w8a16"]), (TINY, WIDE_QKV)])
def test_a_mac_is_sized_for_the_widest_pass(name, sets):
    """The linear layers, the score pass and A*V share the CU_IN x CU_OUT multipliers: one per MAC, so each
    takes the DSPs of the widest operand pair of any pass, and the containers the words travel in (cu_word_t x
    cu_weight_t) cost no more than that pair."""
    cfg = cfg_of(name, *sets)
    plan = KernelPlan.from_config(cfg)
    p = cfg.precision
    pairs = mac_operand_pairs(cfg, plan)
    assert pairs["scores: qkv x qkv"] == (p.qkv.bits, p.qkv.signed, p.qkv.bits, p.qkv.signed)
    assert pairs["A*V: attn_prob x qkv"] == (p.attn_prob.bits, p.attn_prob.signed, p.qkv.bits, p.qkv.signed)
    assert pairs["linear: act x matrix element"][::2] == (p.act.bits, plan.matrix_word_bits)
    widest, per = mac_dsp(cfg, plan)
    assert per == max(dsp_per_mult(a, b, sa, sb) for a, sa, b, sb in pairs.values())
    assert per == dsp_per_mult(plan.cu_word_bits, plan.cu_weight_bits)
    # the weight words: a matrix element or a key / value word, whichever is wider
    assert plan.cu_weight_bits == max(plan.matrix_word_bits, p.qkv.bits)
    mac = item(estimate_resources(cfg), "compute_tiles/MAC", "MAC:")
    assert mac.dsp == mac.count * per and widest in mac.note
    if sets == WIDE_QKV:   # 16 x 16 linear layers (1 DSP), 19 x 19 scores (2): the scores size every MAC
        assert widest == "scores: qkv x qkv" and per == 2
        assert dsp_per_mult(*pairs["linear: act x matrix element"][::2]) == 1


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
    x = item(res, "run_images", "rows_t x[")
    assert x.shape.startswith(f"{ci} banks x {n * rw // ci} x {cu}b")
    assert x.bram36 == ci * bram36_for(n * rw // ci, cu)
    # logits holds a head's scores (SCORE_COLS columns: the score pass writes CU_OUT a cycle, the softmax's lanes
    # read ATTN_P and PROB_LANES a cycle): CU_IN cyclic banks, as the other row buffers
    lg = item(res, "run_images", "rows_t logits[")
    assert lg.shape.startswith(f"{ci} banks x {n * rw // ci} x {cu}b") and lg.bram36 == x.bram36
    assert plan.score_cols <= rw and 3 * cfg.model.embed_dim + plan.k_pad <= rw   # S, and big's probabilities
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert f"#pragma HLS ARRAY_PARTITION variable=logits cyclic factor={ci} dim=2" in src
    # lcm(EPI_LANES, EW_LANES) banks: the epilogue's read-modify-writes, the clear's EW_LANES words
    acc = item(res, "run_images", "moe_acc")
    lanes = plan.moe_acc_banks
    assert lanes % plan.epilogue_lanes == 0 and lanes % plan.elementwise_lanes == 0
    assert acc.bram36 == lanes * bram36_for(-(-plan.moe_rows * cfg.model.embed_dim // lanes), plan.moe_acc_bits)
    # a bank of at most 2 Kbit is not a block RAM: the cls token's banks; every LayerNorm's gamma and beta (the
    # call's constants) are (a bank of 4.6 Kbit: a BRAM18); the routing's q_count, which its pipeline increments
    # at any expert, is registers
    cls = item(res, "run_images (CONSTS)", "cls[DIM]")
    assert cls.bram36 == 0 and cls.lut > 0 and "LUTRAM" in cls.shape
    ln = item(res, "run_images (CONSTS)", "ln_par[LN_WORDS]")
    assert ln.lut == 0 and ln.bram36 == plan.ln_param_banks * bram36_for(plan.ln_words // plan.ln_param_banks,
                                                                          plan.weight_word_bits)
    qc = item(res, "run_images", "q_count[EXPERTS]")
    assert qc.bram36 == qc.lut == 0 and qc.ff == cfg.model.num_experts * 16
    # the ping-pong weight tile: CU_OUT x CU_IN banks of two tiles' ROW_WORDS / CU_IN cu_weight_t words (the
    # half an address bit), and two tiles' biases in registers. cu_weight_t is a matrix element or a key / value
    # word, whichever is wider: w16a32's 24-bit qkv_t makes a bank 96 x 24 bits, past the tool's LUTRAM size
    # (2 Kbit), so the template binds it to LUTRAM (a BRAM18 a bank would be 128 BRAM36): 64-deep pieces
    co, cw = cfg.hardware.cu_out, plan.cu_weight_bits
    assert cw == cfg.precision.qkv.bits == 24 > plan.matrix_word_bits
    w = item(res, "compute_tiles", "w[2][CU_OUT][ROW_WORDS]")
    assert 2 * rw // ci * cw > LUTRAM_MAX_BITS
    assert w.shape.startswith(f"{co * ci} banks x {2 * rw // ci} x {cw}b -> LUTRAM")
    assert w.bram36 == 0 and w.lut == co * ci * lutram_luts(2 * rw // ci, cw)
    assert "static cu_weight_t w[2][CU_OUT][ROW_WORDS];" in src
    assert "#pragma HLS BIND_STORAGE variable=w type=ram_s2p impl=lutram" in src
    hdr = render(cfg, ["include/edgemoe_config.h"])["include/edgemoe_config.h"]
    assert f"typedef ap_int<{cw}> cu_weight_t;" in hdr
    c16 = cfg_of(TINY, "precision.profile=w16a16")
    w16 = item(estimate_resources(c16), "compute_tiles", "w[2][CU_OUT][ROW_WORDS]")
    assert KernelPlan.from_config(c16).cu_weight_bits == 16 and w16.bram36 == 0
    assert w16.lut == co * ci * math.ceil(2 * rw // ci / 64) * 16 * 2
    # rows of whole bus words: the layer's biases in banks; tiles inside bus words: two tiles' in registers
    assert plan.weight_rows_aligned
    # (two layers': the call's and the next call's, which its last pass prefetches)
    b = item(res, "compute_tiles", "b[2][MAX_N_OUT]")
    assert b.shape.startswith(f"{plan.layer_bias_banks} banks x {2 * -(-plan.max_n_out // plan.layer_bias_banks)} x")
    unal = cfg_of(MICRO, "model.embed_dim=40", "model.num_heads=2", "model.expert_hidden=80", "hardware.cu_in=4",
                  "hardware.cu_out=5")
    b2 = item(estimate_resources(unal), "compute_tiles", "b[2][CU_OUT]")
    assert b2.ff == 2 * 5 * KernelPlan.from_config(unal).weight_word_bits and b2.lut == 0


@pytest.mark.parametrize("name,sets", [("m3vit-tiny-zcu102", []), (MICRO, ["hardware.cu_in=4"])])
def test_the_edges_are_the_kernels(name, sets):
    """The embedding's position table is N x D weight words in WORDS_PER_BEAT banks (a bus word per cycle), its
    casts CAST_LANES lanes, the cls token and the table on chip for the call (CONSTS); the gather's IMAGE_LANES
    pixels go to fixed banks."""
    cfg = cfg_of(name, *sets)
    plan = KernelPlan.from_config(cfg)
    n, d, wpb = cfg.model.num_tokens, cfg.model.embed_dim, plan.words_per_beat
    res = estimate_resources(cfg)
    pos = item(res, "run_images (CONSTS)", "pos[N_TOKENS * DIM]")
    assert pos.shape.startswith(f"{wpb} banks x {-(-n * d // wpb)} x {plan.weight_word_bits}b")
    if name == "m3vit-tiny-zcu102":   # 32 banks of 774 x 16b: a BRAM18 each (micro's small banks are LUTRAM)
        assert pos.bram36 == wpb * bram36_for(-(-n * d // wpb), plan.weight_word_bits) == 16
    assert item(res, "run_images/EMBED_D", "EMBED_D: add + to_act").count == plan.cast_lanes
    assert item(res, "run_images (CONSTS: cls, pos)", "CONSTS: bus word").count == 2
    assert item(res, "run_images/PATCH_PIX", "PATCH_PIX").shape.startswith(f"{plan.image_lanes} lanes")
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert "static weight_word_t cls[DIM], pos[N_TOKENS * DIM], ln_par[LN_WORDS];" in src
    assert f"#pragma HLS ARRAY_PARTITION variable=pos cyclic factor={wpb}" in src
    assert "read_words(" not in src and "EMBED_POS" not in src and "OFF_POS" not in src


@pytest.mark.parametrize("name,sets", [(ZCU, []), (TINY, []), (MICRO, []), (MICRO, ["hardware.axi_width=128"]),
                                       (MICRO, ["hardware.axi_width=1024"])])
def test_the_constants_are_one_burst_whose_fields_are_wires(name, sets):
    """The call's constants (the cls token, the position table, every LayerNorm's gamma then beta, block by
    block) are one region of the layout, each slot on a bus word, which CONSTS reads in one burst at the call's
    start: field j of a bus word always lands in the banks j + k x WORDS_PER_BEAT of the array the bus word is
    in, a write enable a bank, no select among the fields (which would be WORDS_PER_BEAT x word bits x
    ceil(WORDS_PER_BEAT / 4) LUTs an array); the layernorm reads its gamma and beta there."""
    cfg = cfg_of(name, *sets)
    plan = KernelPlan.from_config(cfg)
    wpb, d = plan.words_per_beat, cfg.model.embed_dim
    keys = ["backbone.cls_token", "backbone.pos_embed"] + [
        f"backbone.blocks.{b}.{n}.{w}" for b in range(cfg.model.depth) for n in ("norm1", "norm2")
        for w in ("weight", "bias")]
    at = plan.offsets["backbone.cls_token"]
    sizes = {"backbone.cls_token": d, "backbone.pos_embed": cfg.model.num_tokens * d}
    for k in keys:                                     # back to back, each on a bus word
        assert plan.offsets[k] == at, k
        at += -(-sizes.get(k, d) // wpb) * wpb
    assert plan.const_beats * wpb == at - plan.offsets["backbone.cls_token"]
    assert plan.ln_param_banks % wpb == 0 and plan.ln_words == 4 * cfg.model.depth * plan.ln_param_beats * wpb
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    body = src[src.index("CONSTS: for (int k = 0; k < CONST_BEATS; k++) {"):src.index("static rows_t x, hbuf")]
    assert "skip" not in body and "ln_par[f - (CLS_BEATS + POS_BEATS) * WORDS_PER_BEAT] = w;" in body
    assert "layernorm(x, x_sum, hbuf, ln_par, 2 * b);" in src and "layernorm(x, x_sum, hbuf, ln_par, 2 * b + 1);" in src
    assert "wide_t(ln_par[g0 + d])" in src and "wide_t(ln_par[b0 + d])" in src
    assert "read_ln_params(" not in src and "OFF_NORM1_W" not in src
    res = estimate_resources(cfg)
    for where, banks, count in (("run_images (CONSTS: ln_par)", plan.ln_param_banks, 1),
                                ("run_images (CONSTS: cls, pos)", wpb, 2)):
        it = item(res, where, "CONSTS: bus word")
        assert it.count == count and it.lut == it.count * (banks + 64) < it.count * wpb * plan.weight_word_bits
    ln = item(res, "run_images (CONSTS)", "ln_par[LN_WORDS]")
    assert ln.shape.startswith(f"{plan.ln_param_banks} banks x {-(-plan.ln_words // plan.ln_param_banks)} x")


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
    # every lane that reads a table reads a copy of its own: no unit reads the global EXP2_TABLE any more (the
    # routing's lanes exp2_gate, GATE_LANES copies, and recip_gate)
    assert not [it for it in res.items if it.kind == "ROM" and it.what == "EXP2_TABLE"]
    for what, table in (("exp2_gate", "exp2"), ("recip_gate", "recip")):
        gate = item(res, f"route_tokens ({'exp_neg' if table == 'exp2' else 'reciprocal'})", what)
        assert gate.kind == "ROM" and gate.count == plan.gate_lanes == 2
        assert gate.shape.startswith(f"{plan.table_entries[table]} x {tb[table]}b")
    # the softmax's lanes read copies of their own: a step's two exps take both ports of both banks of its lane's
    # exp2_lane; each PROBS lane's exp its own exp2_prob, and so does each folded key's (FOLD_U, AV_FOLD lanes
    # beside a row's last chunk); PROBS' reciprocal the one RECIP_TABLE
    # (the last: 121 tokens on a 16-wide unit, nine keys past the last whole chunk, so none folded)
    folds = set()
    for c in (cfg, cfg_of(TINY, "hardware.attn_parallel=8"), cfg_of(TINY, "hardware.cu_in=8"),
              cfg_of(TINY, "model.img_width=240")):
        r, pl = estimate_resources(c), KernelPlan.from_config(c)
        for where, what, n in (("compute_tiles/MAC (side job)", "exp2_lane", c.hardware.attn_parallel),
                               ("softmax/PROBS", "exp2_prob", pl.prob_lanes + pl.av_fold)):
            lanes = item(r, where, what)
            assert lanes.kind == "ROM" and lanes.count == n
            assert lanes.shape.startswith(f"{pl.table_entries['exp2']} x {tb['exp2']}b")
        assert item(r, "softmax (reciprocal)", "RECIP_TABLE").count == function_instances()["softmax"] == 1
        # the kernel's exp2_prob: a copy of the table per probability lane and folded key
        src = render(c, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
        init = re.search(r"exp2_prob\[PROB_LANES \+ AV_FOLD\]\[EXP2_TABLE_ENTRIES\] = \{(.*?)\};", src, re.S)
        assert init and init.group(1).count("EXP2_TABLE_INIT") == pl.prob_lanes + pl.av_fold
        folds.add(pl.av_fold > 0)
    assert folds == {False, True}
    assert not [it for it in res.items if it.what.startswith(("exp2_av", "S[", "qh[", "kh[", "vh["))]


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
    # a function without ALLOCATION: one instance per call site (the softmax: one, called per head in
    # AV_LOOP); the LayerNorm has one for its two; the attention has no function of its own any more
    assert inst["softmax"] == sum(CALL_SITES["softmax"].values()) == 1 and "softmax" not in ALLOCATION_LIMITS
    assert "attention" not in inst and "attention" not in CALL_SITES
    assert ALLOCATION_LIMITS["layernorm"] == inst["layernorm"] == 1 < sum(CALL_SITES["layernorm"].values())
    assert "residual_add" not in inst     # the residual adds are in the compute unit's epilogue and MOE_OUT_D
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    for f, n in ALLOCATION_LIMITS.items():
        assert f"#pragma HLS ALLOCATION function instances={f} limit={n}" in src, f
    # the attention's calls are three of the shared unit's call sites, their weights on chip: q . k from the key
    # rows (W_KEYS, SCORES_LOOP), A*V from the value columns (W_VALUES, AV_LOOP) and, with one head, the online
    # softmax alone in a call with no rows (W_VALUES); every other call streams its weights (W_DRAM)
    calls = [c for c in re.findall(r"compute_unit\(([^;]*)\);", src)]
    assert len(calls) == sum(CALL_SITES["compute_unit"].values())
    srcs = sorted(re.search(r"\b(W_DRAM|W_KEYS|W_VALUES)\b", c).group(1) for c in calls)
    assert srcs == ["W_DRAM"] * (len(calls) - 3) + ["W_KEYS", "W_VALUES", "W_VALUES"]
    side_only = [c for c in calls if "W_VALUES" in c and re.match(r"\s*big,\s*0,", c)]
    assert len(side_only) == 1 and "if (HEADS == 1) {" in src


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
    out = item(res, "run_images/MOE_OUT_D", "MOE_OUT_D: to_act(moe_acc), x + y")
    assert out.count == plan.cast_lanes and out.dsp == 0
    assert item(res, "compute_tiles/MAC", "FINISH (CU_RESID): the row's running sum").count == 1


def test_attention_runs_on_the_compute_unit():
    """q . k and A*V are passes of the shared compute unit: the attention has no multiplier of its own that
    scales with HEAD_DIM or with the keys; what it adds is the online softmax's lanes (the compute unit's side
    job: ATTN_P online steps, each two exps and l * alpha), the softmax's (one reciprocal; PROB_LANES
    probabilities and the AV_FOLD folded keys' (FOLD_U, beside a row's last chunk), each an exp and
    exp x 1/sum) and, in the compute unit, the score pass's CU_OUT cast lanes and A*V's CU_OUT x AV_FOLD
    products of the folded keys (FOLD_J, in a row's last chunk)."""
    cfg = cfg_of(TINY)
    plan = KernelPlan.from_config(cfg)
    P, PL, F, co = cfg.hardware.attn_parallel, plan.prob_lanes, plan.av_fold, cfg.hardware.cu_out
    assert F == cfg.model.num_tokens % cfg.hardware.cu_in == 1    # 129 tokens on a 16-wide unit: one key folded
    res = estimate_resources(cfg)
    mults = {(it.where, it.what): it.count for it in res.items
             if it.kind == "multipliers" and (it.where.startswith("softmax") or "(side job)" in it.where)}
    assert mults == {("compute_tiles/MAC (side job)", "exp_neg: x * LOG2E_RAW"): 2 * P,
                     ("compute_tiles/MAC (side job)", "exp_neg: EXP2_TABLE interpolation"): 2 * P,
                     ("compute_tiles/MAC (side job)", "online_step: l * alpha"): P,
                     ("softmax/PROBS", "reciprocal: RECIP_TABLE interpolation"): 1,
                     ("softmax/PROBS", "exp_neg: x * LOG2E_RAW"): PL + F,
                     ("softmax/PROBS", "exp_neg: EXP2_TABLE interpolation"): PL + F,
                     ("softmax/PROBS", "PROB_U, FOLD_U: wide_t(e) * inv"): PL + F}
    # the folded keys' products: a multiplier per output lane and folded key beside the MACs, as wide as a MAC
    fold = item(res, "compute_tiles/MAC", "FOLD_J: p_tail[r][j] * v_tail[cur][o][j]")
    assert fold.count == co * F and fold.dsp == co * F * mac_dsp(cfg, plan)[1]
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert "FOLD_J: for (int j = 0; j < AV_FOLD; j++) sum += MAC(p_tail[r][j], v_tail[cur][o][j]);" in src
    assert "FOLD_U: for (int u = 0; u < AV_FOLD; u++) {" in src
    assert "PROB_U: for (int u = 0; u < PROB_LANES; u++) {" in src
    # 121 tokens: nine keys past the last whole chunk, a chunk of their own; nothing folded
    unfolded = cfg_of(TINY, "model.img_width=240")
    upl, ures = KernelPlan.from_config(unfolded), estimate_resources(unfolded)
    assert upl.av_fold == 0
    assert not [it for it in ures.items if it.what.startswith(("FOLD_J", "v_tail", "p_tail"))]
    assert item(ures, "softmax/PROBS", "PROB_U, FOLD_U: wide_t(e) * inv").count == upl.prob_lanes
    usrc = render(unfolded, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert "FOLD_J" not in usrc and "FOLD_U" not in usrc
    attn = next(u for u in res.units if u.name == "attention")
    assert attn.dsp == sum(it.dsp for it in res.items if it.unit == "attention") > 0
    assert {it.where.split("/")[0].split()[0] for it in res.items if it.unit == "attention"} == {
        "softmax", "compute_tiles", "run_images"}
    # the score pass casts and stores a row's CU_OUT scores as its sums complete: a cast lane per output, no DSP
    cast = item(res, "compute_tiles/MAC", "MAC (CU_SCORES): to_attn_score")
    assert cast.count == co and cast.dsp == 0 and cast.lut > 0
    # nothing of the old attention unit is left: no per-head copies, no SCORE_D / AV_D products
    gone = ("score:", "AV_D", "pr = ", "S[ATTN_P]", "qh[", "kh[", "vh[", "acc[ATTN_P]", "stage[", "av_max", "exp2_av",
            "HEAD_COPY", "AV_OUT_U", "i / ATTN_P", "kh[s + p]")
    assert not [it.what for it in res.items if it.what.startswith(gone) or it.where.startswith("attention")]
    # wider heads (96 words): the same attention hardware and the same MACs, the passes just take longer
    wide_heads = estimate_resources(cfg_of(TINY, "model.num_heads=2"))
    assert next(u for u in wide_heads.units if u.name == "attention").dsp == attn.dsp
    assert item(wide_heads, "compute_tiles/MAC", "MAC:").dsp == item(res, "compute_tiles/MAC", "MAC:").dsp
    # twice the softmax lanes: twice each online step's parts; the PROBS lanes follow plan.prob_lanes (the largest
    # divisor of CU_IN that is at most half of it, whatever ATTN_P) and the folded keys
    c8 = cfg_of(TINY, "hardware.attn_parallel=8")
    r8, pl8 = estimate_resources(c8), KernelPlan.from_config(c8)
    for what, n in (("exp_neg: x * LOG2E_RAW", 2), ("online_step: l * alpha", 1)):
        a4, a8 = item(res, "compute_tiles/MAC (side job)", what), item(r8, "compute_tiles/MAC (side job)", what)
        assert a8.count == 8 * n and a8.dsp == 2 * a4.dsp
    assert item(r8, "softmax/PROBS", "PROB_U, FOLD_U: wide_t(e) * inv").count == pl8.prob_lanes + pl8.av_fold
    ci = c8.hardware.cu_in
    assert ci % pl8.prob_lanes == 0 and 2 * pl8.prob_lanes <= ci
    assert not [d for d in range(pl8.prob_lanes + 1, ci // 2 + 1) if ci % d == 0]


def test_softmax_state_is_the_kernels():
    """The softmax's state: a running max and sum per query, a block's heads one after the other (the side job
    runs them head by head across the compute unit's calls: SM_STATE_GROUPS = HEADS x ATTN_GROUPS words in each
    of ATTN_P banks, lane p's), and a head's 1/sum (ATTN_GROUPS words a bank, formed per softmax call); TAP_SM
    and PROBS take query (p, g) of head hd by counters (groups g0 + g), so they read a bank select. The side
    job's place (its head, step, key, group and the head's first column / group) is kept from call to call."""
    cfg = cfg_of(ZCU, "hardware.cu_out=24", "hardware.attn_parallel=16")
    plan = KernelPlan.from_config(cfg)
    p, P, G, H = cfg.precision, cfg.hardware.attn_parallel, plan.attn_groups, cfg.model.num_heads
    assert H > 1
    res = estimate_resources(cfg)
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    hdr = render(cfg, ["include/edgemoe_config.h"])["include/edgemoe_config.h"]
    assert "static const int SM_STATE_GROUPS = HEADS * ATTN_GROUPS;" in hdr
    assert f"HEADS = {H}," in hdr and f"static const int ATTN_GROUPS = {G};" in hdr
    for name, field, where, dim, depth in (
            ("sm_max", "attn_score", "run_images", "SM_STATE_GROUPS", H * G),
            ("sm_sum", "softmax_sum", "run_images", "SM_STATE_GROUPS", H * G),
            ("row_inv", "softmax_inv", "softmax", "ATTN_GROUPS", G)):
        arr = item(res, where, f"{name}[ATTN_P][{dim}] ({field}_t)")
        assert arr.shape.startswith(f"{P} banks x {depth} x {getattr(p, field).bits}b")
        assert f"static {field}_t {name}[ATTN_P][{dim}];" in src
        assert f"#pragma HLS ARRAY_PARTITION variable={name} complete dim=1" in src
    sel = item(res, "softmax", "TAP_SM, PROBS: row_max / row_sum / row_inv[p][g] selects")
    assert sel.shape.startswith(f"{P} -> 1")
    assert not [it for it in estimate_resources(cfg_of(MICRO, "hardware.attn_parallel=1")).items
                if it.what.startswith("TAP_SM, PROBS")]
    assert re.search(r"static void softmax\(const rows_t S, rows_t big, cu_word_t p_tail\[N_TOKENS\]\[AV_FOLD_SLOTS\],"
                     r"\s+const attn_score_t row_max\[ATTN_P\]\[SM_STATE_GROUPS\],", src)
    assert "const int c0 = hd * SCORE_COLS, g0 = hd * ATTN_GROUPS;" in src
    assert "const wide_t mx = row_max[p][g0 + g], inv = row_inv[p][g];" in src
    assert "static void attention(" not in src
    # lane p reads column sm_c0 + ss + p of its head's scores in sm_s (logits, CU_IN cyclic banks): its bank moves
    # with ss, a CU_IN -> 1 select
    ci, cu = cfg.hardware.cu_in, plan.cu_word_bits
    lane = item(res, "compute_tiles/MAC (side job)", "SM_LANES: S[g * ATTN_P + p][s + p]")
    assert lane.count == P and lane.lut == P * cu * math.ceil(ci / 4)
    assert "const wide_t sc = sm_s[sg * ATTN_P + p][sm_c0 + ss + p];" in src
    # sm_s is a select of the row buffers the compute unit's calls pass it
    params = re.search(r"static void compute_unit\(([^)]*)\)\s*\{", src).group(1).split(",")
    at = next(i for i, prm in enumerate(params) if re.search(r"\bsm_s\b", prm))
    calls = [c.split(",") for c in re.findall(r"compute_unit\(([^;]*)\);", src)]
    assert calls and all(len(c) == len(params) for c in calls)
    bufs = sorted({c[at].strip() for c in calls})
    mux = item(res, "compute_tiles/MAC (side job)", "SM_LANES: sm_s, a select of the row buffers")
    assert sorted(re.search(r"\(([^)]*)\)", mux.what).group(1).split(" | ")) == bufs
    assert mux.count == P and mux.shape.startswith(f"{len(bufs)} -> 1 of {cu}b")
    # the side job's place: compute_tiles' static counters, and the step's SM_PACE counter
    place = re.search(r"static int (sm_h = 0[^;]*);", src).group(1)
    names = {v.split("=")[0].strip() for v in place.split(",")} | {"sp"}
    job = item(res, "compute_tiles/MAC (side job)", "side job: (")
    assert set(re.search(r"\(([^)]*)\)", job.what).group(1).split(", ")) == names
    assert "int sp = 0;" in src


@pytest.mark.parametrize("cu_out", [16, 24, 32, 48])
def test_score_cast_lanes_meet_the_banks(cu_out):
    """The score pass of head hd writes sm_s[r][out_c0 + t * CU_OUT + o], out_c0 = hd * SCORE_COLS (the head's
    columns of logits): CU_OUT lanes into CU_IN cyclic banks of S. A bank's write data selects among the lanes
    that meet it as the tile t and the head move; a wire when each bank meets one lane whatever t and hd."""
    cfg = cfg_of(ZCU, f"hardware.cu_out={cu_out}")
    plan = KernelPlan.from_config(cfg)
    ci, heads = cfg.hardware.cu_in, cfg.model.num_heads
    meets = {}
    for hd in range(heads):
        for t in range(4 * ci):
            for o in range(cu_out):
                meets.setdefault((hd * plan.score_cols + t * cu_out + o) % ci, set()).add(o)
    lanes = max(len(v) for v in meets.values())
    assert _lanes_per_bank(cu_out, cu_out, ci, [hd * plan.score_cols for hd in range(heads)]) == lanes
    res = estimate_resources(cfg)
    sel = [it for it in res.items if it.what.startswith("MAC (CU_SCORES): cast lane -> sm_s bank select")]
    if lanes == 1:
        assert not sel
    else:
        assert len(sel) == 1 and sel[0].count == ci and sel[0].shape.endswith(f"x {lanes} lanes")
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    # the cast's fraction is the kernel's constant, so the model counts no barrel shifter for it
    assert "sm_s[r][out_c0 + t * CU_OUT + o] = to_attn_score(wide_t(sum), 2 * QKV_FRAC + SCORE_SHIFT);" in src
    # the score passes' out_c0 (the argument before sm_s): the head's first column, logits their sm_s
    assert "hd * SCORE_COLS, logits, sm_max, sm_sum, hd == 0," in " ".join(src.split())
    cast = [it for it in res.items if it.what.startswith("MAC (CU_SCORES): to_attn_score")]
    assert len(cast) == 1 and cast[0].count == cu_out and cast[0].lut == cu_out * LUT_PER_CAST


def test_score_cast_select_follows_the_heads_columns():
    """CU_IN a multiple of CU_OUT: one head's tiles meet each bank with one lane (a wire), but where a head's
    first column (hd * SCORE_COLS) is not a multiple of CU_OUT modulo CU_IN the lanes a bank meets move with the
    head, and the cast lanes' stores take a select (the tiny preset: 132 columns a head on a 16 x 16 unit, each
    bank meeting one lane per head)."""
    cfg = cfg_of(TINY)
    plan = KernelPlan.from_config(cfg)
    ci, co = cfg.hardware.cu_in, cfg.hardware.cu_out
    assert ci == co and _lanes_per_bank(co, co, ci) == 1
    starts = [hd * plan.score_cols for hd in range(cfg.model.num_heads)]
    assert any(s % ci % co for s in starts)
    lanes = len({s % ci for s in starts})        # CU_OUT = CU_IN: the lanes a bank meets are the heads' shifts
    assert _lanes_per_bank(co, co, ci, starts) == lanes > 1
    sel = item(estimate_resources(cfg), "compute_tiles/MAC", "MAC (CU_SCORES): cast lane -> sm_s bank select")
    assert sel.count == ci and sel.shape == f"{ci} banks x {lanes} lanes"
    one_head = cfg_of(TINY, "model.num_heads=1")
    assert not [it for it in estimate_resources(one_head).items if "cast lane -> sm_s bank select" in it.what]


@pytest.mark.parametrize("name,sets", [(TINY, []), (ZCU, ["hardware.cu_out=24"]), (ZCU, ["hardware.cu_out=16"]),
                                       (TINY, ["model.img_width=240"])])      # 121 tokens: no key folded
def test_on_chip_weights_are_unpack_selects(name, sets):
    """The attention's passes unpack their weights from `in` inside the MAC pipeline: W_KEYS CU_IN words of a key
    row to bank column i of row o0, W_VALUES one value column to column k0 of CU_IN rows (lane o % CU_IN to row
    o), the AV_FOLD keys past K_PAD to the registers v_tail instead (A*V adds them in a row's last chunk); from
    the call's own first column w_c0, or in its last pass from the next call's (uw_c0: the last pass unpacks the
    next call's first tile). So each tile bank's write data is one of three words, plus a rotation of the value
    lanes where CU_IN does not divide CU_OUT (a tile's first value column, ub = t * CU_OUT, moves across in's
    banks)."""
    cfg = cfg_of(name, *sets)
    plan = KernelPlan.from_config(cfg)
    ci, co, cw = cfg.hardware.cu_in, cfg.hardware.cu_out, plan.cu_weight_bits
    res = estimate_resources(cfg)
    data = item(res, "compute_tiles/UNPACK_K", "UNPACK_K / UNPACK_V: tile bank write data")
    assert data.count == co * ci and data.lut == co * ci * (cw + 1) and data.dsp == 0
    assert item(res, "compute_tiles/UNPACK_K", "UNPACK_K / UNPACK_V: in's second read address").count == ci
    # the value lanes: lane u reads column uw_c0 + ub + vs + u (uw_c0, any head's first value column, and vs
    # multiples of CU_IN)
    d, hd = cfg.model.embed_dim, cfg.model.head_dim
    assert all((2 * d + h * hd) % ci == 0 for h in range(cfg.model.num_heads))
    banks = {(t * co) % ci for t in range(ci)}
    rot = [it for it in res.items if it.what.startswith("UNPACK_V: in's bank -> value lane")]
    if len(banks) == 1:
        assert not rot
    else:
        assert len(rot) == 1 and rot[0].count == ci and rot[0].shape.startswith(f"{ci} lanes x {len(banks)} banks")
    src = render(cfg, ["src/edgemoe_vit.cpp"])["src/edgemoe_vit.cpp"]
    assert "w[nxt][o0][k0 + i] = in[key][uw_c0 + k0 + i];" in src
    assert "int usrc = src, uw_c0 = w_c0, uk = k_dim;" in src and "uw_c0 = next.w_c0;" in src
    if plan.av_fold:
        assert "if (o < uouts && k0 < K_PAD) w[nxt][o][k0] = in[k0][uw_c0 + ub + o];" in src
        assert "if (o < uouts && k0 >= K_PAD) v_tail[nxt][o][k0 - K_PAD] = in[k0][uw_c0 + ub + o];" in src
        # v_tail: two tiles' CU_OUT x AV_FOLD value words, registers (complete), as the kernel declares them
        assert "static cu_weight_t v_tail[2][CU_OUT][AV_FOLD_SLOTS];" in src
        assert "#pragma HLS ARRAY_PARTITION variable=v_tail complete dim=0" in src
        tail = item(res, "compute_tiles", "v_tail[2][CU_OUT][AV_FOLD] (cu_weight_t)")
        assert tail.count == 1 and tail.shape == f"{2 * co * plan.av_fold} banks x 1 x {cw}b -> registers"
    else:
        assert "if (o < uouts) w[nxt][o][k0] = in[k0][uw_c0 + ub + o];" in src
        assert not [it for it in res.items if it.what.startswith("v_tail")]


@pytest.mark.parametrize("change,what,where", [
    ("hardware.cu_in=32", "MAC:", "compute_tiles/MAC"),
    ("hardware.cu_out=32", "MAC:", "compute_tiles/MAC"),
    ("hardware.cu_out=32", "UNPACK_W: row write enables", "compute_tiles/UNPACK_W_J"),
    ("hardware.cu_out=32", "MAC (CU_SCORES): to_attn_score", "compute_tiles/MAC"),     # a cast lane per output
    ("hardware.cu_out=32", "UNPACK_K / UNPACK_V: tile bank write data", "compute_tiles/UNPACK_K"),
    ("hardware.cu_in=32", "SM_LANES: S's bank addresses", "compute_tiles/MAC (side job)"),         # more banks of S
    ("hardware.attn_parallel=8", "exp_neg: x * LOG2E_RAW", "compute_tiles/MAC (side job)"),       # more softmax lanes
    ("hardware.attn_parallel=8", "online_step: l * alpha", "compute_tiles/MAC (side job)"),
    ("hardware.cu_in=32", "PROB_U, FOLD_U: wide_t(e) * inv", "softmax/PROBS"),     # half a wider unit: more lanes
])
def test_a_config_change_that_should_raise_a_count_does(change, what, where):
    base = estimate_resources(cfg_of(TINY))
    more = estimate_resources(cfg_of(TINY, change))
    b, m = item(base, where, what), item(more, where, what)
    assert m.count > b.count and (m.dsp > b.dsp if b.dsp else m.lut > b.lut)
    assert more.totals["dsp"] > base.totals["dsp"] and more.totals["lut"] > base.totals["lut"]


@pytest.mark.parametrize("moe_batch", [1, 2, 4])
def test_the_moe_groups_state_is_on_chip(moe_batch):
    """hardware.moe_batch images' MoE state (moe_acc at its exact width, the kept x and norm2 rows, the group's
    expert queues) is what the group costs on chip: MOE_ROWS = moe_batch x N_TOKENS rows of each; the row buffers
    and the DSPs stay as they are."""
    cfg = cfg_of(ZCU, f"hardware.moe_batch={moe_batch}")
    plan = KernelPlan.from_config(cfg)
    n, d, e = cfg.model.num_tokens, cfg.model.embed_dim, cfg.model.num_experts
    assert plan.moe_rows == moe_batch * n
    res = estimate_resources(cfg)
    ew, lanes = plan.elementwise_lanes, plan.moe_acc_banks
    for name in ("x_keep", "h_keep"):
        it = item(res, "run_images", f"{name}[MOE_ROWS][DIM]")
        assert it.shape.startswith(f"{ew} banks x {-(-moe_batch * n * d // ew)} x {plan.cu_word_bits}b")
    acc = item(res, "run_images", "moe_acc[MOE_ROWS]")
    assert acc.shape.startswith(f"{lanes} banks x {-(-moe_batch * n * d // lanes)} x {plan.moe_acc_bits}b")
    assert item(res, "run_images", "route.queue[EXPERTS][MOE_ROWS]").shape.startswith(f"{e * moe_batch * n} x 16b")
    one = estimate_resources(cfg_of(ZCU, "hardware.moe_batch=1"))
    assert res.totals["dsp"] == one.totals["dsp"]
    assert (res.totals["bram36"] > one.totals["bram36"]) == (moe_batch > 1)
    src = render(cfg, ["include/edgemoe_config.h"])["include/edgemoe_config.h"]
    assert f"static const int MOE_BATCH = {moe_batch};" in src and f"MOE_ROWS = {moe_batch * n};" in src
    assert f"MOE_ACC_BITS = {plan.moe_acc_bits};" in src


def test_batch_with_shared_weights_copies_the_row_buffers():
    """As written the kernel runs a call's images in one set of row buffers (the MoE group's state sized by
    hardware.moe_batch): the batch changes no resource.  Every weight shared by the whole batch (share_weights,
    a what-if) would need every image's rows at once."""
    cfg = cfg_of(TINY)
    one, four = estimate_resources(cfg, "onchip", 1), estimate_resources(cfg, "onchip", 4)
    assert four.totals == one.totals and not four.share_weights
    shared = estimate_resources(cfg, "onchip", 4, share_weights=True)
    assert item(shared, "run_images", "rows_t x[").count == 4 and shared.share_weights
    assert shared.totals["bram36"] > 3 * one.totals["bram36"] * 0.9
    assert shared.totals["dsp"] == one.totals["dsp"]
    # the ZCU102 preset: as written, batch 8 is batch 1 and its block RAM within the cap; sharing on chip would
    # take several times the board's block RAM (the BRAM binds)
    zcu = cfg_of(ZCU)
    as_written = estimate_resources(zcu, "onchip", 8)
    shared8 = estimate_resources(zcu, "onchip", 8, share_weights=True)
    assert as_written.totals == estimate_resources(zcu).totals and "bram36" not in as_written.violations()
    assert shared8.binding == "bram36" and shared8.utilisation["bram36"] > 2


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
    """The tiny preset (w16a32, a 16 x 16 compute unit, 4 softmax lanes) on the ZCU102: the DSPs are the compute
    unit's 256 MACs (2 each: 32 x 16-bit linear products, 24 x 24-bit scores, 18 x 24-bit A*V) and little else,
    the attention's own a few dozen (its lanes' exps and products). The tile buffer's CU_OUT x CU_IN banks of two
    tiles' 24-bit cu_weight_t words (96 x 24 bits: past the tool's LUTRAM size) are bound to LUTRAM by the
    template; as BRAM18s they would be 128 BRAM36 and put the block RAM over 80 %. It fits."""
    cfg = cfg_of(TINY)
    res = estimate_resources(cfg)
    print(res.table())
    ci, co, board = cfg.hardware.cu_in, cfg.hardware.cu_out, BOARDS["zcu102"]
    macs = ci * co * 2
    cu = next(u for u in res.units if u.name == "compute unit")
    attn = next(u for u in res.units if u.name == "attention")
    assert item(res, "compute_tiles/MAC", "MAC:").dsp == macs and macs < cu.dsp < 1.1 * macs
    assert 0 < attn.dsp < 0.2 * macs and res.totals["dsp"] < 0.5 * DEFAULT_CAP * board.dsp
    w = item(res, "compute_tiles", "w[2][CU_OUT][ROW_WORDS]")
    assert w.bram36 == 0 and "LUTRAM" in w.shape
    assert res.violations() == [], res.verdict
    assert (res.totals["bram36"] + co * ci / 2) / board.bram36 > DEFAULT_CAP  # as BRAM18s it would not fit


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


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make test installs it)")
@pytest.mark.parametrize("depth,width", [(24, 16), (32, 8), (24, 24), (48, 16), (64, 24), (96, 16), (128, 8)])
def test_lutram_cost_is_what_yosys_maps(depth, width, tmp_path):
    """A bank of distributed RAM with one write and one read port (the tile buffer's, and every LUTRAM bank the
    model counts): primitives.lutram_luts against Yosys's UltraScale+ mapping of the same memory. The RAM cells
    (8 LUTs each: RAM32M16, RAM64M8) match exactly; the read mux of a bank deeper than 64 within 15 %."""
    from edgemoe.sim.resources import synth_report

    ab = max(1, math.ceil(math.log2(depth)))
    (tmp_path / "m.v").write_text(f"""
module m(input clk, input we, input [{ab - 1}:0] wa, input [{ab - 1}:0] ra, input [{width - 1}:0] wd,
         output reg [{width - 1}:0] rd);
  reg [{width - 1}:0] mem [0:{depth - 1}];
  always @(posedge clk) begin
    if (we) mem[wa] <= wd;
    rd <= mem[ra];
  end
endmodule
""")
    cells = synth_report(tmp_path / "m.v", "m")["cells"]
    ram_luts = sum(n * {"RAM32M16": 8, "RAM64M8": 8, "RAM32M": 4, "RAM64M": 4}[c]
                   for c, n in cells.items() if c.startswith("RAM"))
    logic = sum(n for c, n in cells.items() if c.startswith("LUT"))
    model = lutram_luts(depth, width)
    if depth <= 64:
        assert model == ram_luts and logic <= 2, cells
    else:
        assert abs(model - (ram_luts + logic)) <= 0.15 * (ram_luts + logic), cells
