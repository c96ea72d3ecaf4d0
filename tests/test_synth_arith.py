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
        out, config_hash, status = lib.run(pixels, proj.packed_weights, task, 2, TAP_NONE)
        assert status == 0 and config_hash == config_hash32(cfg)
        tokens = plan.token_region.unpack(out.reshape(2, plan.image_stride(False)))
        assert np.array_equal(tokens, golden.tokens.numpy()), f"task {task} tokens"
        bad = []
        for tap, name in enumerate(plan.taps):
            out, _, status = lib.run(pixels, proj.packed_weights, task, 2, tap)
            words = plan.tap_regions[name].unpack(out.reshape(2, plan.image_stride(True)))
            if status != 0 or not np.array_equal(words, golden.taps[name].numpy()):
                bad.append(name)
        assert not bad, f"task {task}: {len(bad)} of {len(plan.taps)} taps differ: {bad[:5]}"


@pytest.mark.parametrize("profile", ["w16a32", "w8a16"])
def test_narrow_exp_shift_equals_the_wide_one_in_every_rounding_mode(profile, tmp_path):
    """exp_neg's final shift under synthesis (exp_shift_round: EXP_V_BITS + 2 bits, the amount clamped) equals
    the 64-bit shift_round it replaces, for every rounding mode, every value an EXP2_TABLE interpolation can
    give (0 .. the largest entry: its low and high ends and a stride through the rest) and every shift from 0
    to well past the clamp."""
    import shutil
    import subprocess

    from edgemoe.hls.csim import ap_types_dir
    from edgemoe.golden.numerics.fixed import ROUNDING_MODES

    cfg = load_config("m3vit-micro", [f"precision.profile={profile}"])
    files = kernel_sources(cfg)
    inc = tmp_path / "include"
    inc.mkdir()
    for rel, data in files.items():
        if rel.startswith("include/"):
            (tmp_path / rel).write_bytes(data)
    checks = "\n".join(f"    bad += check<R_{mode}>();" for mode in ROUNDING_MODES)
    (tmp_path / "t.cpp").write_text(f"""
#define EDGEMOE_SYNTH_ARITH
#include <cstdio>
#include "edgemoe_numerics.h"
template <int MODE> static long check() {{
    long bad = 0;
    const wide_t top = (wide_t(1) << EXP_V_BITS) - 1;
    for (wide_t v = 0; v <= top; v += (v < 4096 || v > top - 4096) ? 1 : 997)
        for (int s = 0; s <= EXP_V_BITS + 8; s++)
            if (exp_shift_round<MODE>(v, s) != shift_round<MODE>(v, s)) bad++;
    return bad;
}}
int main() {{
    long bad = 0;
{checks}
    std::printf("%ld %d\\n", bad, EXP_V_BITS);
    return 0;
}}
""")
    cxx = shutil.which("g++")
    assert cxx, "g++ not found"
    subprocess.run([cxx, "-std=c++14", "-O2", f"-I{inc}", f"-isystem{ap_types_dir()}", "-o", str(tmp_path / "t"),
                    str(tmp_path / "t.cpp")], check=True, capture_output=True)
    bad, vbits = map(int, subprocess.run([str(tmp_path / "t")], check=True, capture_output=True,
                                         text=True).stdout.split())
    assert bad == 0
    assert vbits == cfg.precision.table_frac_bits + 2   # the table's last entry is 2.0: 2^(TABLE_FRAC + 1)
