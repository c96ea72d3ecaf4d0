"""Edge-MoE's published design in the performance model (edgemoe/perf/reference.py), the heads'
work and time (edgemoe/perf/heads.py) and ``edgemoe perf --compare``."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from edgemoe.boards import BOARDS
from edgemoe.cli import main
from edgemoe.errors import ConfigError
from edgemoe.golden.heads import UpHead
from edgemoe.hls.plan import attn_cycles
from edgemoe.loading import load_config
from edgemoe.perf import heads
from edgemoe.perf.reference import (BUFFER_BUNDLES, BUNDLE_PORTS, MEASURED_MS, ReferenceDesign,
                                    estimate_reference)
from edgemoe.perf.routing import uniform_routing

TINY = "m3vit-tiny-cityscapes"
MICRO = "m3vit-micro"


@pytest.fixture(scope="module")
def tiny():
    return load_config(TINY)


@pytest.fixture(scope="module")
def ref(tiny):
    return estimate_reference(tiny, "zcu102")


def design(**changes) -> ReferenceDesign:
    return replace(ReferenceDesign(), **changes)


# --- calibration against the measured figure ------------------------------------------------

def test_tiny_on_zcu102_lands_in_the_window_below_the_measured_figure(ref):
    assert 30.0 <= ref.ms_per_image <= 60.0
    assert ref.measured_ms == MEASURED_MS
    # the demo figure includes host work the model cannot see: the kernel alone comes out below it
    assert ref.ms_per_image < ref.measured_ms
    assert ref.host_gap_ms == pytest.approx(MEASURED_MS - ref.ms_per_image)


def test_steps_add_up_and_name_what_binds(ref):
    assert ref.total_cycles == pytest.approx(sum(ref.by_kind().values()))
    assert ref.total_cycles == pytest.approx(sum(ref.by_binding().values()))
    assert ref.ms_per_image == pytest.approx(ref.total_cycles / 300e3)
    bundles = set(BUNDLE_PORTS)
    for s in ref.steps:
        assert s.binds == "compute" or s.binds == "DDR" or s.binds.split()[1] in bundles
        assert set(s.bytes) <= bundles
    # K/V streaming binds the attention on the K and V buffers' ports
    assert {s.binds for s in ref.steps if s.name == "attn_qk"} == {f"port {BUFFER_BUNDLES['tmp3']} r"}
    assert {s.binds for s in ref.steps if s.name == "attn_av"} == {f"port {BUFFER_BUNDLES['tmp2']} r"}


def test_work_matches_the_model(ref, tiny):
    m = tiny.model
    n, d = m.num_tokens, m.embed_dim
    dense = 4 * n * d * d + 2 * n * n * d                    # q, k, v, proj, Q.K, A.V
    mlp = 2 * n * d * m.mlp_hidden
    moe = n * m.top_k * 2 * d * m.expert_hidden + n * d * m.num_experts
    expect = m.num_patches * m.patch_dim * d + m.depth * dense + len(m.moe_blocks) * moe \
        + (m.depth - len(m.moe_blocks)) * mlp
    assert ref.macs == pytest.approx(expect, rel=1e-9)
    board = BOARDS["zcu102"]
    assert ref.compute_floor_ms == pytest.approx(expect / (board.dsp * 300e6) * 1e3)
    assert ref.weight_floor_ms == pytest.approx(ref.weight_bytes / (board.mem_gbps * board.mem_efficiency * 1e9) * 1e3)


def test_measured_figure_only_for_the_model_and_board_it_was_measured_on():
    assert estimate_reference(load_config(MICRO)).measured_ms is None
    assert estimate_reference(load_config(TINY), "u50").measured_ms is None


# --- response to its parameters ----------------------------------------------------------------

def test_halving_port_width_raises_load_time(tiny, ref):
    narrow = estimate_reference(tiny, design=design(port_bits=64))
    for name in ("load_q", "load_fc1"):
        assert narrow.step_cycles(name) > 1.8 * ref.step_cycles(name)
    assert narrow.ms_per_image > ref.ms_per_image
    assert narrow.port_gbps == pytest.approx(ref.port_gbps / 2)


def test_kv_reread_grows_with_tokens_over_query_group(tiny, ref):
    def kv(est):
        s = next(s for s in est.steps if s.name == "attn_qk")
        return s.detail["kv_bytes"], s.detail["query_groups"]

    n, d = tiny.model.num_tokens, tiny.model.embed_dim
    for p in (2, 4, 8):
        b, groups = kv(estimate_reference(tiny, design=design(attn_parallel=p)))
        assert b == attn_cycles(n, p) * d * 4            # every key row once per group, 32-bit words
        assert n / p <= groups <= n / p + 1
    b4, _ = kv(ref)
    b2, _ = kv(estimate_reference(tiny, design=design(attn_parallel=2)))
    assert b2 / b4 == pytest.approx(2.0, rel=0.02)
    wide = load_config(TINY, ["model.img_width=512"])      # twice the tokens
    bw, gw = kv(estimate_reference(wide))
    nw = wide.model.num_tokens
    assert bw / b4 == pytest.approx((nw / n) ** 2, rel=0.03)
    assert gw == pytest.approx(kv(ref)[1] * nw / n, rel=0.03)
    att = lambda e: e.by_kind()["attention"]  # noqa: E731
    assert att(estimate_reference(tiny, design=design(attn_parallel=2))) > att(ref) > \
        att(estimate_reference(tiny, design=design(attn_parallel=8)))


def test_debug_returns_serialise_loads_and_experts_ping_pong(tiny, ref):
    free = estimate_reference(tiny, design=design(debug_returns=False))
    loads = sum(s.cycles for s in ref.steps if s.detail.get("hideable"))
    assert ref.total_cycles - free.total_cycles == pytest.approx(
        loads - sum(s.exposed for s in free.steps if s.detail.get("hideable")))
    assert 0 < ref.total_cycles - free.total_cycles <= loads
    serial = estimate_reference(tiny, design=design(moe_overlap=False))
    ex = [s for s in ref.steps if s.name == "experts"]
    ex_serial = [s for s in serial.steps if s.name == "experts"]
    for a, b in zip(ex, ex_serial):
        assert b.cycles == pytest.approx(a.detail["load_cycles"] + a.detail["compute_cycles"])
        assert max(a.detail["load_cycles"], a.detail["compute_cycles"]) <= a.cycles < b.cycles


def test_fewer_active_experts_load_fewer_weights(tiny, ref):
    m = tiny.model
    two = np.zeros(m.num_experts)
    two[:m.top_k] = m.num_tokens                                # every token to the same top-k experts
    est = estimate_reference(tiny, routing=[two] * len(m.moe_blocks))
    ex = [s for s in est.steps if s.name == "experts"]
    assert all(s.detail["active_experts"] == m.top_k for s in ex)
    assert sum(s.weight_bytes for s in ex) == pytest.approx(
        sum(s.weight_bytes for s in ref.steps if s.name == "experts") * m.top_k / m.num_experts, rel=0.01)
    assert est.ms_per_image < ref.ms_per_image
    assert estimate_reference(tiny, routing=uniform_routing(tiny)).ms_per_image == pytest.approx(ref.ms_per_image)


def test_bad_input_names_the_field(tiny):
    with pytest.raises(ConfigError, match="reference.port_bits"):
        design(port_bits=0)
    with pytest.raises(ConfigError, match="reference.clock_mhz"):
        design(clock_mhz=-1.0)
    with pytest.raises(ConfigError, match="board"):
        estimate_reference(tiny, "zcu999")
    with pytest.raises(ConfigError, match="model.num_heads"):
        estimate_reference(load_config(TINY, ["model.num_heads=16", "hardware.cu_in=4"]))


# --- heads -------------------------------------------------------------------------------------

def conv_macs_of(module: torch.nn.Module, tokens: torch.Tensor) -> int:
    """Count the MACs of every Conv2d of ``module`` on one forward pass, from its output shapes."""
    total = 0

    def hook(conv, _inp, out):
        nonlocal total
        kh, kw = conv.kernel_size
        total += out.shape[1:].numel() * (conv.in_channels // conv.groups) * kh * kw

    hs = [c.register_forward_hook(hook) for c in module.modules() if isinstance(c, torch.nn.Conv2d)]
    with torch.no_grad():
        module(tokens)
    for h in hs:
        h.remove()
    return total


@pytest.mark.parametrize("task", [0, 1])
def test_head_mac_formula_matches_the_torch_module(task):
    m = load_config(MICRO).model
    spec = m.tasks[task]
    head = UpHead(m, spec.out_channels).eval()
    assert heads.head_macs(m, spec.out_channels) == conv_macs_of(head, torch.zeros(1, m.num_tokens, m.embed_dim))
    assert heads.task_head_macs(m)[spec.name] == heads.head_macs(m, spec.out_channels)


def test_head_time_on_the_a53_follows_its_stated_rate(tiny):
    cpu = heads.ZCU102_A53
    assert cpu.sustained_gmacs == pytest.approx(cpu.cores * cpu.clock_ghz * cpu.macs_per_cycle * cpu.efficiency)
    macs = heads.task_head_macs(tiny.model)["semseg"]
    assert 6.0e9 < macs < 7.0e9                                  # about 6.4 GMAC per task
    assert heads.modelled_ms(macs) == pytest.approx(macs / (cpu.sustained_gmacs * 1e9) * 1e3)
    faster = replace(cpu, efficiency=2 * cpu.efficiency)
    assert heads.modelled_ms(macs, faster) == pytest.approx(heads.modelled_ms(macs) / 2)


def test_host_measurement_reports_its_runs():
    m = load_config(MICRO).model
    t = heads.measure_host_ms(m, "depth", runs=3)
    assert t.task == "depth" and len(t.runs_ms) == 3 and all(r > 0 for r in t.runs_ms)
    assert min(t.runs_ms) <= t.median_ms <= max(t.runs_ms)
    with pytest.raises(ConfigError, match="runs"):
        heads.measure_host_ms(m, 0, runs=0)


# --- the command line ------------------------------------------------------------------------------

def test_cli_compare_prints_every_row(capsys, tmp_path):
    out_json = tmp_path / "perf.json"
    assert main(["perf", "--config", MICRO, "--compare", "--head-runs", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    cmp = out[out.index("comparison on zcu102"):]
    for row in ("ours: generated kernel, modelled (onchip", "Edge-MoE: modelled kernel, as published",
                "Edge-MoE: modelled, without the debug early returns", "floor: weights", "GMAC / (2520 DSP x 300 MHz)",
                "Edge-MoE measured: none for this config", "Edge-MoE modelled, where its time goes",
                "attention (Q.K, A.V", "head on the ZCU102 A53s, modelled", "head on this host, measured",
                "ours + head (A53 modelled)", "Edge-MoE modelled + head (A53 modelled)"):
        assert row in cmp, row
    data = json.loads(out_json.read_text())
    ref = estimate_reference(load_config(MICRO))
    assert data["compare"]["reference"]["ms_per_image"] == pytest.approx(ref.ms_per_image)
    assert f"{ref.ms_per_image:10.2f}" in cmp
    assert data["compare"]["heads"]["host_ms"] > 0


def test_cli_compare_on_tiny_shows_the_measured_figure_and_ratios(capsys, ref):
    assert main(["perf", "--compare", "--head-runs", "0"]) == 0
    cmp = capsys.readouterr().out.split("comparison on zcu102")[1]
    line = next(ln for ln in cmp.splitlines() if "Edge-MoE: measured" in ln)
    assert f"{MEASURED_MS:.2f}" in line and "1.00x" in line
    line = next(ln for ln in cmp.splitlines() if "Edge-MoE: modelled kernel" in ln)
    assert f"{ref.ms_per_image / MEASURED_MS:.2f}x" in line
    assert f"Edge-MoE modelled / measured = {ref.ms_per_image / MEASURED_MS:.2f}" in cmp
    assert "(--head-runs 0: not measured)" in cmp
    assert math.isfinite(ref.ms_per_image)


def test_cli_compare_adds_the_floor_at_the_configs_own_weight_widths(capsys):
    """Edge-MoE's floors are at its 16-bit weights; a config with 8-bit matrices gets its own weight floor (the
    roofline's bytes at the board's sustained bandwidth), and "ours / its own floor" divides by it."""
    from edgemoe.cli.perf import _measured
    from edgemoe.perf.cycles import estimate

    cfg = load_config("m3vit-tiny-zcu102")
    assert main(["perf", "--config", cfg.name, "--compare", "--head-runs", "0"]) == 0
    cmp = capsys.readouterr().out.split("comparison on zcu102")[1]
    est = estimate(cfg, measured=_measured())   # calibrated as the CLI's, where the sim build has measurements
    roof = est.roofline
    assert roof.weight_bytes_per_image < 0.6 * estimate_reference(cfg).weight_bytes     # 8-bit matrices
    line = next(ln for ln in cmp.splitlines() if "floor at w8a16" in ln)
    assert f"{roof.weight_bytes_per_image / 1e6:.2f} MB" in line and f"{roof.traffic_ms:10.2f}" in line
    own = max(roof.traffic_ms, estimate_reference(cfg).compute_floor_ms)
    assert f"ours / its own floor = {est.ms_per_image / own:.1f}x" in cmp
    assert main(["perf", "--compare", "--head-runs", "0"]) == 0   # w16a32: the same widths as Edge-MoE's
    assert "floor at" not in capsys.readouterr().out
