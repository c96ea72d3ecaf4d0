"""Attention / routing RTL units (sim/): online softmax, attention schedule, top-k + expert queues.

Normal suite: each unit in cocotb on Icarus for m3vit-micro (w16a32 and
w16a16; the schedule for several (N, P) pairs including P=1 and P=N; top-k
also with k=1 and k=E; the softmax with P=1), exactness asserted by the
runner raising; one Verilator run; the self-test that a wrong golden
expectation makes the runner raise (each unit); lint of the generated
Verilog; the golden helpers against the golden model (and its key order);
quick sweeps in Amaranth's simulator; one Yosys synthesis.  ``-m slow``:
Verilator for every unit, the full-size preset, and the resource table for
m3vit-tiny-cityscapes (w16a32, w16a16).
"""
from __future__ import annotations

import random
import shutil

import pytest
import torch

from edgemoe.loading import load_config
from edgemoe.sim.build import generate, unit_info
from edgemoe.sim.runner import run_unit
from edgemoe.sim.units.registry import (MULTI_FIELD_UNITS, SOFTMAX_RECURRENCE, attn_cycles, schedule_expected,
                                        schedule_problems, schedule_stream, softmax_expected, topk_expected)

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("yosys") is None,
                                reason="Icarus Verilog / Yosys not installed (make setup)")

#: the units of this file: the multi-field units but the compute tile (tests/test_sim_compute_tile.py)
ATTENTION_UNITS = {u: s for u, s in MULTI_FIELD_UNITS.items() if u != "compute_tile"}
PROFILES = {"w16a32": ["precision.profile=w16a32"], "w16a16": ["precision.profile=w16a16"]}
#: (num_tokens, parallel) of the schedule runs: micro's own, P=1, P=N, and a 5-token model with P=3
SCHEDULES = {"N9P2": [], "N9P1": ["hardware.attn_parallel=1"], "N9P9": ["hardware.attn_parallel=9"],
             "N5P3": ["model.img_height=32", "model.img_width=32", "hardware.attn_parallel=3"]}


def micro(*overrides: str, profile: str = "w16a32"):
    return load_config("m3vit-micro", PROFILES[profile] + list(overrides))


def _passed(r, tests: int):
    assert r.passed and len(r.tests) == tests, [(t.name, t.passed) for t in r.tests]
    return r.perf


# --- cocotb on Icarus -----------------------------------------------------------------------------

@pytest.mark.parametrize("profile", list(PROFILES))
def test_softmax_exact_on_icarus(profile):
    perf = _passed(run_unit("softmax", micro(profile=profile), "icarus", vectors=60), 5)
    assert perf["latency"] == perf["latency_max"] == perf["design_latency"]
    # P = 2 query slots >= R = 2 recurrence stages: one score per cycle; a lone row every R cycles
    assert perf["ii"] == 1.0 and perf["ii_single_row"] == SOFTMAX_RECURRENCE
    assert perf["edge_rows"] > 20 and perf["backpressure_rows"] == 60


def test_softmax_single_slot_on_icarus():
    """P = 1: every score depends on the previous one, so the unit runs at II = R."""
    perf = _passed(run_unit("softmax", micro("hardware.attn_parallel=1"), "icarus", vectors=30), 5)
    assert perf["ii"] == perf["ii_single_row"] == SOFTMAX_RECURRENCE


@pytest.mark.parametrize("pair", list(SCHEDULES))
def test_attn_schedule_exact_on_icarus(pair):
    cfg = micro(*SCHEDULES[pair])
    perf = _passed(run_unit("attn_schedule", cfg, "icarus"), 4)
    n, par = cfg.model.num_tokens, cfg.hardware.attn_parallel
    assert (n, par) == (int(pair[1:pair.index("P")]), int(pair[pair.index("P") + 1:]))
    assert perf["cycles"] == attn_cycles(n, par) and perf["ii"] == 1.0 and perf["latency"] == 1


def test_attn_schedule_w16a16_on_icarus():
    _passed(run_unit("attn_schedule", micro(profile="w16a16"), "icarus"), 4)


