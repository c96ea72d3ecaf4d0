"""Design-space exploration, the chosen config file, the report and the commands."""
from __future__ import annotations

import argparse
import base64
import re

import pytest
import yaml

from edgemoe.boards import BOARDS
from edgemoe.cli import main as cli_main
from edgemoe.cli import perf as perf_cli
from edgemoe.loading import load_config
from edgemoe.perf.explore import QUICK_GRID, DesignPoint, choose, explore, pareto

SMALL = {"cu_in": (8, 16, 32), "cu_out": (8, 16, 32), "attn_parallel": (2, 4), "axi_width": (256,),
         "profile": ("w16a32", "w16a16")}


@pytest.mark.parametrize("preset", ["m3vit-tiny-cityscapes", "m3vit-micro"])
@pytest.mark.parametrize("board", list(BOARDS))
def test_explore_finds_a_feasible_point(preset, board):
    cfg = load_config(preset)
    res = explore(cfg, board, batches=(1,), grid=SMALL, progress=False)
    c = res.chosen
    assert c is not None and c.feasible and c.cfg.hardware.board == board
    assert all(u <= res.cap for k, u in c.utilisation.items() if k in ("dsp", "bram36", "uram", "lut"))
    # the fastest feasible point (ties within 1 % to fewer DSPs)
    assert c.ms_per_image <= min(p.ms_per_image for p in res.feasible) * 1.01
    assert "Pareto front: latency vs DSP" in res.summary() and "chosen:" in res.summary()


def test_invalid_points_are_skipped_with_the_reason_counted():
    cfg = load_config("m3vit-micro")
    grid = dict(SMALL, cu_in=(8, 12), cu_out=(8, 24))
    res = explore(cfg, "zcu102", batches=(1, 2), grid=grid, progress=False)
    valid = {(p.cu_in, p.cu_out) for p in res.points}
    assert valid == {(8, 8)}
    assert sum(res.skipped.values()) == 3 * 2 * 2 * 2      # 3 bad (cu_in, cu_out) pairs x P x profile x batch
    assert any(k.startswith("hardware.cu_in") for k in res.skipped)
    assert any(k.startswith("hardware.cu_out") for k in res.skipped)
    assert "skipped (invalid config)" in res.summary()


def test_infeasible_points_are_not_chosen():
    cfg = load_config("m3vit-tiny-cityscapes")
    res = explore(cfg, "zcu102", batches=(1, 8), grid=SMALL, cap=0.5, progress=False)
    # the kernel as written runs a batch's images in one set of buffers: batch 8 fits where batch 1 does
    fits = {(p.cu_in, p.cu_out, p.attn_parallel, p.profile, p.batch): p.feasible for p in res.points}
    assert all(fits[k] == fits[k[:-1] + (1,)] for k in fits)
    assert any(not f for f in fits.values()) and res.chosen.feasible
    faster = [p for p in res.points if p.batch == res.chosen.batch and p.ms_per_image < res.chosen.ms_per_image]
    assert faster and not any(p.feasible for p in faster)
    assert res.best(8, "onchip") is not None and res.best(8, "onchip").feasible
    res_dram = explore(cfg, "zcu102", batches=(8,), modes=("edgemoe-dram",), grid=SMALL, progress=False)
    assert res_dram.chosen is not None and res_dram.chosen.batch == 8


def _pt(ms, dsp, bram, feasible=True):
    return DesignPoint(16, 16, 4, 256, "w16a32", 1, "onchip", ms, dsp, bram, 0, 0, 0,
                       {"dsp": 0, "bram36": 0, "uram": 0, "lut": 0}, feasible, [], 1.0, 1.0)


def test_pareto_and_choice():
    pts = [_pt(10, 100, 50), _pt(8, 200, 40), _pt(9, 300, 30), _pt(5, 400, 60), _pt(4, 500, 70, feasible=False),
           _pt(5.02, 350, 80)]
    front = pareto([p for p in pts if p.feasible], "dsp")
    assert [(p.ms_per_image, p.dsp) for p in front] == [(10, 100), (8, 200), (5.02, 350), (5, 400)]
    front_b = pareto([p for p in pts if p.feasible], "bram36")
    assert [(p.ms_per_image, p.bram36) for p in front_b] == [(9, 30), (8, 40), (5, 60)]
    c = choose(pts)
    assert (c.ms_per_image, c.dsp) == (5.02, 350)    # within 1 % of the fastest: fewer DSPs wins
    assert choose([_pt(1, 1, 1, feasible=False)]) is None


