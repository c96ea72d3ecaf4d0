"""Compute tile RTL unit (sim/units/compute_tile.py): cu_in x cu_out MACs, exact against golden ``linear``.

Normal suite: cocotb on Icarus for m3vit-micro (w16a32, w16a16: cu 8x8), a
4x2 tile with a bias finer than the products and a wrapping, ties-to-even
activation type, the self-test that a wrong golden expectation makes the
runner raise, lint of the generated Verilog, the registry entry.
"""
from __future__ import annotations

import shutil

import pytest

from edgemoe.loading import load_config
from edgemoe.sim.build import generate, unit_info
from edgemoe.sim.runner import SimulationFailed, run_unit

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed (make setup)")

CASES = {
    "w16a32": ["precision.profile=w16a32"],
    "w16a16": ["precision.profile=w16a16"],
    # 4x2 tile; bias frac 27 > act.frac + weight.frac = 24 (the sum moves to the bias scaling); WRAP / RND_CONV
    "cu4x2_finebias_wrap": ["precision.profile=w16a16", "hardware.cu_in=4", "hardware.cu_out=2",
                            "precision.bias=fixed<16,-11,RND,SAT>", "precision.accum=fixed<60,28>",
                            "precision.act=fixed<16,6,RND_CONV,WRAP>"],
}
LATENCY = 9


@pytest.mark.parametrize("case", list(CASES))
def test_compute_tile_exact_on_icarus(case):
    cfg = load_config("m3vit-micro", CASES[case])
    r = run_unit("compute_tile", cfg, "icarus", vectors=30 if case != "cu4x2_finebias_wrap" else 24)
    assert r.passed and len(r.tests) == 4
    perf, hw = r.perf, cfg.hardware
    assert perf["latency"] == perf["latency_max"] == perf["design_latency"] == LATENCY
    assert perf["ii"] == 1.0 and perf["row_cycles"] == perf["row_beats"] == -(-cfg.model.embed_dim // hw.cu_in)
    assert perf["macs"] == hw.cu_in * hw.cu_out


def test_compute_tile_fails_on_a_wrong_expectation():
    """The golden cast with another rounding mode: the runner must raise."""
    with pytest.raises(SimulationFailed) as e:
        run_unit("compute_tile", load_config("m3vit-micro", CASES["w16a32"]), "icarus", vectors=6, perturb=True)
    assert "cocotb tests failed" in str(e.value) and "expected" in str(e.value)


@pytest.mark.parametrize("case", ["w16a32", "w16a16"])
def test_compute_tile_verilog_is_lint_clean_and_described(case):
    from edgemoe.sim.lint import lint

    cfg = load_config("m3vit-micro", CASES[case])
    assert lint(generate("compute_tile", cfg)) == []
    info = unit_info("compute_tile", cfg)
    p, hw = cfg.precision, cfg.hardware
    assert info["latency"] == LATENCY and info["params"]["k_max"] == 768
    assert info["ports"]["in_w"]["bits"] == hw.cu_in * hw.cu_out * p.weight.bits
    assert info["ports"]["out_data"]["bits"] == hw.cu_out * (p.act.bits + p.gate_score.bits)


def test_compute_tile_registry_entry():
    from edgemoe.sim.units.registry import all_units, get_unit

    spec = get_unit("compute_tile")
    assert spec.test_module == "tb_compute_tile" and spec.top == "edgemoe_compute_tile"
    assert all_units()[-1] == "compute_tile"      # in the default runs and the resource table
