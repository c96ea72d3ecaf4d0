"""The synthesis arithmetic in C simulation: exact-width accumulators (``EDGEMOE_SYNTH_ARITH``) equal golden too.

The kernel accumulates products in ``accum_t`` under Vitis HLS and in native
64-bit integers in C simulation; ``-DEDGEMOE_SYNTH_ARITH`` compiles the
hardware's path with g++, so its words are checked against the golden model
like the default build's.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgemoe.golden.fixed_model import FixedM3ViT
from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict
from edgemoe.hls.csim import (LIBRARY, RECORD, CsimLibrary, ToolError, cache_key, compile_sources,
                              compiler_command)
from edgemoe.hls.interface import TAP_NONE, config_hash32
from edgemoe.hls.project import CSIM_SOURCES, HLSProject, kernel_sources
from edgemoe.loading import load_config

SYNTH = ("EDGEMOE_SYNTH_ARITH",)


def test_defines_are_part_of_the_cache_key_and_checked():
    files = kernel_sources(load_config("m3vit-micro"))
    assert "defined(EDGEMOE_SYNTH_ARITH)" in files["src/edgemoe_vit.cpp"].decode()
    plain, synth = compiler_command("g++"), compiler_command("g++", SYNTH)
    assert synth == plain + ["-DEDGEMOE_SYNTH_ARITH"]
    assert cache_key(files, plain) != cache_key(files, synth)
    assert compiler_command("g++", SYNTH + SYNTH) == synth
    with pytest.raises(ToolError, match="EDGEMOE_TYPO"):
        compiler_command("g++", ("EDGEMOE_TYPO",))


def test_synthesis_arithmetic_equals_golden_at_every_tap(csim_cache):
    cfg = load_config("m3vit-micro")
    sd = synthetic_state_dict(cfg.model, seed=0)
    proj = HLSProject(cfg, sd, cache_dir=csim_cache)
    files = kernel_sources(cfg)
    default = compile_sources(files, CSIM_SOURCES, csim_cache / "lib", config_hash32(cfg))
    synth = compile_sources(files, CSIM_SOURCES, csim_cache / "lib", config_hash32(cfg), defines=SYNTH)
    assert "-DEDGEMOE_SYNTH_ARITH" in json.loads((synth.library.parent / RECORD).read_text())["compiler"]
    assert synth.library.parent != default.library.parent and synth.library.name == LIBRARY
    assert synth.sha256 != default.sha256, "the define did not change the compiled kernel"
    assert not synth.warnings, synth.warnings
    lib = CsimLibrary(synth.library)

    m, plan = cfg.model, proj.plan
    images = synthetic_images(m, 2, seed=3)
    pixels = proj.pixels(images).reshape(-1)
    fixed = FixedM3ViT(cfg, sd)
    for task in range(len(m.tasks)):
        golden = fixed.forward(images, task)
        out, config_hash, status = lib.run(pixels, proj.packed_weights, task, 2, TAP_NONE, m.num_tokens * m.embed_dim)
        assert status == 0 and config_hash == config_hash32(cfg)
        assert np.array_equal(out.reshape(2, m.num_tokens, m.embed_dim), golden.tokens.numpy()), f"task {task} tokens"
        bad = []
        for tap, name in enumerate(plan.taps):
            out, _, status = lib.run(pixels, proj.packed_weights, task, 2, tap, lib.max_tap_words)
            words = out.reshape(2, -1)[:, :plan.tap_words[name]].reshape(2, *plan.tap_shapes[name])
            if status != 0 or not np.array_equal(words, golden.taps[name].numpy()):
                bad.append(name)
        assert not bad, f"task {task}: {len(bad)} of {len(plan.taps)} taps differ: {bad[:5]}"