@pytest.mark.parametrize("preset,sets", [("m3vit-micro", []),
                                         ("m3vit-tiny-cityscapes", ["hardware.clock_mhz=250"]),
                                         ("m3vit-micro", ["model.depth=2", "model.moe_blocks=[1]"])])
def test_written_yaml_loads_and_differs_only_in_hardware_and_precision(tmp_path, preset, sets):
    cfg = load_config(preset, sets)
    res = explore(cfg, "u50", batches=(1,), grid=SMALL, progress=False)
    path = res.write_yaml(tmp_path / "chosen.yaml")
    text = path.read_text()
    assert text.startswith("# written by edgemoe explore")
    data = yaml.safe_load(text)
    assert set(data) <= {"preset", "model", "precision", "hardware"}
    loaded = load_config(path)
    c = res.chosen
    assert loaded.model == cfg.model
    assert loaded.hardware == c.cfg.hardware
    assert loaded.precision == c.cfg.precision
    assert loaded.hardware.clock_mhz == cfg.hardware.clock_mhz and loaded.hardware.board == "u50"
    a, b = cfg.to_dict(), loaded.to_dict()
    assert {k for k in a if a[k] != b[k]} <= {"name", "hardware", "precision"}
    assert ("preset" in data) == (not sets or sets == ["hardware.clock_mhz=250"])


def test_keep_precision():
    cfg = load_config("m3vit-micro", ["precision.profile=w16a16"])
    res = explore(cfg, "zcu102", grid=dict(SMALL, profile=None), progress=False)
    assert {p.profile for p in res.points} == {"w16a16"}


# --- commands -----------------------------------------------------------------------------------

