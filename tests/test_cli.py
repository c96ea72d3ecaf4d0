"""The edgemoe command line: output of the golden/config/generate commands and one-line user errors."""
from __future__ import annotations

import pytest
import yaml

from edgemoe.cli import main


def test_golden_prints_the_tap_table_for_each_task(capsys):
    assert main(["golden", "--config", "m3vit-micro", "--images", "1"]) == 0
    out = capsys.readouterr().out
    assert "task semseg: fixed-point vs float, per tap" in out and "task depth" in out
    for tap in ("patch_embed", "blocks.0.norm1", "blocks.1.gate_logits", "blocks.1.topk_idx", "blocks.3.out",
                "head.semseg", "head.depth"):
        assert tap in out
    assert "label agreement" in out and "overflows:" in out


def test_config_round_trips_through_yaml(tmp_path, capsys):
    assert main(["config", "--config", "m3vit-micro", "--set", "model.depth=6", "--set", "model.moe_blocks=odd"]) == 0
    text = capsys.readouterr().out
    data = yaml.safe_load(text)
    assert data["model"]["depth"] == 6 and data["model"]["moe_blocks"] == [1, 3, 5]
    assert "# digest: " in text
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert main(["config", "--config", str(path)]) == 0
    assert capsys.readouterr().out == text


def test_config_fields_are_documented(capsys):
    assert main(["config", "--fields"]) == 0
    out = capsys.readouterr().out
    for name in ("[model]", "[precision]", "[hardware]", "num_experts", "softmax_inv", "attn_parallel"):
        assert name in out


@pytest.mark.parametrize("argv,fragment", [
    (["golden", "--config", "m3vit-micro", "--set", "model.top_k=9"], "model.top_k = 9: must be <= model.num_experts (4)"),
    (["golden", "--config", "no-such-preset"], "config = 'no-such-preset'"),
    (["config", "--set", "precision.act=fixed<99,3>"], "precision.act"),
    (["golden", "--config", "m3vit-micro", "--task", "normals"], "task = 'normals'"),
    (["golden", "--config", "m3vit-micro", "--image", "/no/such.png"], "/no/such.png: no such file"),
    (["golden", "--config", "m3vit-micro", "--weights", "/no/such.pth"], "/no/such.pth"),
    (["golden", "--config", "m3vit-micro", "--timm-weights", "/no/such.pth"], "/no/such.pth: no such checkpoint file"),
])
def test_user_errors_are_one_line_without_traceback(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3


def test_generate_writes_a_checked_project(tmp_path, capsys):
    out = tmp_path / "prj"
    assert main(["generate", "--config", "m3vit-micro", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "synthesizability check: 0 violation(s)" in text
    assert (out / "src" / "edgemoe_vit.cpp").is_file() and (out / "regmap.json").is_file()
