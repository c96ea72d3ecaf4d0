"""LayerNorm RTL unit (sim/units/layernorm.py): exact against golden ``numerics.layernorm.layernorm``.

Normal suite: cocotb on Icarus for m3vit-micro (w16a32, w16a16: D = 64, the
divisions are shifts), one Verilator run with D = 96 (a sequential division by
3), the self-test that a wrong epsilon makes the runner raise (the generic
wrong-rounding self-test, and lint of micro's Verilog, are in
test_sim_attention_units.py, which runs over every attention unit), the
constant divider and the plan's exactness bound in Amaranth's simulator, lint
of non-power-of-two and odd-mode designs, the registry entry.  ``-m slow``:
the full-size preset (D = 192) on Verilator, odd rounding / overflow modes,
D = 96 and D = 100 (division by 25) on Icarus, more seeds, the resource figures.
"""
from __future__ import annotations

import random
import shutil

import pytest

from edgemoe.loading import load_config
from edgemoe.sim.build import generate, unit_info
from edgemoe.sim.formats import divider_plan, layernorm_plan
from edgemoe.sim.runner import SimulationFailed, run_unit

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("yosys") is None,
                                reason="Icarus Verilog / Yosys not installed (make setup)")

PROFILES = {"w16a32": ["precision.profile=w16a32"], "w16a16": ["precision.profile=w16a16"]}
#: every rounding family on the LayerNorm casts, WRAP on ln_norm and act, a left shift into
#: ln_centered (frac 14 > act's 10) and beta finer than n * gamma (frac 24 > 10 + 11)
ODD = ["precision.profile=w16a16", "precision.ln_centered=fixed<20,6,RND_INF,SAT>",
       "precision.ln_norm=fixed<16,3,RND_MIN_INF,WRAP>", "precision.ln_beta=fixed<16,-8,RND,SAT>",
       "precision.act=fixed<16,6,RND_CONV,WRAP>", "precision.ln_inv_std=ufixed<24,11,RND_ZERO,SAT>"]
TESTS = 5


def micro(*overrides: str, profile: str = "w16a32"):
    return load_config("m3vit-micro", PROFILES[profile] + list(overrides))


def _passed(r, cfg):
    assert r.passed and len(r.tests) == TESTS, [(t.name, t.passed) for t in r.tests]
    perf, plan = r.perf, layernorm_plan(cfg)
    assert perf["ii"] == perf["out_ii"] == 1.0 and perf["row_cycles"] == cfg.model.embed_dim
    assert perf["latency"] == perf["latency_max"] == perf["design_latency"] == plan.latency
    assert perf["latency_last"] == plan.latency + cfg.model.embed_dim - 1
    assert perf["hold_taken"] == plan.slots * cfg.model.embed_dim
    return perf


# --- cocotb ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", list(PROFILES))
def test_layernorm_exact_on_icarus(profile):
    cfg = micro(profile=profile)
    perf = _passed(run_unit("layernorm", cfg, "icarus", vectors=15), cfg)
    assert perf["edge_rows"] > 20 and perf["backpressure_rows"] == 15 and perf["param_sets"] == 5
    assert perf["latency"] == 64 + 7 + 12                       # D + rsqrt + hand-over; no division cycles


def test_layernorm_non_power_of_two_on_verilator():
    """D = 96 = 32 * 3: the mean and variance divisions run sequentially (8 and 12 cycles)."""
    cfg = micro("model.embed_dim=96")
    plan = layernorm_plan(cfg)
    assert (plan.mean_div.odd, plan.mean_div.cycles, plan.var_div.cycles) == (3, 8, 12)
    perf = _passed(run_unit("layernorm", cfg, "verilator", vectors=15), cfg)
    assert perf["simulator"] == "verilator" and perf["latency"] == 96 + 8 + 12 + 7 + 12


