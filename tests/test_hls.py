"""The generated HLS kernel: C simulation equals the golden model word for word, at every tap."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from edgemoe.config import ConfigError
from edgemoe.golden.fixed_model import FixedM3ViT
from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict
from edgemoe.hls.interface import TAP_NONE, config_hash32, kernel_args, register_map
from edgemoe.hls.layout import WeightLayout, layout_tensor
from edgemoe.hls.lint import check_project, check_source
from edgemoe.hls.plan import KernelPlan
from edgemoe.hls.project import HLSProject, KernelError
from edgemoe.loading import load_config

#: a model whose compute-unit tiles (5 rows of 40 words) start off the bus words
UNALIGNED = ["model.embed_dim=40", "model.num_heads=2", "model.expert_hidden=80", "hardware.cu_in=4",
             "hardware.cu_out=5"]
#: configs whose csim must equal golden at every tap: name -> overrides of m3vit-micro
CONFIGS = {
    "micro": [],
    "micro-w16a16": ["precision.profile=w16a16"],
    "micro-w8a16": ["precision.profile=w8a16"],
    # head_dim 32: scale 2^-3 with the sqrt(2) factor folded into Wq; top-1 routing
    "heads2-top1": ["model.num_heads=2", "model.top_k=1", "hardware.attn_parallel=3"],
    # 8 experts top-3, a 16x16 compute unit, odd attention parallelism
    "experts8-top3-cu16": ["model.num_experts=8", "model.top_k=3", "hardware.cu_in=16", "hardware.cu_out=16",
                           "hardware.attn_parallel=5"],
    # three tasks, MoE in every block, a narrow 4x16 unit, gate rows not a multiple of cu_out
    "tasks3-allmoe-cu4x16": ["model.tasks=[{name: semseg, out_channels: 7}, {name: depth, out_channels: 1}, "
                             "{name: normals, out_channels: 3}]", "model.moe_blocks=all", "model.num_experts=5",
                             "hardware.cu_in=4", "hardware.cu_out=16", "hardware.attn_parallel=1"],
    # non-square small image (2x3 patches), depth 3 with MoE first, one head, P = all tokens
    "grid2x3-depth3": ["model.img_height=32", "model.img_width=48", "model.depth=3", "model.moe_blocks=[0]",
                       "model.num_heads=1", "hardware.attn_parallel=7", "model.mlp_ratio=2"],
    # 5 x 40-word tiles: weight tiles and bias tiles that start inside a 256-bit bus word
    "unaligned-tiles-cu4x5": UNALIGNED,
    # the same with 8-bit weights (128 to a 1024-bit bus word): a bus word spans up to four 40-word rows
    "unaligned-w8a16-bus1024": UNALIGNED + ["precision.profile=w8a16", "hardware.axi_width=1024"],
    # the weight bus word striped over two m_axi pointers (128-bit lanes), each bundle on its own port
    "micro-lanes2": ["hardware.weight_lanes=2"],
    # four 256-bit lanes of a 1024-bit bus word, unaligned tiles (six bundles: on the U50's ports)
    "unaligned-w8a16-bus1024-lanes4": UNALIGNED + ["precision.profile=w8a16", "hardware.axi_width=1024",
                                                   "hardware.weight_lanes=4", "hardware.board=u50"],
    # 32 output words to a bus word of the activations, rows of 16: write_rows' bus words span two rows and
    # more, each lane with its own counters; every tap's region and each head's padded to whole bus words
    "narrow-rows-bus1024": ["model.embed_dim=16", "model.num_heads=1", "model.expert_hidden=32", "hardware.cu_in=4",
                            "hardware.cu_out=4", "hardware.axi_width=1024", "precision.profile=w8a16"],
    # 64-bit output words (a 1/sum wider than 32 bits), two to a 128-bit bus word
    "out64-bus128": ["precision.softmax_inv=ufixed<32,16>", "hardware.axi_width=128"],
}


def _project(name, tmp_path_factory, seed=0, state_dict=None):
    cfg = load_config("m3vit-micro", CONFIGS[name])
    sd = state_dict if state_dict is not None else synthetic_state_dict(cfg.model, seed=seed)
    proj = HLSProject(cfg, sd, cache_dir=tmp_path_factory.mktemp("csim"))
    proj.compile()
    return cfg, sd, proj


def _assert_every_tap_equal(cfg, sd, proj, images, task):
    golden = FixedM3ViT(cfg, sd).forward(images, task)
    tokens = proj.predict(images, task)
    assert np.array_equal(tokens, golden.tokens.numpy()), "final tokens differ"
    bad = []
    for name in proj.taps:
        got = proj.predict(images, task, tap=name)
        ref = golden.taps[name].numpy()
        if got.shape != ref.shape or not np.array_equal(got, ref):
            diff = np.argwhere(got != ref)[0] if got.shape == ref.shape else "shape"
            bad.append(f"{name} (first at {diff})")
    assert not bad, f"{len(bad)} of {len(proj.taps)} taps differ: {bad[:5]}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_csim_equals_golden_at_every_tap(name, tmp_path_factory):
    cfg, sd, proj = _project(name, tmp_path_factory)
    images = synthetic_images(cfg.model, 2, seed=3)
    for task in range(len(cfg.model.tasks)):
        _assert_every_tap_equal(cfg, sd, proj, images, task)
    assert not proj.compiled.warnings, proj.compiled.warnings


def test_unaligned_configs_have_tiles_off_the_bus_word():
    """The unaligned configs above exercise what they say: tile starts inside a bus word (weights and biases),
    and on the wide bus a bus word of weights that wraps past several rows."""
    for name, wraps in (("unaligned-tiles-cu4x5", 1), ("unaligned-w8a16-bus1024", 4)):
        plan = KernelPlan.from_config(load_config("m3vit-micro", CONFIGS[name]))
        spans = [s for lin in plan.linears for s in plan.tile_spans(lin)]
        assert any(w[2] for _, w in spans) and any(b[2] for b, _ in spans if b), name
        assert plan.unpack_wraps == wraps and plan.tile_beats >= max(w[1] for _, w in spans)
        assert not plan.weight_rows_aligned, name   # so the generic unpack (any field to any bank) is tested
    for name in ("micro", "micro-w16a16"):
        plan = KernelPlan.from_config(load_config("m3vit-micro", CONFIGS[name]))
        assert not any(w[2] for lin in plan.linears for _, w in plan.tile_spans(lin)), name
        assert plan.weight_rows_aligned, name       # and the aligned one (a field to a fixed bank column)


@pytest.mark.parametrize("name", ["micro", "unaligned-w8a16-bus1024"])
def test_mac_loop_runs_the_iterations_the_loop_model_counts(name, tmp_path, capfd):
    """The compute unit's one MAC pipeline over a layer's passes, instrumented in C simulation (its iterations
    counted and printed per call), runs in every compute_unit call exactly the iterations the loop model counts
    (KernelPlan.mac_passes: per pass the longer of its MACs and its unpack between PASS_LEAD and PASS_TAIL, the
    last row's epilogue once), rows of whole bus words and tiles inside bus words (several rows to a word), and
    the attention's score and A*V passes with their on-chip weights, each call as long as the online softmax
    beside it must run (KernelPlan.attention_calls: on micro, some A*V calls wait for the next head's)."""
    from edgemoe.hls.csim import CsimLibrary, compile_sources
    from edgemoe.hls.project import CSIM_SOURCES, kernel_sources

    cfg = load_config("m3vit-micro", CONFIGS[name])
    plan = KernelPlan.from_config(cfg)
    files = dict(kernel_sources(cfg))
    src = files["src/edgemoe_vit.cpp"].decode()
    edits = [("        bool run = true;\n", "        bool run = true;\n        long long iterations = 0;\n"),
             ("#pragma HLS PIPELINE II=1\n            // acc_rows:",
              "#pragma HLS PIPELINE II=1\n            iterations++;\n            // acc_rows:"),
             ("            run = tile || r < mrows || po < CU_OUT || sm_h < sm_need || (pf && !unpacked);\n        }\n",
              "            run = tile || r < mrows || po < CU_OUT || sm_h < sm_need || (pf && !unpacked);\n        }\n"
              '        fprintf(stderr, "MAC %d %d %d %lld %d %d %d %d\\n", k_dim, n_out, rows, iterations, (int)pre,'
              ' next.src, next.k_dim, next.n_out);\n')]
    for old, new in edits:
        assert src.count(old) == 1, old
        src = src.replace(old, new)
    files["src/edgemoe_vit.cpp"] = ("#include <cstdio>\n" + src).encode()
    proj = HLSProject(cfg, synthetic_state_dict(cfg.model, seed=0), cache_dir=tmp_path)
    proj.compiled = compile_sources(files, CSIM_SOURCES, tmp_path / "lib", config_hash32(cfg))
    proj._lib = CsimLibrary(proj.compiled.library)
    capfd.readouterr()
    proj.predict(synthetic_images(cfg.model, 1, seed=3), 0)
    calls = [tuple(map(int, line.split()[1:])) for line in capfd.readouterr().err.splitlines()
             if line.startswith("MAC ")]
    assert calls and all(len(c) == 8 for c in calls)
    m = cfg.model
    assert len(calls) >= 1 + 3 * m.depth   # the patch embedding, every block's qkv, proj and more
    assert any(c[2] < m.num_tokens for c in calls)   # an expert's rows
    # a block's attention calls, in run_images' order: every head's score pass (keys from big's rows), then per
    # head its A*V (values from big's rows); the online softmax beside them lengthens the calls that must wait
    # for a head's (KernelPlan.attention_calls)
    scores, av = (m.head_dim, plan.score_cols), (plan.k_pad, m.head_dim)
    attention = [c[:4] for c in calls if c[:2] in (scores, av)]
    block = [(*(scores if c.kind == "scores" else av), m.num_tokens, c.iterations) for c in plan.attention_calls()]
    assert attention == block * m.depth
    assert any(c.iterations > c.passes for c in plan.attention_calls()) == (name == "micro")
    # the DRAM calls: those the call before prefetched start with their MACs (no pass 0), and the last pass of
    # one that prefetches the next call's biases and tile 0 unpacks them too (rows of whole bus words only)
    pres = 0
    for k, n_out, rows, iterations, pre, nsrc, nk, nn in calls:
        if (k, n_out) in (scores, av):
            continue
        pres += pre
        steps = {plan.prefix_steps(lin) for lin in plan.linears if (lin.k, lin.n_out) == (nk, nn)} if nsrc == 0 else {0}
        assert len(steps) == 1
        expected = {sum(plan.mac_passes(lin, rows, bool(pre), *steps)) for lin in plan.linears
                    if (lin.k, lin.n_out) == (k, n_out)}
        assert iterations in expected, (k, n_out, rows, iterations, pre, expected)
    # every DRAM call but the first is prefetched, but a MoE block's first expert after a guess that missed
    # (the gate prefetches expert 0's fc1 before the routing: on micro's one image, expert 0 may be idle)
    dram = [c for c in calls if c[:2] not in (scores, av)]
    missed = [i for i, c in enumerate(dram) if i and not c[4]]
    fc1 = {(lin.k, lin.n_out) for lin in plan.linears if ".experts." in lin.name and lin.name.endswith("fc1")}
    if plan.weight_rows_aligned:
        assert dram[0][4] == 0 and all(dram[i][:2] in fc1 for i in missed), missed
        assert len(missed) <= len(plan.moe_blocks)
    else:
        assert pres == 0


def _instrumented_expert_calls(cfg, sd, images, task, tmp_path, capfd, defines=()):
    """C simulation of ``images`` with every compute_unit call of the experts' fc1 printed (its rows): the kernel's
    tokens and the rows of each fc1 pass, in call order."""
    from edgemoe.hls.csim import CsimLibrary, compile_sources
    from edgemoe.hls.project import CSIM_SOURCES, kernel_sources

    files = dict(kernel_sources(cfg))
    src = files["src/edgemoe_vit.cpp"].decode()
    old = "static void compute_unit(const rows_t in, int rows, int k_dim, int in_frac,"
    body = src.index("#pragma HLS DATAFLOW", src.index(old))
    src = (src[:body] + '    if (k_dim == DIM && n_out == EXPERT_HIDDEN) fprintf(stderr, "FC1 %d\\n", rows);\n'
           + src[body:])
    files["src/edgemoe_vit.cpp"] = ("#include <cstdio>\n" + src).encode()
    proj = HLSProject(cfg, sd, cache_dir=tmp_path)
    proj.compiled = compile_sources(files, CSIM_SOURCES, tmp_path / "lib", config_hash32(cfg), defines=defines)
    proj._lib = CsimLibrary(proj.compiled.library)
    capfd.readouterr()
    tokens = proj.predict(images, task)
    rows = [int(line.split()[1]) for line in capfd.readouterr().err.splitlines() if line.startswith("FC1 ")]
    return tokens, rows


@pytest.mark.parametrize("moe_batch, n_images, state", [(3, 5, "synthetic"), (3, 3, "one-expert"), (2, 4, "tied"),
                                                        (2, 3, "dense")])
def test_moe_groups_equal_golden_and_stream_each_expert_once_per_group(moe_batch, n_images, state, tmp_path,
                                                                        capfd):
    """hardware.moe_batch images run their MoE blocks together: a call of n_images in groups of moe_batch (the last
    one shorter) gives golden's tokens, exactly, with the C-simulation and the synthesis arithmetic, and each
    active expert's fc1 runs once per group and MoE block over the group's queued rows, in passes of at most
    N_TOKENS rows (one-expert: every token of 3 images to experts 2 and 0, 27 rows, three passes); the loop model
    walks the same passes. A model without MoE blocks is one segment (MOE_COUNT 0)."""
    from edgemoe.perf.loops import loop_estimate
    from edgemoe.perf.routing import Routing

    cfg = load_config("m3vit-micro", [f"hardware.moe_batch={moe_batch}"]
                      + (["model.moe_blocks=[]"] if state == "dense" else []))
    sd = synthetic_state_dict(cfg.model, seed=0) if state in ("synthetic", "dense") else _routing_state_dict(cfg, state)
    images = synthetic_images(cfg.model, n_images, seed=7)
    m, n = cfg.model, cfg.model.num_tokens
    golden = FixedM3ViT(cfg, sd).forward(images, 0)
    counts = [golden.taps[f"blocks.{b}.expert_counts"].numpy() for b in m.moe_blocks]
    expected = []
    for g0 in range(0, n_images, moe_batch):
        for c in counts:
            for total in c[g0:g0 + moe_batch].sum(axis=0):
                expected += [n] * (int(total) // n) + ([int(total) % n] if total % n else [])
    if state == "one-expert":
        assert max(expected) == n and expected.count(n) >= 3 * len(m.moe_blocks)
    for defines in ((), ("EDGEMOE_SYNTH_ARITH",)):
        tokens, rows = _instrumented_expert_calls(cfg, sd, images, 0, tmp_path / "-".join(defines or ("c",)), capfd,
                                                  defines)
        assert np.array_equal(tokens, golden.tokens.numpy()), defines
        assert rows == expected, (rows, expected)
    le = loop_estimate(cfg, Routing(tuple(counts), False, "golden"), batch=n_images)
    assert le.loops["EXPERT_PASS"].iterations * n_images == pytest.approx(len(expected))
    assert le.loops["GATHER"].iterations * n_images == pytest.approx(sum(expected) * m.embed_dim
                                                                     // KernelPlan.from_config(cfg).elementwise_lanes)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_csim_equals_golden_for_other_seeds(seed, tmp_path_factory):
    cfg, sd, proj = _project("micro", tmp_path_factory, seed=seed)
    images = synthetic_images(cfg.model, 3, seed=seed + 10)
    for task in (0, 1):
        golden = FixedM3ViT(cfg, sd).forward(images, task, keep_taps=False).tokens.numpy()
        assert np.array_equal(proj.predict(images, task), golden)


def _routing_state_dict(cfg, mode):
    """Weights forcing a routing corner case in MoE block 1 for task 0."""
    sd = synthetic_state_dict(cfg.model, seed=4)
    d, e = cfg.model.embed_dim, cfg.model.num_experts
    if mode == "one-expert":
        # constant LayerNorm output (gamma 0, beta 1): every token has the same logits;
        # expert 2 wins, the rest tie at 0 and the lowest index takes second place
        sd["backbone.blocks.1.norm2.weight"] = torch.zeros(d)
        sd["backbone.blocks.1.norm2.bias"] = torch.ones(d)
        w = torch.zeros(d, e)
        w[:, 2] = 0.05
        sd["backbone.blocks.1.mlp.gate.0.w_gate"] = w
    elif mode == "tied":
        sd["backbone.blocks.1.mlp.gate.0.w_gate"] = torch.zeros(d, e)
    return sd


@pytest.mark.parametrize("mode", ["one-expert", "tied"])
def test_routing_corner_cases(mode, tmp_path_factory):
    cfg = load_config("m3vit-micro")
    sd = _routing_state_dict(cfg, mode)
    _, _, proj = _project("micro", tmp_path_factory, state_dict=sd)
    images = synthetic_images(cfg.model, 2, seed=5)
    counts = proj.predict(images, 0, tap="blocks.1.expert_counts")
    n, k = cfg.model.num_tokens, cfg.model.top_k
    if mode == "one-expert":
        assert (counts[:, 2] == n).all() and (counts[:, 0] == n).all()   # every token to expert 2 (and 0)
        assert (counts[:, [1, 3]] == 0).all()                            # experts with no tokens
    else:
        assert (counts[:, :k] == n).all() and (counts[:, k:] == 0).all()  # ties -> lowest indices
    _assert_every_tap_equal(cfg, sd, proj, images, 0)


@pytest.mark.parametrize("name", ["m3vit-tiny-cityscapes", "m3vit-tiny-zcu102"])
def test_tiny_preset_one_image_per_task(tmp_path_factory, name):
    cfg = load_config(name)
    sd = synthetic_state_dict(cfg.model, seed=0)
    proj = HLSProject(cfg, sd, cache_dir=tmp_path_factory.mktemp("csim"))
    proj.compile()
    fixed = FixedM3ViT(cfg, sd)
    images = synthetic_images(cfg.model, 1, seed=0)
    for task in cfg.model.task_names:
        golden = fixed.forward(images, task, keep_taps=False).tokens.numpy()
        assert np.array_equal(proj.predict(images, task), golden)
    assert np.array_equal(proj.predict(images, "semseg", tap="blocks.11.expert_counts"),
                          fixed.forward(images, "semseg").taps["blocks.11.expert_counts"].numpy())


def test_control_registers_and_bad_calls(tmp_path_factory):
    cfg, _, proj = _project("micro", tmp_path_factory)
    pixels = proj.pixels(synthetic_images(cfg.model, 1, seed=0))
    out, config_hash, status = proj._lib.run(pixels.reshape(-1), proj.packed_weights, 0, 1, TAP_NONE)
    assert status == 0 and config_hash == config_hash32(cfg) == proj._lib.config_hash
    assert config_hash32(load_config("m3vit-micro", ["hardware.clock_mhz=250"])) != config_hash
    with pytest.raises(KernelError, match="bad_task"):
        proj.run_raw(pixels, task=2, tap=TAP_NONE)
    with pytest.raises(KernelError, match="bad_tap"):
        proj.run_raw(pixels, task=0, tap=len(proj.taps))
    with pytest.raises(ConfigError, match="tap"):
        proj.predict(pixels, 0, tap="blocks.9.qkv")
    with pytest.raises(ConfigError, match="images"):
        proj.predict(np.zeros((1, 3, 32, 32)), 0)
    # the kernel still works after refusing calls
    assert proj.run_raw(pixels, task=1, tap=TAP_NONE).shape == (1, proj.plan.image_stride(False))


# --- the activations port: bus words, every region from one ------------------------------------------

@pytest.mark.parametrize("name", ["micro", "narrow-rows-bus1024", "out64-bus128", "unaligned-w8a16-bus1024",
                                  "tasks3-allmoe-cu4x16"])
def test_every_region_starts_on_a_bus_word(name):
    """Every region the kernel writes to the activations (an image's output tokens, a tap call's image, each tap,
    each head's part of a per-head tap) starts on a bus word, from the plan's one layout (ActRegion), which
    the kernel's constants, its m_axi depth, the host's strides and taps.json all read; pack and unpack are
    inverses and the padding is whole words short of a bus word."""
    import json

    from edgemoe.hls.writer import render
    from edgemoe.host.simbit import simbit_data

    cfg = load_config("m3vit-micro", CONFIGS[name])
    m, plan = cfg.model, KernelPlan.from_config(cfg)
    opb = plan.out_per_beat
    assert opb == cfg.hardware.axi_width // plan.out_word_bits and opb & (opb - 1) == 0
    regions = {None: plan.token_region, **plan.tap_regions}
    assert plan.token_region.shape == (m.num_tokens, m.embed_dim) and list(plan.tap_regions) == list(plan.taps)
    rng = np.random.default_rng(0)
    for tap, r in regions.items():
        assert r.words == int(np.prod(r.shape)) == (plan.tap_words[tap] if tap else m.num_tokens * m.embed_dim)
        assert r.part_stride % opb == 0 and 0 <= r.part_stride - r.part_words < opb, tap
        assert r.stride == r.parts * r.part_stride == r.beats * opb <= plan.image_stride(tap is not None), tap
        assert r.parts == (m.num_heads if tap and tap.rsplit(".", 1)[-1] in ("scores", "softmax_max",
                                                                             "softmax_inv") else 1)
        words = rng.integers(-2**31, 2**31, size=(2, *r.shape))
        buf = r.pack(words, plan.image_stride(tap is not None))
        assert np.array_equal(r.unpack(buf), words), tap
        pad = buf[:, :r.stride].reshape(2, r.parts, r.part_stride)[:, :, r.part_words:]
        assert not pad.any() and not buf[:, r.stride:].any()
    for call in (False, True):
        assert plan.image_stride(call) % opb == 0
    assert plan.image_stride(True) == max(r.stride for r in plan.tap_regions.values()) == plan.max_tap_words
    assert plan.image_stride(False) == plan.token_region.stride
    # the kernel's constants and pointer depth, the host's strides and taps.json: the same numbers
    files = render(cfg)
    header, kernel = files["include/edgemoe_config.h"], files["src/edgemoe_vit.cpp"]
    assert f"typedef ap_uint<{cfg.hardware.axi_width}> act_beat_t;" in header
    assert f"static const int OUT_PER_BEAT = {opb};" in header
    assert f"static const int TOKEN_BEATS = {plan.token_region.beats};" in header
    assert f"static const int MAX_TAP_BEATS = {plan.max_tap_words // opb};" in header
    assert (f"static const int SCORE_HEAD_BEATS = {plan.tap_regions['blocks.0.scores'].part_beats}, "
            f"SM_HEAD_BEATS = {plan.tap_regions['blocks.0.softmax_max'].part_beats};") in header
    assert plan.interface_depths["activations"] == plan.max_tap_words // opb
    assert (f"port=activations offset=slave bundle={cfg.hardware.bundle_of['activations']} "
            f"depth={plan.max_tap_words // opb} max_widen_bitwidth={cfg.hardware.axi_width}") in kernel
    assert "act_beat_t* activations" in kernel and "out_word_t*" not in kernel
    taps = json.loads(files["taps.json"])
    assert [(t["name"], t["parts"], t["part_words"], t["part_stride"], t["image_stride"]) for t in taps] == \
        [(n, r.parts, r.part_words, r.part_stride, plan.max_tap_words) for n, r in plan.tap_regions.items()]
    act = simbit_data(cfg, "lib", "regmap", "0" * 64)["buffers"]["activations"]
    assert (act["words_per_image"], act["tap_words_per_image"]) == (plan.image_stride(False), plan.image_stride(True))


def test_beat_bank_reads():
    """A bus word of a row-major region of a row buffer (cyclic banks) reads a bank once per run of consecutive
    columns it covers that meets the bank (ceil(run / banks) times for a run longer than the banks): once inside
    a row, at most twice across a row end, more with more words than banks or rows shorter than a bus word."""
    from edgemoe.hls.plan import beat_bank_reads

    assert beat_bank_reads(9, 64, 8, 16) == 1          # whole bus words in a row, 8 of 16 banks
    assert beat_bank_reads(9, 24, 16, 16) == 2         # across a row end: the row's last 8 and the next's first 8
    assert beat_bank_reads(9, 20, 8, 16) == 2          # the row's last 4 (banks 0-3) and the next's first 4
    assert beat_bank_reads(9, 12, 8, 16) == 1          # the row's last 4 (banks 8-11), the next's first 4 (0-3)
    assert beat_bank_reads(9, 40, 32, 4) == 8          # 32 words over 4 banks; runs of whole 8s across a row end
    assert beat_bank_reads(9, 16, 32, 4) == 8          # two whole rows of 16: 4 + 4 of each bank
    assert beat_bank_reads(9, 5, 16, 16) == 4          # three whole rows of 5 and a word: bank 0 four times
    assert beat_bank_reads(1, 4, 8, 16) == 1           # one short region: its 4 words


def test_output_tokens_keep_ii_1_when_a_bus_word_fits_the_banks():
    """write_rows writes rows of DIM, 3 DIM and MLP_HIDDEN words, multiples of cu_in (the config checker refuses
    others), so with OUT_PER_BEAT <= cu_in a bus word reads a bank of the row buffer at most twice (once in a
    row, twice across a row end): II 1 on two ports, whatever the widths; with more words than banks, more."""
    seen = 0
    for ci in (4, 12, 16, 64):
        for dim in (48, 192):
            for axi in (64, 256, 1024):
                try:
                    cfg = load_config("m3vit-micro", [f"hardware.cu_in={ci}", f"model.embed_dim={dim}",
                                                      "model.num_heads=2", f"hardware.axi_width={axi}",
                                                      "hardware.cu_out=8", "model.expert_hidden=192"])
                    plan = KernelPlan.from_config(cfg)
                except (ConfigError, ValueError):
                    continue
                seen += 1
                regions = [plan.token_region, *(r for r in plan.tap_regions.values() if r.writer == "write_rows")]
                assert all(r.cols % ci == 0 for r in regions)
                if plan.out_per_beat <= ci:
                    assert plan.write_bank_reads <= 2 and plan.write_ii == 1, (ci, dim, axi)
                else:
                    assert plan.write_bank_reads >= -(-plan.out_per_beat // ci), (ci, dim, axi)
    assert seen > 12


@pytest.mark.parametrize("name", ["micro", "narrow-rows-bus1024"])
def test_csim_writes_whole_bus_words_and_nothing_else(name, tmp_path_factory):
    """The kernel writes each region (each head's part of a per-head tap) from its bus word, the rest of its last
    bus word zero, and no other word of the buffer: a buffer filled with a marker keeps it everywhere else."""
    cfg, sd, proj = _project(name, tmp_path_factory)
    plan, lib = proj.plan, proj._lib
    images = synthetic_images(cfg.model, 2, seed=3)
    pixels = proj.pixels(images).reshape(-1)
    golden = FixedM3ViT(cfg, sd).forward(images, 0)
    checked = ["blocks.0.scores", "blocks.0.softmax_inv", "blocks.1.gate_logits", "blocks.1.gate_scores",
               "blocks.1.topk_idx", "blocks.1.expert_counts", "blocks.0.qkv", "pixels"]
    for tap in [None, *checked]:
        stride = plan.image_stride(tap is not None)
        assert lib.image_words(TAP_NONE if tap is None else plan.tap_id[tap]) == stride
        buf = np.full(2 * stride + 5, -7, dtype=lib.out_dtype)
        _, _, status = lib.run(pixels, proj.packed_weights, 0, 2, TAP_NONE if tap is None else plan.tap_id[tap],
                               buf)
        assert status == 0, tap
        r = plan.region(tap)
        ref = (golden.tokens if tap is None else golden.taps[tap]).numpy()
        want = np.full((2, stride), -7, dtype=lib.out_dtype)
        want[:, :r.stride] = r.pack(ref)
        assert np.array_equal(buf[:2 * stride].reshape(2, stride), want), tap
        assert (buf[2 * stride:] == -7).all(), tap


def test_generated_project_builds_and_its_testbench_passes(tmp_path):
    cfg = load_config("m3vit-micro")
    proj = HLSProject(cfg)
    out = proj.write(tmp_path / "prj")
    for rel in ("src/edgemoe_vit.cpp", "include/edgemoe_numerics.h", "tb/tb_edgemoe.cpp", "build_prj.tcl",
                "bd_zcu102.tcl", "Makefile", "regmap.json", "layout.json", "taps.json", "config.yaml", "tb/data/expected.bin"):
        assert (out / rel).is_file(), rel
    assert load_config(str(out / "config.yaml")).digest() == cfg.digest()
    run = subprocess.run(["make", "csim"], cwd=out, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "tb: 0 of 576 words differ" in run.stdout
    # the testbench fails when the expected words are wrong
    exp = np.fromfile(out / "tb/data/expected.bin", dtype=np.int64)
    exp[7] += 1
    exp.tofile(out / "tb/data/expected.bin")
    run = subprocess.run(["./build/tb_edgemoe", "tb/data"], cwd=out, capture_output=True, text=True)
    assert run.returncode == 1 and "1 of 576 words differ" in run.stdout
    # targets that need Xilinx tools say so
    run = subprocess.run(["make", "hls"], cwd=out, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode != 0 and "vitis_hls" in run.stdout + run.stderr
    # the RTL harness target says when Vitis has exported nothing yet
    run = subprocess.run(["make", "rtlsim", f"PYTHON={sys.executable}"], cwd=out, capture_output=True, text=True)
    assert run.returncode != 0 and "no exported RTL under ." in run.stderr and "make hls" in run.stderr


def test_alveo_project_has_link_config(tmp_path):
    cfg = load_config("m3vit-micro", ["hardware.board=u280"])
    out = HLSProject(cfg).write(tmp_path / "prj")
    cfg_text = (out / "alveo_link.cfg").read_text()
    assert "nk=edgemoe_vit:1" in cfg_text and "sp=edgemoe_vit_1.weights" in cfg_text
    assert "export_design -format xo" in (out / "build_prj.tcl").read_text()
    assert not (out / "bd_zcu102.tcl").exists()


def test_generated_code_is_synthesizable_and_the_check_can_fail(tmp_path):
    out = HLSProject("m3vit-micro").write(tmp_path / "prj")
    assert check_project(out) == []
    kernel = (out / "src/edgemoe_vit.cpp").read_text()
    seeded = {
        "dynamic memory": "static int* leak() { return new int[4]; }\n",
        "STL": "#include <vector>\nstatic std::vector<int> v;\n",
        "floating point": "static float half(float x) { return x * 0.5f; }\n",
        "unbounded loop": "static int spin(int x) { while (x > 0) x--; return x; }\n",
        "loop without constant bound": "static int sum(int n) { int s = 0; for (int i = 0; i < n; i++) s += i; return s; }\n",
        "recursion": "static int fact(int n) { if (n > 1) { return n * fact(n - 1); } return 1; }\n",
    }
    for rule, snippet in seeded.items():
        found = check_source("src/edgemoe_vit.cpp", snippet + kernel, top="edgemoe_vit")
        assert any(rule.split()[0] in v.rule for v in found), (rule, [str(v) for v in found])
    no_pragma = kernel.replace("#pragma HLS INTERFACE m_axi port=weights", "// removed")
    found = check_source("src/edgemoe_vit.cpp", no_pragma, top="edgemoe_vit")
    assert any("weights" in v.rule for v in found)


def test_weight_layout_is_aligned_and_complete():
    cfg = load_config("m3vit-tiny-cityscapes")
    layout = WeightLayout.of(cfg)
    assert layout.word_bits == 16 and layout.align_words == 16
    end = 0
    for s in layout.slots:
        assert s.offset % layout.align_words == 0 and s.offset >= end
        end = s.offset + s.size
    assert layout.total_words >= end
    m = cfg.model
    # patch w/b, cls, pos; per block 8 attention/norm tensors + gates and 4 per expert, or fc1/fc2 w/b
    expected = 4 + sum(8 + (len(m.tasks) + 4 * m.num_experts if m.is_moe(i) else 4) for i in range(m.depth))
    assert len(layout.slots) == expected
    sd = synthetic_state_dict(load_config("m3vit-micro").model, seed=0)
    proj = HLSProject("m3vit-micro", sd)
    lay = proj.layout
    s = lay["backbone.blocks.1.mlp.experts.3.h4toh.weight"]
    stored = proj.packed_weights[s.offset:s.offset + s.size].reshape(s.shape)
    assert np.array_equal(stored, proj.weights.raw("backbone.blocks.1.mlp.experts.h4toh.weight")[3].numpy())
    g = lay["backbone.blocks.3.mlp.gate.1.w_gate"]
    assert np.array_equal(proj.packed_weights[g.offset:g.offset + g.size].reshape(g.shape),
                          layout_tensor(proj.weights, g.key).numpy())


def test_w8_matrices_are_packed_two_to_a_word():
    """w8a16: the compute unit's 8-bit matrices take half the words (their bytes in order, little-endian), so a
    256-bit bus word carries 32 of them; biases and the rest stay 16-bit words; every tensor on a bus word."""
    from edgemoe.host.weights_file import unpack_words

    cfg = load_config("m3vit-micro", ["precision.profile=w8a16"])
    proj = HLSProject(cfg, synthetic_state_dict(cfg.model, seed=0))
    lay, plan = proj.layout, proj.plan
    assert (lay.word_bits, plan.matrix_word_bits, plan.matrix_per_beat, plan.words_per_beat) == (16, 8, 32, 16)
    w16 = WeightLayout.of(load_config("m3vit-micro"))
    assert lay.total_words < 0.6 * w16.total_words
    s = lay["backbone.blocks.1.mlp.experts.3.h4toh.weight"]
    assert s.bits == 8 and s.words == s.size // 2 and s.offset % lay.align_words == 0
    raw = proj.weights.raw("backbone.blocks.1.mlp.experts.h4toh.weight")[3].numpy().reshape(-1)
    stored = proj.packed_weights.view(np.uint8)[2 * s.offset:2 * s.offset + s.size].view(np.int8)
    assert np.array_equal(stored, raw)
    b = lay["backbone.blocks.1.mlp.experts.3.h4toh.bias"]
    assert b.bits == 16 and np.array_equal(proj.packed_weights[b.offset:b.offset + b.size],
                                           proj.weights.raw("backbone.blocks.1.mlp.experts.h4toh.bias")[3].numpy())
    back = unpack_words(cfg, proj.packed_weights)
    for key in ("backbone.blocks.1.mlp.experts.h4toh.weight", "backbone.patch_embed.proj.weight",
                "backbone.blocks.0.attn.qkv.bias"):
        assert torch.equal(back.raw(key), proj.weights.raw(key)), key


def test_register_map_follows_vitis_layout():
    cfg = load_config("m3vit-micro")
    regs = register_map(cfg)["registers"]
    assert regs["ap_ctrl"]["offset"] == 0 and regs["isr"]["offset"] == 0x0C
    assert [a.offset for a in kernel_args(cfg)] == [0x10, 0x1C, 0x28, 0x34, 0x3C, 0x44, 0x4C, 0x54]
    assert regs["weights"]["bundle"] == "gmem1" and regs["status"]["ctrl_offset"] == 0x58


def test_weight_lanes_interface_and_reads(tmp_path):
    """hardware.weight_lanes=2: two pointer arguments on bundles of their own (registers after image, each at the
    lane width), every weight read joins index b of both lanes in one iteration, and the lint checks each lane's
    reads on its bundle."""
    cfg = load_config("m3vit-micro", ["hardware.weight_lanes=2"])
    args = {a.name: a for a in kernel_args(cfg) if a.kind == "m_axi"}
    assert list(args) == ["image", "weights_0", "weights_1", "activations"]
    assert args["weights_0"].ctype == args["weights_1"].ctype == "const weight_lane_t*"
    regs = register_map(cfg)
    assert regs["weight_lanes"] == ["weights_0", "weights_1"] and "weight_lanes" not in register_map(
        load_config("m3vit-micro"))
    assert [regs["registers"][n]["offset"] for n in args] == [0x10, 0x1C, 0x28, 0x34]
    out = HLSProject(cfg).write(tmp_path / "prj")
    assert check_project(out) == []
    kernel = (out / "src/edgemoe_vit.cpp").read_text()
    header = (out / "include/edgemoe_kernel.h").read_text()
    assert "static const int WEIGHT_LANES = 2;" in header and "static const int WEIGHT_LANE_BITS = 128;" in header
    for lane in (0, 1):
        assert (f"#pragma HLS INTERFACE m_axi port=weights_{lane} offset=slave bundle=gmem1_{lane} "
                f"depth={KernelPlan.from_config(cfg).weight_beats} max_widen_bitwidth=128") in kernel
    joined = "join_lanes(weights_0[first + i], weights_1[first + i])"
    assert f"beats.write({joined});" in kernel
    assert kernel.count("join_lanes(") == 3   # LOAD_W, LOAD_NEXT, CONSTS
    assert "weights[" not in kernel
    seeded = kernel.replace(joined, "join_lanes(weights_0[first + i], weights_0[first + i + 1])")
    found = check_source("src/edgemoe_vit.cpp", seeded, top="edgemoe_vit")
    assert any(v.rule == "shared-bundle-loop" and "gmem1_0" in str(v) for v in found), [str(v) for v in found]