@pytest.mark.parametrize("case", ["w16a32", "w16a16", "k1", "kE"])
def test_topk_exact_on_icarus(case):
    over = {"k1": ["model.top_k=1"], "kE": ["model.top_k=4"]}.get(case, [])
    cfg = micro(*over, profile="w16a16" if case == "w16a16" else "w16a32")
    perf = _passed(run_unit("topk", cfg, "icarus", vectors=40), 5)
    m = cfg.model
    assert perf["ii"] == 1.0 and perf["latency"] == perf["latency_max"] == 1
    assert perf["dump_words"] == m.num_experts + m.num_tokens * m.top_k
    # per image: N*E logits in, the last token's k appends, one cycle to the dump, the dump of counts and queues
    assert perf["image_cycles"] == m.num_tokens * m.num_experts + m.top_k + 1 + perf["dump_words"]


def test_topk_on_verilator():
    perf = _passed(run_unit("topk", micro(), "verilator", vectors=40), 5)
    assert perf["ii"] == 1.0 and perf["simulator"] == "verilator"


def test_one_registry_and_entry_point_for_every_unit(tmp_path, capsys):
    """get_unit / all_units cover the stream and the attention units; `edgemoe sim units` runs either kind."""
    from edgemoe.cli import main as cli_main
    from edgemoe.sim.units.registry import STREAM_UNITS as UNITS
    from edgemoe.sim.units.registry import all_units, get_unit

    def main(argv):
        return cli_main(["sim", "units", *argv])

    assert all_units() == [*UNITS, *ATTENTION_UNITS, "compute_tile"]
    assert get_unit("softmax") is ATTENTION_UNITS["softmax"] and get_unit("exp") is UNITS["exp"]
    assert get_unit("topk").test_module == "tb_topk" and get_unit("exp").test_module == "tb_stream_unit"
    assert (get_unit("topk").vectors, get_unit("exp").vectors) == (200, 1000)
    with pytest.raises(KeyError, match="attn_schedule"):
        get_unit("no_such_unit")
    assert main(["attn_schedule", "--config", "m3vit-micro", "--vectors", "10"]) == 0
    assert "PASS attn_schedule on icarus: 4 tests" in capsys.readouterr().out


def test_resource_markdown_mixes_stream_and_attention_rows():
    from edgemoe.sim.resources import COLUMNS, markdown

    res = {c: 1 for c in COLUMNS}
    rows = [{"config": "c", "profile": "w16a16", "digest": "d", "unit": "exp", "golden": True, "in": "s16.8",
             "out": "u16.15", "latency": 7, "ii": 1.0, "measured": True, "rom_bits": 10, **res},
            {"config": "c", "profile": "w16a16", "digest": "d", "unit": "topk", "golden": True,
             "params": {"num_experts": 4, "top_k": 2, "num_tokens": 9}, "ram_bits": 8, "latency": 3, "ii": None,
             "measured": False, "rom_bits": 0, **res}]
    text = markdown(rows)
    assert "| exp | `s16.8` -> `u16.15` | 7 |" in text and "| topk | E=4 k=2 N=9 | 3 (design) |" in text


@pytest.mark.parametrize("unit", list(ATTENTION_UNITS))
def test_testbench_fails_on_a_wrong_expectation(unit):
    """Each testbench against a perturbed golden model must fail, and the runner must raise."""
    from edgemoe.sim.runner import SimulationFailed

    with pytest.raises(SimulationFailed) as e:
        run_unit(unit, micro(), "icarus", vectors=10, perturb=True)
    msg = str(e.value)
    assert "cocotb tests failed" in msg and ("expected" in msg or "golden" in msg)


# --- golden helpers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("preset,over", [("m3vit-micro", []), ("m3vit-micro", ["hardware.attn_parallel=1"]),
                                         ("m3vit-micro", ["hardware.attn_parallel=9"]),
                                         ("m3vit-tiny-cityscapes", [])])