def test_perf_command(capsys, tmp_path):
    out = tmp_path / "est.json"
    assert cli_main(["perf", "--config", "m3vit-micro", "--as-written", "--resources", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ms/image" in text and "modelled / roofline" in text and "(all: as written)" in text
    assert "utilisation" in text and out.is_file()
    assert cli_main(["perf", "--config", "m3vit-micro", "--mode", "edgemoe-dram", "--batch", "4",
                          "--routing", "skewed:2"]) == 0
    assert "skewed" in capsys.readouterr().out
    # batch > 1 on chip: the resources as written, and what the intended sharing would need beside them
    assert cli_main(["perf", "--config", "m3vit-micro", "--batch", "4", "--resources"]) == 0
    text = capsys.readouterr().out
    assert "groups of hardware.moe_batch = 1" in text and "were shared across the batch of 4" in text
    assert cli_main(["perf", "--config", "m3vit-micro", "--routing", "zipf"]) == 2
    assert "--routing" in capsys.readouterr().err


def test_explore_command_writes_config(capsys, tmp_path):
    out = tmp_path / "z.yaml"
    rc = cli_main(["explore", "--config", "m3vit-micro", "--board", "zcu102", "--batch", "1", "2", "--quick",
                        "--no-progress", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Pareto front: latency vs DSP" in text and "Pareto front: latency vs BRAM36" in text
    assert "chosen:" in text and f"wrote {out}" in text
    assert load_config(out).hardware.board == "zcu102"


def test_explore_tries_moe_groups_at_the_batches_that_fill_them(tmp_path):
    """hardware.moe_batch is a grid axis tried only at batches of at least that many images: a group costs block
    RAM (its MoE state), no DSP, and streams each active expert's weights once for the group; the YAML records
    the chosen group."""
    cfg = load_config("m3vit-tiny-cityscapes")
    grid = dict(QUICK_GRID, cu_in=(16,), cu_out=(16,), attn_parallel=(4,), profile=("w8a16",), moe_batch=(2, 8))
    res = explore(cfg, "zcu102", batches=(1, 4), grid=grid, progress=False)
    assert {p.moe_batch for p in res.points if p.batch == 1} == {1}
    at4 = {p.moe_batch: p for p in res.points if p.batch == 4}
    assert set(at4) == {1, 2}
    alone, group = at4[1], at4[2]
    assert group.dsp == alone.dsp and group.bram36 > alone.bram36
    assert group.weight_mb_per_image < alone.weight_mb_per_image and group.ms_per_image < alone.ms_per_image
    assert group.cfg.hardware.moe_batch == 2 and "/2" in group.label()
    best = res.best(batch=4)
    path = res.write_yaml(tmp_path / "b4.yaml", best)
    assert load_config(path).hardware.moe_batch == best.moe_batch
    assert f"groups of hardware.moe_batch = {best.moe_batch}" in path.read_text()
    args = argparse.ArgumentParser()
    perf_cli.add_commands(args.add_subparsers(dest="command", required=True))
    assert args.parse_args(["explore", "--moe-batch", "1", "4"]).moe_batch == [1, 4]


def test_add_commands_hooks_into_a_parser():
    parser = argparse.ArgumentParser()
    perf_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["explore", "--config", "m3vit-micro", "--set", "hardware.cu_in=8", "--board", "u280",
                              "--batch", "1", "8"])
    assert args.func is perf_cli.cmd_explore and args.batch == [1, 8] and args.set == ["hardware.cu_in=8"]
    assert parser.parse_args(["report", "--out", "r.html"]).func is perf_cli.cmd_report
    assert parser.parse_args(["perf"]).mode == "onchip"


def test_report_html_is_self_contained(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert cli_main(["report", "--config", "m3vit-micro", "--out", str(out), "--images", "1",
                          "--batch", "4"]) == 0
    html = out.read_text()
    for section in ("Summary", "Per-layer latency", "Per-step cycles", "Roofline", "Resources vs zcu102 limits",
                    "The template as written", "Routing statistics per task", "Fixed-point vs float accuracy per tap"):
        assert f"<h2>{section}" in html, section
    imgs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(imgs) == 4
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in imgs)
    assert "src='http" not in html and "<script" not in html
    for task in ("semseg", "depth"):
        assert f"tap ({task})" in html
    for board in BOARDS:
        assert f"<td class='l'>{board}</td>" in html


def test_report_markdown_writes_pngs(tmp_path):
    from edgemoe.perf.report import write_report

    out = write_report(load_config("m3vit-micro"), tmp_path / "r.md", images=1, tasks=["depth"], batch=2)
    md = out.read_text()
    assert "## Roofline" in md and "![Roofline](r_roofline.png)" in md
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["r_accuracy.png", "r_layers.png", "r_roofline.png", "r_routing.png"]


@pytest.mark.slow
def test_full_grid_on_tiny_for_every_board():
    cfg = load_config("m3vit-tiny-cityscapes")
    for board in BOARDS:
        res = explore(cfg, board, batches=(1, 8), modes=("onchip", "edgemoe-dram"), progress=False)
        assert res.best(1, "onchip") is not None
        assert res.best(8, "edgemoe-dram") is not None


def test_explore_searches_weight_lanes_and_names_the_fastest_fitting():
    """weight_lanes is a grid axis: on the ZCU102 (6 PS ports, 2 other buffers) 1, 2 and 4 lanes fit, 8 is
    skipped as a config the board's ports refuse, and more lanes (the weight stream on more ports) is chosen."""
    cfg = load_config("m3vit-tiny-zcu102")
    grid = {"cu_in": (32,), "cu_out": (32,), "attn_parallel": (4,), "axi_width": (256,), "weight_lanes": (1, 2, 8),
            "profile": None}
    res = explore(cfg, "zcu102", grid=grid, progress=False)
    assert sorted(p.weight_lanes for p in res.points) == [1, 2]
    assert any(reason.startswith("hardware.weight_lanes") for reason in res.skipped)
    c = res.chosen
    assert c.weight_lanes == c.cfg.hardware.weight_lanes == 2 and "AXI 256/2" in c.label()
    assert c.ms_per_image < next(p for p in res.points if p.weight_lanes == 1).ms_per_image
    assert res.chosen_config_data()["hardware"]["weight_lanes"] == 2
