"""RTL units (sim/): generated Verilog, lint, and cocotb simulation against the golden spec.

Normal suite: every unit on Icarus for m3vit-micro with the w16a32 and w16a16
profiles and an odd-modes profile (exactness is asserted by the runner
raising), lint of every generated file, one Verilator run, the self-test that
a wrong expectation fails the run, and one Yosys synthesis.  ``-m slow``:
Verilator for every unit and profile, the full-size preset, exhaustive
inputs for the 16/17-bit units, and the resource table with the naive GELU.
"""
from __future__ import annotations

import json
import random
import shutil

import pytest

from edgemoe.loading import load_config
from edgemoe.sim.build import generate
from edgemoe.sim.lint import lint
from edgemoe.sim.pysim import check_unit
from edgemoe.sim.results import load_perf
from edgemoe.sim.runner import SimulationFailed, parse_results, run_unit
from edgemoe.sim.units.registry import STREAM_UNITS as UNITS
from edgemoe.sim.units.registry import random_words, unit_vectors

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("yosys") is None,
                                reason="Icarus Verilog / Yosys not installed (make setup)")

GOLDEN_UNITS = ["exp", "recip", "rsqrt", "gelu"]
PROFILES = {
    "w16a32": ["precision.profile=w16a32"],
    "w16a16": ["precision.profile=w16a16"],
    # every rounding mode family and a WRAP overflow on the unit outputs
    "oddmodes": ["precision.profile=w16a16", "precision.exp=ufixed<16,1,RND_CONV,SAT>",
                 "precision.softmax_inv=ufixed<14,2,RND_INF,WRAP>",
                 "precision.ln_inv_std=ufixed<24,11,RND_ZERO,SAT>",
                 "precision.act=fixed<16,6,RND_CONV,WRAP>"],
}


def micro(profile: str):
    return load_config("m3vit-micro", PROFILES[profile])


def _check_result(r):
    assert r.passed and len(r.tests) == 4, [t.name for t in r.tests]
    assert r.perf["ii"] == 1.0
    assert r.perf["latency"] == r.perf["latency_max"] == r.perf["design_latency"]
    assert r.perf["hold_depth"] == r.perf["design_latency"]   # a stalled pipe holds one word per stage


# --- simulation against golden ---------------------------------------------------------------

@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("unit", GOLDEN_UNITS)
def test_unit_exact_on_icarus(unit, profile):
    cfg = micro(profile)
    _check_result(run_unit(unit, cfg, "icarus", vectors=600))
    perf = load_perf(cfg)[unit]["icarus"]
    assert perf["latency"] >= 2 and perf["backpressure_words"] == 600


def test_naive_gelu_reference_on_icarus():
    cfg = micro("w16a16")
    _check_result(run_unit("gelu_naive", cfg, "icarus", vectors=400))


def test_exp_on_verilator():
    cfg = micro("w16a32")
    r = run_unit("exp", cfg, "verilator", vectors=600)
    _check_result(r)
    assert load_perf(cfg)["exp"]["verilator"]["latency"] == r.perf["design_latency"]


def test_testbench_fails_on_a_wrong_expectation():
    """The exp testbench against a perturbed exp2 table must fail, and the runner must raise."""
    with pytest.raises(SimulationFailed) as e:
        run_unit("exp", micro("w16a32"), "icarus", vectors=50, perturb=True)
    msg = str(e.value)
    assert "edges_full_rate" in msg and "expected" in msg


def test_runner_raises_when_no_test_ran():
    with pytest.raises(SimulationFailed, match="no cocotb test ran|no results file"):
        run_unit("gelu", micro("w16a16"), "icarus", test_module="tb_no_tests", tag="notests")


def test_parse_results_counts_failures(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text('<testsuites><testsuite name="s" tests="2">'
                   '<testcase name="a" classname="m"/>'
                   '<testcase name="b" classname="m"><failure message="boom"/></testcase>'
                   '</testsuite></testsuites>')
    cases = parse_results(xml)
    assert [(c.name, c.passed) for c in cases] == [("a", True), ("b", False)]
    assert "boom" in cases[1].message
    with pytest.raises(SimulationFailed):
        parse_results(tmp_path / "missing.xml")


# --- the same designs in Amaranth's simulator, over more profiles (fast) ------------------------

@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("unit", GOLDEN_UNITS)
def test_unit_exact_in_amaranth_sim(unit, profile):
    cfg = micro(profile)
    spec = UNITS[unit]
    vg = unit_vectors(spec, cfg, seed=11, n_random=300)
    assert check_unit(spec, cfg, vg["edge"] + vg["tie"] + vg["random"]) == []


def test_tie_vectors_hit_ties():
    """The tie search finds exact half-LSB ties where the output type rounds."""
    cfg = micro("w16a16")
    for unit in ("exp", "gelu"):
        spec = UNITS[unit]
        ties = unit_vectors(spec, cfg, seed=1, n_random=0)["tie"]
        out = spec.out_type(cfg)
        a = spec.model(cfg, __import__("torch").tensor(ties), out.with_modes(rounding="RND"))
        b = spec.model(cfg, __import__("torch").tensor(ties), out.with_modes(rounding="RND_MIN_INF"))
        assert (a != b).sum() > 0, unit


# --- lint ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["w16a32", "w16a16"])
@pytest.mark.parametrize("unit", GOLDEN_UNITS + ["gelu_naive"])
def test_generated_verilog_is_lint_clean(unit, profile):
    path = generate(unit, micro(profile))
    assert lint(path) == []


def test_lint_reports_real_problems(tmp_path):
    """The waivers are narrow: an unused named signal of the design still warns."""
    from amaranth import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from edgemoe.sim.build import emit_verilog

    class Sloppy(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(8), "y": Out(8)})

        def elaborate(self, platform):
            m = Module()
            spare = Signal(8, name="spare")
            m.d.comb += [spare.eq(self.a + 1), self.y.eq(self.a)]
            return m

    path = emit_verilog(Sloppy(), "sloppy", out_dir=tmp_path)
    warnings = lint(path)
    assert any("UNUSEDSIGNAL" in w and "spare" in w for w in warnings), warnings