def test_attn_cycles_is_the_stream_of_the_golden_key_order(preset, over):
    """The schedule's length: query i (slot i % P) meets key (cycle mod N) each cycle from cycle
    (i // P) * N + i % P on, which is golden's key_order for it; the stream ends when the last query has
    met all N keys."""
    from edgemoe.golden.attention import key_order

    cfg = load_config(preset, over)
    n, par = cfg.model.num_tokens, cfg.hardware.attn_parallel
    order, end = key_order(n, par), 0
    for i in range(n):
        start = (i // par) * n + i % par
        assert [(start + t) % n for t in range(n)] == order[i].tolist()
        end = max(end, start + n)
    assert attn_cycles(n, par) == end


def test_schedule_stream_expectation_is_the_golden_attentions():
    """Folding the schedule stream score by score (online_step) = online_softmax_state over key_order."""
    for profile in PROFILES:
        p = micro(profile=profile).precision
        t = p.attn_score
        for n, par in ((9, 2), (9, 1), (5, 5), (7, 3)):
            scores = torch.randint(t.min_raw, t.max_raw + 1, (n, n), generator=torch.Generator().manual_seed(n * par))
            words, done = schedule_stream(scores, par)
            assert sorted(done) == list(range(n)) and len(words) == n * n
            assert softmax_expected(words, p) == schedule_expected(scores, par, p)


def test_schedule_checker_catches_errors():
    n, par = 9, 2
    good = []
    for t in range(attn_cycles(n, par)):
        w = {"key": t % n, "last": int(t == attn_cycles(n, par) - 1), "active": [], "query": [], "step": [],
             "refill": [], "done": []}
        for o in range(par):
            q, s = ((t - o) // n) * par + o, (t - o) % n
            a = int(t >= o and q < n)
            w["active"].append(a)
            w["query"].append(q)
            w["step"].append(s)
            w["refill"].append(int(a and s == 0))
            w["done"].append(int(a and s == n - 1))
        w["load"] = int(any(w["refill"]))
        w["load_query"] = next((q for q, r in zip(w["query"], w["refill"]) if r), 0)
        good.append(w)
    assert schedule_problems(good, n, par) == []
    assert schedule_problems(good, n, par, perturb=True)
    assert schedule_problems(good[:-1], n, par)
    bad = [dict(w) for w in good]
    bad[3] = dict(bad[3], key=(bad[3]["key"] + 1) % n)
    assert any("key" in p for p in schedule_problems(bad, n, par))


def test_topk_expectation_ties_and_queues():
    logits = torch.tensor([[[5, 5, 5, 5], [1, 3, 3, 2], [0, 0, 9, 0]]])
    out = topk_expected(logits, 2)
    assert out[:3] == [(0, 0, (0, 1), (5, 5)), (0, 1, (1, 2), (3, 3)), (0, 2, (2, 0), (9, 0))]
    assert out[3:] == [(1, 0, 2), (2, 0, 0, 0), (2, 0, 1, 2), (1, 1, 2), (2, 1, 0, 0), (2, 1, 1, 1),
                       (1, 2, 2), (2, 2, 0, 1), (2, 2, 1, 2), (1, 3, 0)]
    assert topk_expected(logits, 2, perturb=True)[0] == (0, 0, (3, 2), (5, 5))


# --- lint ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("over", [[], ["precision.profile=w16a16"], ["hardware.attn_parallel=1", "model.top_k=1"],
                                  ["hardware.attn_parallel=9", "model.top_k=4"]],
                         ids=["w16a32", "w16a16", "P1k1", "P9kE"])
@pytest.mark.parametrize("unit", list(ATTENTION_UNITS))
def test_generated_verilog_is_lint_clean(unit, over):
    from edgemoe.sim.lint import lint

    assert lint(generate(unit, load_config("m3vit-micro", over))) == []


