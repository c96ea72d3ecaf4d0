"""Weight values: NaN / inf named on every path into the accelerator, saturation reported (pack, run, golden)."""
from __future__ import annotations

import pytest
import torch

from edgemoe.cli import main
from edgemoe.golden.checkpoint import save_checkpoint
from edgemoe.golden.fixed_model import FixedM3ViT
from edgemoe.golden.float_model import M3ViT
from edgemoe.golden.numerics.overflow import OverflowCounter
from edgemoe.golden.report import compare, format_report
from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict
from edgemoe.golden.weights import quantize_weights
from edgemoe.host.errors import WeightsFileError
from edgemoe.host.weights_file import load_weights_file, pack_state_dict, packed_for
from edgemoe.loading import load_config

PROJ = "backbone.blocks.0.attn.proj.weight"
#: the three values of PROJ outside w16a32's weight type fixed<16,2> (-2 .. 2 - 2**-14)
LOUD = (5.0, -7.0, 1e6)


@pytest.fixture(scope="module")
def cfg():
    return load_config("m3vit-micro")


@pytest.fixture(scope="module")
def sd(cfg):
    return synthetic_state_dict(cfg.model, seed=1)


@pytest.fixture(scope="module")
def loud(sd):
    """The synthetic weights with three values of PROJ far outside the weight type."""
    out = dict(sd)
    out[PROJ] = sd[PROJ].clone()
    out[PROJ][0, :3] = torch.tensor(LOUD)
    return out


def _with(sd: dict, key: str, value: float) -> dict:
    out = dict(sd)
    out[key] = sd[key].clone()
    out[key].view(-1)[:2] = value
    return out


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEMOE_CACHE", str(tmp_path / "cache"))


def test_quantize_names_the_nonfinite_backbone_tensor(cfg, sd):
    with pytest.raises(ValueError, match=r"non-finite values in 1 backbone tensor\(s\): "
                                         r"backbone\.blocks\.1\.mlp\.experts\.htoh4\.bias: 2 inf of 512 values"):
        quantize_weights(cfg, _with(sd, "backbone.blocks.1.mlp.experts.htoh4.bias", float("inf")))


def test_pack_refuses_a_nonfinite_task_head(cfg, sd):
    with pytest.raises(WeightsFileError, match=r"non-finite values in 1 tensor\(s\).*config m3vit-micro: "
                                               r"decoders\.depth\.conv_0\.weight: 2 NaN of 18432 values$"):
        pack_state_dict(cfg, _with(sd, "decoders.depth.conv_0.weight", float("nan")))


def test_saturated_weights_are_recorded_and_survive_the_file(cfg, loud, tmp_path):
    q = quantize_weights(cfg, loud)
    assert list(q.saturation) == [PROJ]
    s = q.saturation[PROJ]
    assert (s.stats.overflows, s.stats.high, s.stats.low, s.stats.total) == (3, 2, 1, 64 * 64)
    assert s.max_abs == 1e6
    assert q.saturation_notices() == [f"{PROJ}: 3 of 4096 values saturate in fixed<16,2,RND_CONV,SAT> "
                                      f"(max |w| 1e+06, the type holds -2..2)"]
    packed = pack_state_dict(cfg, loud)
    assert packed.saturation == q.saturation_notices()
    assert load_weights_file(packed.save(tmp_path / "w.npz"), cfg).saturation == packed.saturation
    logged = []
    packed_for(cfg, loud, cache_dir=tmp_path / "c", log=logged.append)
    packed_for(cfg, loud, cache_dir=tmp_path / "c", log=logged.append)  # the cached file says it too
    assert [line for line in logged if "saturated weights" in line] == \
        [f"  saturated weights: {q.saturation_notices()[0]}"] * 2


def test_an_outer_overflow_counter_still_counts_the_weights(cfg, loud):
    with OverflowCounter() as ovf:
        quantize_weights(cfg, loud)
    assert ovf.stats[f"weights.{PROJ}"].overflows == 3


def test_golden_report_lists_saturated_weights(cfg, loud):
    images = synthetic_images(cfg.model, 1, seed=0)
    report = compare(FixedM3ViT(cfg, loud), M3ViT.from_state_dict(cfg.model, loud), images, "depth")
    stats = report.overflow.offenders()[f"weights.{PROJ}"]
    assert (stats.overflows, stats.total) == (3, 4096)
    row = next(line for line in format_report(report).splitlines() if f"weights.{PROJ}" in line)
    assert row.split()[1:4] == ["fixed<16,2,RND_CONV,SAT>", "3", "4096"]


def test_golden_command_prints_weight_saturation(cfg, loud, tmp_path, capsys):
    ckpt = save_checkpoint(loud, tmp_path / "loud.pth")
    assert main(["golden", "--config", "m3vit-micro", "--weights", str(ckpt), "--images", "1",
                 "--task", "semseg"]) == 0
    assert f"weights.{PROJ}" in capsys.readouterr().out


def test_pack_command_reports_saturation(loud, tmp_path, capsys):
    ckpt = save_checkpoint(loud, tmp_path / "loud.pth")
    assert main(["pack", "--config", "m3vit-micro", "--weights", str(ckpt), "--out", str(tmp_path / "w.npz")]) == 0
    assert f"saturated weights: {PROJ}: 3 of 4096 values saturate" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["pack", "run"])
def test_nonfinite_checkpoint_is_a_one_line_error(command, sd, tmp_path, capsys):
    ckpt = save_checkpoint(_with(sd, "decoders.semseg.conv_4.bias", float("nan")), tmp_path / "nan.pth")
    argv = [command, "--config", "m3vit-micro", "--weights", str(ckpt)]
    argv += ["--out", str(tmp_path / "w.npz")] if command == "pack" else ["--out", str(tmp_path / "o"), "x.png"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"edgemoe {command}: error: checkpoint {ckpt}: non-finite values in 1 tensor(s), which cannot "
                   f"be quantised or run: decoders.semseg.conv_4.bias: 2 NaN of 7 values")
    assert not (tmp_path / "w.npz").exists() and not (tmp_path / "o").exists()


def test_truncated_npz_is_named_for_what_it_is(cfg, sd, tmp_path, capsys):
    path = pack_state_dict(cfg, sd).save(tmp_path / "w.npz")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsFileError, match=r"w\.npz: not an edgemoe weights file \(truncated/corrupt \.npz "):
        load_weights_file(path, cfg)
    assert main(["run", "--config", "m3vit-micro", "--weights", str(path), "--out", str(tmp_path / "o"),
                 "x.png"]) == 2
    err = capsys.readouterr().err
    assert err == f"edgemoe run: error: {path}: not a checkpoint: truncated/corrupt .npz archive\n"