def test_generation_is_cached_and_parametric():
    a = generate("gelu", micro("w16a32"))
    b = generate("gelu", micro("w16a16"))
    assert a != b and a.parent.parent.parent != b.parent.parent.parent
    mtime = a.stat().st_mtime_ns
    assert generate("gelu", micro("w16a32")).stat().st_mtime_ns == mtime
    info = json.loads((b.parent / "unit.json").read_text())
    assert info["in"] == "fixed<16,6,RND,SAT>" and info["in_bits"] == 16 and info["latency"] >= 2
    assert "[15:0] in_data" in b.read_text()


# --- resources ---------------------------------------------------------------------------------------

def test_parse_stat():
    from edgemoe.sim.resources import parse_stat, summarise

    text = """
=== top ===
   Number of wires:                450
   Number of cells:                843
     CARRY4                         35
     DSP48E2                         3
     FDRE                          222
     LUT2                          120
     LUT6                          184
     RAM64M                          2
     RAMB18E2                        1
     RAMB36E2                        2
     SRL16E                          9
"""
    s = summarise(parse_stat(text))
    assert (s["lut"], s["ff"], s["dsp"], s["bram"], s["lutram"], s["srl"], s["carry"]) == \
        (304, 222, 3, 2.5, 2, 9, 35)


def test_synthesis_of_a_unit():
    from edgemoe.sim.resources import unit_resources

    res = unit_resources("exp", micro("w16a16"))
    assert res["lut"] > 0 and res["ff"] > 0 and res["dsp"] >= 1


# --- slow: every simulator, the full-size preset, exhaustive inputs, the resource table --------

@pytest.mark.slow
@pytest.mark.parametrize("profile", ["w16a32", "w16a16"])
@pytest.mark.parametrize("unit", GOLDEN_UNITS + ["gelu_naive"])
def test_unit_exact_on_verilator(unit, profile):
    _check_result(run_unit(unit, micro(profile), "verilator"))


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["w16a32", "w16a16"])
@pytest.mark.parametrize("unit", GOLDEN_UNITS + ["gelu_naive"])
def test_unit_exact_full_preset(unit, profile):
    cfg = load_config("m3vit-tiny-cityscapes", [f"precision.profile={profile}"])
    _check_result(run_unit(unit, cfg, "icarus", seed=7, vectors=3000))


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["gelu", "exp"])
def test_unit_exhaustive_w16a16(unit):
    _check_result(run_unit(unit, micro("w16a16"), "icarus", exhaustive=True))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3])
def test_more_seeds_amaranth_sim(seed):
    rng = random.Random(seed)
    for profile in PROFILES:
        cfg = micro(profile)
        for unit in GOLDEN_UNITS:
            spec = UNITS[unit]
            words = random_words(spec.in_type(cfg), rng, 4000, spec.log_uniform)
            assert check_unit(spec, cfg, words) == [], (unit, profile)


@pytest.mark.slow
def test_resource_table_and_naive_gelu_ratio():
    from edgemoe.sim.resources import markdown, naive_ratios, resource_table

    cfgs = [load_config("m3vit-tiny-cityscapes", [f"precision.profile={p}"]) for p in ("w16a32", "w16a16")]
    rows = resource_table(GOLDEN_UNITS + ["gelu_naive"], cfgs)
    assert len(rows) == 10
    text = markdown(rows)
    assert "naive / unit" in text
    for q in naive_ratios(rows):
        assert q["naive"]["bram"] > q["unit"]["bram"]


def test_resources_json_keeps_other_units_rows(tmp_path):
    """A table run over some units replaces their rows and keeps the others (the model reads the file)."""
    from edgemoe.sim.results import merge_resource_rows as merge_rows

    path = tmp_path / "resources.json"
    merge_rows(path, [{"unit": "softmax", "lut": 1}, {"unit": "exp", "lut": 2}])
    merged = merge_rows(path, [{"unit": "softmax", "lut": 3}, {"unit": "gelu", "lut": 4}])
    assert [(r["unit"], r["lut"]) for r in merged] == [("exp", 2), ("gelu", 4), ("softmax", 3)]
    assert json.loads(path.read_text()) == merged