def test_generation_is_cached_and_records_params():
    cfg = micro()
    a = generate("softmax", cfg)
    mtime = a.stat().st_mtime_ns
    assert generate("softmax", cfg).stat().st_mtime_ns == mtime
    info = unit_info("softmax", cfg)
    assert info["params"]["parallel"] == 2 and info["latency"] >= 10
    assert info["ports"]["in_score"] == {"dir": "in", "bits": cfg.precision.attn_score.bits, "signed": True}
    t = unit_info("topk", cfg)
    assert t["ram_bits"] == 4 * 16 * 4 and t["ports"]["out_experts"]["bits"] == 2 * 2


# --- the same designs in Amaranth's simulator (fast sweeps) -----------------------------------------------

def _amaranth_run(unit, bench):
    from amaranth.sim import Simulator

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("n,par", [(2, 1), (2, 2), (3, 2), (6, 4), (13, 4), (17, 16), (17, 17)])
def test_schedule_sweep_in_amaranth_sim(n, par):
    from edgemoe.sim.units.attn_schedule import AttnScheduleUnit

    u = AttnScheduleUnit(n, par)
    words = []

    async def bench(ctx):
        ctx.set(u.start_valid, 1)
        ctx.set(u.out_ready, 1)
        await ctx.tick()
        ctx.set(u.start_valid, 0)
        while True:
            v = await ctx.tick().sample(u.out_valid, u.out_key, u.out_last, u.out_active, u.out_refill, u.out_done,
                                        u.out_query, u.out_step, u.out_load, u.out_load_query)
            valid, key, last, act, ref, done, q, s, load, lq = v[2:]
            if valid:
                qb, sb = u.query_bits, u.step_bits
                words.append({"key": key, "last": last, "load": load, "load_query": lq,
                              "active": [(act >> o) & 1 for o in range(par)],
                              "refill": [(ref >> o) & 1 for o in range(par)],
                              "done": [(done >> o) & 1 for o in range(par)],
                              "query": [(q >> (o * qb)) & ((1 << qb) - 1) for o in range(par)],
                              "step": [(s >> (o * sb)) & ((1 << sb) - 1) for o in range(par)]})
                if last:
                    break

    _amaranth_run(u, bench)
    assert schedule_problems(words, n, par) == []


@pytest.mark.parametrize("recurrence", [1, 2, 3])
@pytest.mark.parametrize("par", [1, 3])
def test_softmax_recurrence_variants_in_amaranth_sim(recurrence, par):
    """Every recurrence depth is exact; II = 1 once P >= R rows interleave, else R."""
    from edgemoe.sim.units.softmax import OnlineSoftmaxUnit

    cfg = micro(f"hardware.attn_parallel={par}", profile="w16a16")
    p = cfg.precision
    u = OnlineSoftmaxUnit.from_config(cfg, recurrence=recurrence)
    rng = random.Random(recurrence * 10 + par)
    t = p.attn_score
    words = []                                     # rows of 6 scores, P slots round-robin
    for g in range(4):
        rows = [[rng.randint(t.min_raw, t.max_raw) >> rng.randint(0, 8) for _ in range(6)] for _ in range(par)]
        for step in range(6):
            words += [(rows[o][step], int(step == 5), o) for o in range(par)]
    expected = softmax_expected(words, p)
    got, accepted = [], []

    async def bench(ctx):
        ctx.set(u.out_ready, 1)
        i = cycle = 0
        while len(got) < len(expected):
            if i < len(words):
                s, last, o = words[i]
                ctx.set(u.in_score, s)
                ctx.set(u.in_last, last)
                ctx.set(u.in_slot, o)
            ctx.set(u.in_valid, int(i < len(words)))
            _, _, rdy, ov, om, oi, osl = await ctx.tick().sample(u.in_ready, u.out_valid, u.out_max, u.out_inv,
                                                                 u.out_slot)
            if i < len(words) and rdy:
                i += 1
                accepted.append(cycle)
            if ov:
                got.append((osl, om, oi))
            cycle += 1
            assert cycle < 20 * len(words) + 100

    _amaranth_run(u, bench)
    assert got == expected
    ii = (accepted[-1] - accepted[0]) / (len(accepted) - 1)
    assert ii == (1.0 if par >= recurrence else float(recurrence))