def test_layernorm_fails_on_a_wrong_epsilon():
    """Twice the epsilon in the golden model: the rows whose variance floors to 0 (r = rsqrt(eps))
    with non-zero centred words differ, so the edge-row test must fail and the runner raise."""
    with pytest.raises(SimulationFailed) as e:
        run_unit("layernorm", micro(profile="w16a16"), "icarus", vectors=3, perturb="eps", tag="perturb-eps")
    msg = str(e.value)
    assert "cocotb tests failed" in msg and "edge_rows_and_params" in msg and "expected" in msg


# --- the divider and the plan ----------------------------------------------------------------------

def _divider_run(plan, numerators: list[int], gap: int) -> list[tuple[int, int]]:
    """(quotient, cycles from start to done) of each numerator, starts ``gap`` cycles apart."""
    from amaranth import Elaboratable, Module, Signal
    from amaranth.sim import Simulator

    from edgemoe.sim.units.layernorm import const_divider

    class Top(Elaboratable):
        def __init__(self):
            self.start = Signal()
            self.n = Signal(max(plan.dividend_max.bit_length(), 1))
            self.done = Signal()
            self.q = Signal(plan.quotient_bits)

        def elaborate(self, platform):
            m = Module()
            done, q = const_divider(m, "div", self.start, self.n, plan)
            m.d.comb += [self.done.eq(done), self.q.eq(q)]
            return m

    top = Top()
    got = []

    async def bench(ctx):
        started = []
        cycle = 0
        for n in numerators:
            for k in range(gap):
                ctx.set(top.start, int(k == 0))
                if k == 0:
                    ctx.set(top.n, n)
                    started.append(cycle)
                _, _, done, q = await ctx.tick().sample(top.done, top.q)     # values during `cycle`
                if done:
                    got.append((q, cycle - started[len(got)]))
                cycle += 1
        ctx.set(top.start, 0)
        for _ in range(plan.cycles + 2):
            _, _, done, q = await ctx.tick().sample(top.done, top.q)
            if done:
                got.append((q, cycle - started[len(got)]))
            cycle += 1

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("divisor,nmax", [(3, 3 * (2 ** 32 - 1)), (192, 192 * (2 ** 32 - 1)), (96, 96 * 2 ** 46),
                                          (100, 100 * 2 ** 30), (7, 7 * 1000), (64, 64 * 2 ** 31), (1, 255),
                                          (25, 24), (97, 97 * 2 ** 20 + 96)])
