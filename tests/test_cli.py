"""The edgemoe command line: output of the golden/config/generate commands and one-line user errors."""
from __future__ import annotations

import numpy as np
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


# --- one-line errors for every option --------------------------------------------------------

def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "usage:" not in err, err
    return err


@pytest.mark.parametrize("argv,fragment", [
    (["run", "--timeout", "-1"], "argument --timeout: '-1' is not allowed: a number of seconds > 0 and <= 86400"),
    (["run", "--timeout", "0"], "argument --timeout: '0' is not allowed"),
    (["run", "--timeout", "nan"], "argument --timeout: 'nan' is not allowed"),
    (["run", "--timeout", "inf"], "argument --timeout: 'inf' is not allowed"),
    (["run", "--batch", "0"], "argument --batch: '0' is not allowed: an integer from 1 to 65535"),
    (["run", "--batch", "70000"], "argument --batch: '70000' is not allowed: an integer from 1 to 65535"),
    (["run", "--seed", "-1"], "argument --seed: '-1' is not allowed: an integer from 0 to 4294967295"),
    (["compare", "--images", "100000"], "argument --images: '100000' is not allowed: an integer from 1 to 256"),
    (["compare", "--images", "0"], "argument --images: '0' is not allowed"),
    (["golden", "--images", "0"], "argument --images: '0' is not allowed"),
    (["numerics", "--samples", "0"], "argument --samples: '0' is not allowed: an integer from 1 to 2000000"),
    (["numerics", "--samples", "-5"], "argument --samples: '-5' is not allowed"),
    (["perf", "--batch", "100000000"], "argument --batch: '100000000' is not allowed"),
    (["perf", "--routing", "skewed:nan"], "--routing = 'skewed:nan': skewed takes a Zipf exponent from 0 to 100"),
    (["perf", "--routing", "golden", "--images", "100000"], "argument --images: '100000' is not allowed"),
    (["report", "--out", "/no/such/dir/r.html", "--batch", "0"], "argument --batch: '0' is not allowed"),
    (["explore", "--rows", "0"], "argument --rows: '0' is not allowed"),
    (["explore", "--cap", "nan"], "argument --cap: 'nan' is not allowed: a fraction > 0 and <= 1"),
    (["explore", "--batch", "1", "0"], "argument --batch: '0' is not allowed"),
    (["run", "--device", "gpu"], "argument --device: invalid choice: 'gpu'"),
    (["run", "--config", "m3vit-micro"], "the following arguments are required: IMAGE"),
])
def test_out_of_range_options_are_one_line_errors(argv, fragment, capsys):
    argv = argv[:1] + ["--config", "m3vit-micro", "--device", "board"] * (argv[0] in ("run", "compare")) + argv[1:]
    if argv[0] == "run" and "IMAGE" not in fragment:
        argv.append("/no/such.png")
    err = _one_line_error(capsys, argv)
    assert err.startswith(f"edgemoe {argv[0]}: error: ") and fragment in err, err


