"""RTL harness of the kernel top (sim/kernel/harness.py, sim/kernel/tb_kernel.py) on the stand-in top.

No Vitis HLS here, so the harness runs on :mod:`edgemoe.sim.kernel.standin` (same module
name, ports and register map as the exported RTL; computes only the ``pixels`` tap).  Normal
suite, m3vit-micro on Icarus: the pixels tap bit-exact for 2 images and both tasks; random AXI
back-pressure with buffers off the bus beat (partial WSTRB); one bundle shared by every buffer on
a 64-bit bus (widths read from the RTL); bad task / bad tap statuses; a stand-in of another config
(config_hash mismatch) and a wrong expectation fail the run; no exported RTL is reported clearly
(CLI exit 2); a fake Vitis project tree is found and run; lint; one Verilator run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from edgemoe.golden.fixed_model import tap_schedule
from edgemoe.hls.interface import STATUS, TOP, config_hash32
from edgemoe.cli import main as cli_main
from edgemoe.loading import load_config
from edgemoe.sim.kernel.harness import run_kernel_rtl
from edgemoe.sim.kernel.rtl import (KernelInterfaceError, KernelRTL, NoExportedRTL, find_exported_rtl,
                                    parse_ports)
from edgemoe.sim.kernel.standin import STATUS_NOT_IMPLEMENTED, standin_rtl, standin_verilog
from edgemoe.sim.lint import lint
from edgemoe.sim.runner import SimulationFailed

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed (make setup)")


def main(argv: list[str]) -> int:
    """``edgemoe sim kernel ARGV``."""
    return cli_main(["sim", "kernel", *argv])

SHARED_64 = ["hardware.bundles={image: gmem, weights: gmem, activations: gmem}", "hardware.axi_width=64"]


@pytest.fixture(scope="module")
def micro():
    return load_config("m3vit-micro")


def _pixel_words(cfg) -> int:
    m = cfg.model
    return m.in_chans * m.img_height * m.img_width


# --- the stand-in itself ------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [[], SHARED_64], ids=["micro", "shared-bundle-64"])
def test_standin_verilog_is_lint_clean(overrides):
    cfg = load_config("m3vit-micro", overrides)
    path = standin_verilog(cfg)
    assert lint(path, top=TOP) == []
    rtl = standin_rtl(cfg)
    rtl.check_interface(cfg)
    assert rtl.axi_widths(cfg) == {b: cfg.hardware.axi_width for b in set(cfg.hardware.bundle_of.values())}
    ports = rtl.ports
    assert ports["ap_rst_n"].direction == "input" and ports["interrupt"].direction == "output"
    assert ports[f"m_axi_{cfg.hardware.bundle_of['image']}_ARADDR"].width == 64
    assert ports[f"m_axi_{cfg.hardware.bundle_of['image']}_AWLOCK"].width == 2      # as Vitis emits it
    assert STATUS_NOT_IMPLEMENTED not in STATUS.values()


# --- bit-exact runs ------------------------------------------------------------------------------

def test_standin_pixels_both_tasks_bit_exact(micro):
    r = run_kernel_rtl(micro, tap="pixels", task=["semseg", "depth"], images=2)
    assert r.passed and [c.task for c in r.calls] == [0, 1]
    n = _pixel_words(micro)
    for c in r.calls:
        assert c.status == STATUS["ok"] and c.status_name == "ok" and c.config_hash == config_hash32(micro)
        assert c.words_compared == 2 * n and c.mismatches == 0 and c.stray_bytes == 0
        # one word per clock plus one cycle per packed W beat, and not much more without back-pressure
        beats = 2 * n * 32 // micro.hardware.axi_width
        assert 2 * n + beats <= c.cycles <= 2 * n + beats + 200 and c.cycles_from == "interrupt"
    assert r.calls[0].cycles == r.calls[1].cycles
    assert r.widths == {b: {"data": 256, "addr": 64, "id": 1} for b in ("gmem0", "gmem1", "gmem2")}
    assert r.ram_traffic["gmem1"] == {"read": 0, "written": 0}                  # the stand-in never reads weights


def test_standin_backpressure_misaligned_buffers(micro):
    """Random pauses on every channel; buffers off the beat: partial first / last beats, WSTRB checked byte-wise."""
    r = run_kernel_rtl(micro, tap=0, task=1, images=2, backpressure=True, misalign=True, seed=3)
    c, = r.calls
    assert r.passed and c.words_compared == 2 * _pixel_words(micro) and c.stray_bytes == 0
    assert r.ram_traffic["gmem2"]["written"] == 2 * _pixel_words(micro) * 4     # strobed bytes only


def test_standin_shared_bundle_narrow_bus():
    """Every buffer in one bundle (one RAM), a 64-bit bus the harness discovers from the ports."""
    cfg = load_config("m3vit-micro", SHARED_64)
    r = run_kernel_rtl(cfg, task=0, images=1, misalign=True)
    assert r.passed and r.calls[0].words_compared == _pixel_words(cfg)
    assert r.widths == {"gmem": {"data": 64, "addr": 64, "id": 1}}


# --- statuses and failures -----------------------------------------------------------------------

def test_bad_task_is_reported(micro):
    r = run_kernel_rtl(micro, tap="pixels", task=len(micro.model.tasks), images=1)
    c, = r.calls
    assert c.status == STATUS["bad_task"] and c.status_name == "bad_task" and c.expected_status == "bad_task"
    assert c.words_compared == 0 and c.stray_bytes == 0 and r.passed           # nothing written


def test_bad_tap_is_reported(micro):
    r = run_kernel_rtl(micro, tap=len(tap_schedule(micro.model)), task=0, images=1)
    c, = r.calls
    assert c.status == STATUS["bad_tap"] and c.status_name == "bad_tap" and c.stray_bytes == 0


def test_config_hash_mismatch_is_a_named_failure(micro):
    other = load_config("m3vit-micro", ["precision.profile=w16a16"])
    assert config_hash32(other) != config_hash32(micro)
    with pytest.raises(SimulationFailed) as e:
        run_kernel_rtl(micro, standin_cfg=other, tap="pixels", images=1)
    msg = str(e.value)
    assert "config_hash mismatch" in msg and f"{config_hash32(other):#010x}" in msg
    assert f"{config_hash32(micro):#010x}" in msg and "another config" in msg


def test_wrong_expectation_fails_the_run(micro):
    with pytest.raises(SimulationFailed) as e:
        run_kernel_rtl(micro, tap="pixels", images=1, perturb=True)
    msg = str(e.value)
    n = _pixel_words(micro)
    assert f"1/{n} output words differ from the golden model" in msg
    assert f"first: image 0, index {n // 3}: expected" in msg


def test_cycle_limit_fails_clearly(micro):
    with pytest.raises(SimulationFailed) as e:
        run_kernel_rtl(micro, tap="pixels", images=1, max_cycles=300)
    assert "timeout, no ap_done within 300 cycles" in str(e.value)


def test_standin_reports_unimplemented_taps(micro):
    """TAP_NONE (the whole network) is not computed by the stand-in: the run fails and says why."""
    with pytest.raises(SimulationFailed) as e:
        run_kernel_rtl(micro, tap=None, images=1)
    msg = str(e.value)
    assert f"status {STATUS_NOT_IMPLEMENTED:#x} (not_implemented_by_standin), expected 0 (ok)" in msg
    assert "make hls" in msg


# --- exported RTL: finding it, or saying clearly that there is none ------------------------------------

def test_no_exported_rtl_cli_exits_2(tmp_path):
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    with pytest.raises(NoExportedRTL) as e:
        find_exported_rtl(proj)
    assert str(proj) in str(e.value) and "edgemoe_vit_prj/solution1" in str(e.value)
    assert proj / "edgemoe_vit_prj" / "solution1" / "syn" / "verilog" in e.value.searched
    r = subprocess.run([sys.executable, "-m", "edgemoe", "sim", "kernel", "--config", "m3vit-micro",
                        "--project", str(proj)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"no exported RTL under {proj} (run `make hls` there; needs Vitis HLS" in r.stderr
    assert "vitis_hls" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, field", [(["--tap", "nosuch"], "tap = 'nosuch'"),
                                          (["--task", "nosuch"], "task = 'nosuch'"),
                                          (["--images", "0"], "images = 0: must be an integer 1..65535"),
                                          (["--images", "65536"], "images = 65536")])
def test_cli_bad_input_names_the_field(args, field, capsys):
    assert main(["--config", "m3vit-micro", *args]) == 2
    assert field in capsys.readouterr().err


def test_fake_exported_project_is_found_and_run(micro, tmp_path, capsys):
    """A generated project with a Vitis-shaped export (stand-in Verilog as the "exported" top, a helper
    module, a .dat file)."""
    from edgemoe.hls.writer import write

    write(micro, tmp_path / "proj")                     # the generated sources, regmap.json, config.yaml
    syn = tmp_path / "proj" / "edgemoe_vit_prj" / "solution1" / "syn" / "verilog"
    syn.mkdir(parents=True)
    shutil.copy(standin_verilog(micro), syn / f"{TOP}.v")
    (syn / f"{TOP}_helper.v").write_text("module edgemoe_vit_helper(input wire a, output wire b);\n"
                                         "  assign b = a;\nendmodule\n")
    (syn / f"{TOP}_rom.dat").write_text("00\n01\n")
    rtl = find_exported_rtl(tmp_path / "proj")
    assert rtl.origin == "exported" and rtl.top == TOP and rtl.root == syn
    assert [p.name for p in rtl.sources] == [f"{TOP}.v", f"{TOP}_helper.v"]
    assert [p.name for p in rtl.data_files] == [f"{TOP}_rom.dat"]
    assert find_exported_rtl(tmp_path / "proj" / "edgemoe_vit_prj").root == syn     # the Vitis project dir works too
    r = run_kernel_rtl(micro, rtl=tmp_path / "proj", tap="pixels", task=1, images=1)
    assert r.passed and r.rtl.origin == "exported" and r.calls[0].words_compared == _pixel_words(micro)
    assert (r.log.parent / f"{TOP}_rom.dat").is_file()                                 # $readmemh files beside the run
    # the CLI on the same tree (default tap there: the whole network, which the stand-in lacks -> exit 1)
    # the CLI takes the config the project was generated from (its config.yaml) when --config is left out
    assert main(["--project", str(tmp_path / "proj"), "--tap", "pixels"]) == 0
    out = capsys.readouterr().out
    assert "exported RTL: exported RTL of edgemoe_vit (2 Verilog file(s)" in out and "PASS" in out
    # ... and refuses a config the project was not generated from, naming both digests
    assert main(["--config", "m3vit-micro", "--set", "precision.profile=w16a16",
                 "--project", str(tmp_path / "proj"), "--tap", "pixels"]) == 2
    err = capsys.readouterr().err
    assert "regmap.json was generated from" in err and micro.digest()[:12] in err


def test_interface_check_names_missing_bundles(micro):
    other = load_config("m3vit-micro", ["hardware.bundles={image: gmem0, weights: gmem1, activations: out}"])
    with pytest.raises(KernelInterfaceError, match="m_axi_out_AWVALID"):
        standin_rtl(micro).check_interface(other)


def test_parse_ports_of_a_vitis_style_header():
    text = """
    `timescale 1 ns / 1 ps
    (* CORE_GENERATION_INFO="edgemoe_vit" *)
    module edgemoe_vit (ap_clk, ap_rst_n, m_axi_gmem0_WDATA, m_axi_gmem0_WSTRB, m_axi_gmem0_AWLOCK,
            s_axi_control_ARADDR, interrupt);
    parameter    C_S_AXI_CONTROL_ADDR_WIDTH = 7;
    parameter    C_M_AXI_GMEM0_DATA_WIDTH = 512;
    parameter C_M_AXI_GMEM0_WSTRB_WIDTH = (512 / 8);
    input   ap_clk;
    input   ap_rst_n;
    output  [C_M_AXI_GMEM0_DATA_WIDTH - 1:0] m_axi_gmem0_WDATA;
    output  [C_M_AXI_GMEM0_WSTRB_WIDTH - 1:0] m_axi_gmem0_WSTRB;
    output  [1:0] m_axi_gmem0_AWLOCK;
    input  [C_S_AXI_CONTROL_ADDR_WIDTH - 1:0] s_axi_control_ARADDR;
    output   interrupt;
    endmodule
    """
    ports = parse_ports(text, "edgemoe_vit")
    assert {n: (p.direction, p.width) for n, p in ports.items()} == {
        "ap_clk": ("input", 1), "ap_rst_n": ("input", 1), "m_axi_gmem0_WDATA": ("output", 512),
        "m_axi_gmem0_WSTRB": ("output", 64), "m_axi_gmem0_AWLOCK": ("output", 2),
        "s_axi_control_ARADDR": ("input", 7), "interrupt": ("output", 1)}
    assert KernelRTL([], TOP).describe().startswith("exported RTL of edgemoe_vit")


# --- Verilator -----------------------------------------------------------------------------------

def test_standin_on_verilator(micro):
    r = run_kernel_rtl(micro, tap="pixels", task=0, images=1, simulator="verilator")
    assert r.passed and r.calls[0].words_compared == _pixel_words(micro) and r.calls[0].cycles > _pixel_words(micro)