def test_constant_divider_is_exact_in_amaranth_sim(divisor, nmax):
    """floor(n / D) over the whole range: 0, the top, multiples of D and their neighbours, random."""
    plan = divider_plan(divisor, nmax, max_cycles=max(divisor - 1, 1))
    rng = random.Random(divisor)
    ns = {0, 1, nmax, nmax - 1, divisor - 1, divisor, divisor + 1, (nmax // divisor) * divisor,
          (nmax // divisor) * divisor - 1}
    ns |= {k * divisor + e for k in (1, 2, rng.randrange(nmax // divisor + 1)) for e in (-1, 0, 1)}
    ns |= {rng.randint(0, nmax) for _ in range(40)} | {rng.getrandbits(rng.randint(1, nmax.bit_length())) % (nmax + 1)
                                                       for _ in range(20)}
    ns = sorted(n for n in ns if 0 <= n <= nmax)
    got = _divider_run(plan, ns, plan.cycles + 1)               # back to back: the closest starts allowed
    assert [q for q, _ in got] == [n // divisor for n in ns]
    assert {c for _, c in got} == {plan.cycles + 1}
    assert plan.cycles + 1 <= max(divisor, 2)


def test_divider_plan_bound():
    """The long division needs only its quotient register to hold the quotient; the plan checks
    the initial remainder (the numerator's bits above the quotient) is below the odd divisor."""
    for d in range(1, 400):
        for nmax in (d - 1, d, 5 * d + 3, d * (2 ** 32 - 1), d * 2 ** 46):
            if nmax < 0:
                continue
            plan = divider_plan(d, nmax, max_cycles=max(d - 1, 1))
            assert plan.odd * 2 ** plan.shift == d and plan.odd % 2 == 1
            assert (nmax >> plan.shift) >> plan.quotient_bits < plan.odd
            assert nmax // d < 2 ** plan.quotient_bits
            assert plan.cycles == 0 if plan.odd == 1 else plan.cycles <= max(d - 1, 1)
    tiny = layernorm_plan(load_config("m3vit-tiny-cityscapes"))
    assert (tiny.dim, tiny.slots, tiny.mean_div.cycles, tiny.var_div.cycles, tiny.latency) == (192, 4, 8, 12, 231)
    assert tiny.eps_raw == 268 and str(tiny.var_type) == "ufixed<47,19,TRN,SAT>"


# --- generated Verilog, registry ------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["D96", "D96w16a16", "odd"])
def test_layernorm_verilog_is_lint_clean(case):
    from edgemoe.sim.lint import lint

    over = {"D96": ["model.embed_dim=96"], "D96w16a16": ["precision.profile=w16a16", "model.embed_dim=96"],
            "odd": ODD}[case]
    assert lint(generate("layernorm", load_config("m3vit-micro", over))) == []


def test_layernorm_registry_and_unit_json():
    from edgemoe.sim.units.registry import all_units, get_unit

    spec = get_unit("layernorm")
    assert spec.test_module == "tb_layernorm" and spec.top == "edgemoe_layernorm" and "layernorm" in all_units()
    cfg = micro()
    info = unit_info("layernorm", cfg)
    p, plan = cfg.precision, layernorm_plan(cfg)
    assert info["latency"] == plan.latency and info["params"]["slots"] == plan.slots == 4
    assert info["rams"] == {"rows": [4 * 64, p.act.bits], "params": [64, p.ln_gamma.bits + p.ln_beta.bits]}
    assert info["roms"] == {"rsqrt_tbl": [3 * 2 ** p.rsqrt_table_bits + 1, info["roms"]["rsqrt_tbl"][1]]}
    ports = info["ports"]
    assert ports["in_data"] == {"dir": "in", "bits": p.act.bits, "signed": True}
    assert ports["param_addr"]["bits"] == 6 and ports["out_last"]["dir"] == "out"


# --- slow ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("profile", list(PROFILES))
def test_layernorm_full_preset_on_verilator(profile):
    cfg = load_config("m3vit-tiny-cityscapes", PROFILES[profile])
    _passed(run_unit("layernorm", cfg, "verilator", seed=7, vectors=40), cfg)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["odd", "oddD96", "D96w16a16", "D120", "D24"])
def test_layernorm_other_types_and_lengths_on_icarus(case):
    over = {"odd": ODD, "oddD96": ODD + ["model.embed_dim=96"],
            "D96w16a16": ["precision.profile=w16a16", "model.embed_dim=96"],
            "D120": ["model.embed_dim=120", "model.num_heads=3"],
            "D24": ["model.embed_dim=24", "model.num_heads=3"]}[case]
    cfg = load_config("m3vit-micro", over)
    _passed(run_unit("layernorm", cfg, "icarus", seed=3, vectors=24), cfg)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_layernorm_more_seeds_on_verilator(seed):
    cfg = micro("model.embed_dim=96", profile="w16a16")
    _passed(run_unit("layernorm", cfg, "verilator", seed=seed, vectors=60), cfg)


@pytest.mark.slow
def test_layernorm_resources_tiny():
    from edgemoe.sim.resources import resource_table

    cfgs = [load_config("m3vit-tiny-cityscapes", PROFILES[p]) for p in PROFILES]
    rows = {r["profile"]: r for r in resource_table(["layernorm"], cfgs)}
    assert rows["w16a32"]["dsp"] > rows["w16a16"]["dsp"] > 0
    assert rows["w16a32"]["params"]["dim"] == 192 and rows["w16a32"]["ram_bits"] == 4 * 192 * 32 + 192 * 32