@pytest.mark.parametrize("command", ["run", "pack", "report"])
def test_an_output_path_under_or_at_a_file_is_a_one_line_error(command, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    folder_out = command == "run"
    out = afile if folder_out else afile / "w.npz"
    argv = [command, "--config", "m3vit-micro", "--out", str(out)] + (["--device", "sim", "x.png"] if command == "run" else [])
    err = _one_line_error(capsys, argv)
    assert f"argument --out: '{out}'" in err and ("is a file; the output needs a folder" in err if folder_out
                                                   else f"{afile} is a file, not a folder" in err), err
    assert afile.read_text() == "x"


def test_a_file_system_error_while_writing_is_one_line(tmp_path, capsys, monkeypatch):
    import edgemoe.host.weights_file as wf

    def refuse(self, path):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(wf.PackedWeights, "save", refuse)
    err = _one_line_error(capsys, ["pack", "--config", "m3vit-micro", "--out", str(tmp_path / "w.npz")])
    assert f"edgemoe pack: error: {tmp_path / 'w.npz'}: Permission denied" in err, err


def test_a_task_index_is_accepted_as_offered(capsys):
    assert main(["golden", "--config", "m3vit-micro", "--images", "1", "--task", "1"]) == 0
    out = capsys.readouterr().out
    assert "task depth: fixed-point vs float" in out and "task semseg" not in out
    err = _one_line_error(capsys, ["golden", "--config", "m3vit-micro", "--task", "2"])
    assert "task = 2: must be one of semseg, depth (or an index 0..1)" in err


def test_python_dash_m_edgemoe_is_the_command_line(tmp_path):
    import subprocess
    import sys

    run = lambda *a: subprocess.run([sys.executable, "-m", "edgemoe", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=tmp_path, timeout=300)
    ok = run("config", "--config", "m3vit-micro")
    assert ok.returncode == 0 and "# digest: " in ok.stdout, ok.stderr
    bad = run("config", "--config", "no-such-preset")
    assert bad.returncode == 2 and bad.stderr.startswith("edgemoe config: error: config = 'no-such-preset'")
    usage = run("golden", "--images", "0")
    assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1
    assert run("--help").returncode == 0


# --- run: what is said about the inputs, and where the outputs go ----------------------------

@pytest.fixture(scope="module")
def sim_bitstreams(tmp_path_factory):
    """bitstreams/ redirected to a temporary folder where ``run`` builds the micro overlay once."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("bitstreams")
        mp.setenv("EDGEMOE_BITSTREAMS", str(path))
        yield path


def _photo(path, h, w, seed=0):
    from skimage.io import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), check_contrast=False)
    return str(path)


def test_run_says_once_how_each_image_was_fitted_and_takes_a_task_index(sim_bitstreams, tmp_path, capsys):
    wide, exact = _photo(tmp_path / "wide.png", 48, 64), _photo(tmp_path / "exact.png", 32, 64)
    out = tmp_path / "out"
    assert main(["run", "--config", "m3vit-micro", "--device", "sim", "--task", "1", "--out", str(out), wide, exact]) == 0
    text = capsys.readouterr().out
    assert text.count("centre-cropped") == 1 and f"image {wide}: 64x48 centre-cropped to 64x32\n" in text, text
    assert "exact.png:" not in text.replace(f"{exact} ->", "")  # taken as it is: nothing to say
    assert sorted(p.name for p in out.iterdir()) == ["exact_depth.png", "wide_depth.png"]


def test_run_gives_inputs_with_one_name_distinct_outputs(sim_bitstreams, tmp_path, capsys):
    paths = [_photo(tmp_path / "a" / "x.png", 32, 64, 1), _photo(tmp_path / "b" / "x.png", 32, 64, 2),
             _photo(tmp_path / "c" / "x-2.png", 32, 64, 3)]
    out = tmp_path / "out"
    assert main(["run", "--config", "m3vit-micro", "--device", "sim", "--task", "semseg", "--out", str(out), *paths]) == 0
    text = capsys.readouterr().out
    assert f"{paths[1]}: its outputs are named x-3_<task>.png (x is taken by another input)" in text, text
    assert sorted(p.name for p in out.iterdir()) == ["x-2_semseg.png", "x-3_semseg.png", "x_semseg.png"]
    assert f"{paths[2]} -> {out / 'x-2_semseg.png'}" in text and f"{paths[1]} -> {out / 'x-3_semseg.png'}" in text


def test_demo_usage_errors_are_one_line(tmp_path, capsys):
    from edgemoe.cli.demo import main as demo_main

    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv, fragment in ((["--out", str(afile)], f"argument --out: '{afile}' is a file"),
                           (["--seed", "-1"], "argument --seed: '-1' is not allowed"),
                           (["--photo", "moon"], "argument --photo: invalid choice: 'moon'")):
        assert demo_main(["--config", "m3vit-micro", *argv]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and fragment in err, err
    assert afile.read_text() == "x"