@pytest.mark.parametrize("e,k,n", [(4, 1, 5), (4, 4, 5), (16, 2, 20), (3, 3, 1), (5, 2, 7)])
def test_topk_sweep_in_amaranth_sim(e, k, n):
    from edgemoe.golden.numerics.fixed import FixedType
    from edgemoe.sim.units.topk import TopKQueueUnit

    lt = FixedType(16, 6, True)
    u = TopKQueueUnit(lt, e, k, n)
    g = torch.Generator().manual_seed(e * 100 + k * 10 + n)
    images = torch.randint(-6, 6, (3, n, e), generator=g)
    images[1] = 7                                            # ties everywhere
    images[2, :, :] = lt.min_raw
    images[2, :, e - 1] = lt.max_raw                         # one expert takes every token
    expected = topk_expected(images, k)
    words = [(int(images[b, t, x]), int(t == n - 1 and x == e - 1))
             for b in range(3) for t in range(n) for x in range(e)]
    rng = random.Random(n)
    got = []
    eb = u.expert_bits

    async def bench(ctx):
        i = cycle = 0
        while len(got) < len(expected):
            ready = rng.random() < 0.7
            ctx.set(u.out_ready, int(ready))
            if i < len(words):
                ctx.set(u.in_logit, words[i][0])
                ctx.set(u.in_last, words[i][1])
            ctx.set(u.in_valid, int(i < len(words)))
            v = await ctx.tick().sample(u.in_ready, u.out_valid, u.out_kind, u.out_token, u.out_expert, u.out_count,
                                        u.out_experts, u.out_logits)
            rdy, ov, kind, tok, ex, cnt, exs, lgs = v[2:]
            if i < len(words) and rdy:
                i += 1
            if ov and ready:
                if kind == 0:
                    lg = [(lgs >> (j * 16)) & 0xFFFF for j in range(k)]
                    got.append((0, tok, tuple((exs >> (j * eb)) & ((1 << eb) - 1) for j in range(k)),
                                tuple(x - (1 << 16) if x >> 15 else x for x in lg)))
                elif kind == 1:
                    got.append((1, ex, cnt))
                else:
                    got.append((2, ex, cnt, tok))
            cycle += 1
            assert cycle < 10000

    _amaranth_run(u, bench)
    assert got == expected


# --- resources -----------------------------------------------------------------------------------------

def test_synthesis_of_the_schedule_unit():
    from edgemoe.sim.resources import unit_resources

    res = unit_resources("attn_schedule", micro())
    assert res["lut"] > 0 and res["ff"] > 0 and res["dsp"] == 0


# --- slow: Verilator for every unit, the full-size preset, the resource table ------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("unit", list(ATTENTION_UNITS))
def test_unit_exact_on_verilator(unit, profile):
    assert run_unit(unit, micro(profile=profile), "verilator", vectors=100).passed


@pytest.mark.slow
@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("unit", list(ATTENTION_UNITS))
def test_unit_exact_full_preset(unit, profile):
    cfg = load_config("m3vit-tiny-cityscapes", PROFILES[profile])
    assert run_unit(unit, cfg, "verilator", seed=7, vectors=60).passed


@pytest.mark.slow
def test_resource_table_tiny():
    from edgemoe.sim.resources import markdown, resource_table

    cfgs = [load_config("m3vit-tiny-cityscapes", PROFILES[p]) for p in PROFILES]
    rows = resource_table(list(ATTENTION_UNITS), cfgs)
    assert len(rows) == len(cfgs) * len(ATTENTION_UNITS)
    by = {(r["profile"], r["unit"]): r for r in rows}
    assert by[("w16a32", "topk")]["bram"] >= 1                 # 16 queues x 256 token slots
    assert by[("w16a32", "softmax")]["dsp"] > by[("w16a16", "softmax")]["dsp"] > 0
    assert "attn_schedule" in markdown(rows)
