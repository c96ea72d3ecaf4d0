"""Scene generator, scene datasets, task metrics, training and evaluation."""
from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch

from edgemoe.golden import dataset as ds
from edgemoe.golden.metrics import DepthMetrics, SegMetrics
from edgemoe.golden.scenes import CAMERA_HEIGHT_M, CLASSES, FLAT, FOCAL_WIDTHS, SKY, SKY_DEPTH_M, render_scene
from edgemoe.loading import load_config


# --- scenes ---------------------------------------------------------------------------------

def test_scene_is_deterministic_per_seed():
    a, b, c = render_scene((3, 0, 5)), render_scene((3, 0, 5)), render_scene((3, 0, 6))
    assert np.array_equal(a.image_u8, b.image_u8) and np.array_equal(a.label, b.label)
    assert np.array_equal(a.depth_m, b.depth_m)
    assert not np.array_equal(a.image_u8, c.image_u8)


def test_scene_shapes_and_types():
    s = render_scene(1, 32, 64)
    assert s.image_u8.shape == (32, 64, 3) and s.image_u8.dtype == np.uint8
    assert s.label.shape == (32, 64) and s.label.dtype == np.uint8 and s.label.max() < len(CLASSES)
    assert s.depth_m.shape == (32, 64) and s.depth_m.dtype == np.float32


@pytest.mark.parametrize("seed", range(6))
def test_labels_and_depth_agree(seed):
    s = render_scene((seed,))
    sky = s.label == SKY
    # the sky is at the far depth, everything else nearer
    assert np.all(s.depth_m[sky] == SKY_DEPTH_M)
    assert np.all(s.depth_m[~sky] < SKY_DEPTH_M)
    # the ground plane: one depth per row, growing up the image (towards the horizon)
    rows = [r for r in range(s.label.shape[0]) if (s.label[r] == FLAT).any()]
    per_row = [s.depth_m[r][s.label[r] == FLAT] for r in rows]
    assert all(np.ptp(d) <= 1e-4 * d.max() for d in per_row)
    firsts = np.array([d[0] for d in per_row])
    assert np.all(np.diff(firsts) < 0), "ground depth must shrink row by row towards the camera"


@pytest.mark.parametrize("seed", range(6))
def test_one_camera_rig(seed):
    """Metric depth is observable: the ground's 1/depth grows by 1 / (f * height) a row, f and height the rig's."""
    s = render_scene((seed, 1))
    rows = [r for r in range(s.label.shape[0])
            if (s.label[r] == FLAT).any() and 1.0 < s.depth_m[r][s.label[r] == FLAT][0] < 0.9 * SKY_DEPTH_M]
    inv = np.array([1.0 / s.depth_m[r][s.label[r] == FLAT][0] for r in rows])
    slope, _ = np.polyfit(np.array(rows, float), inv, 1)
    f_px = FOCAL_WIDTHS * s.label.shape[1]
    assert f_px * CAMERA_HEIGHT_M[0] * 0.999 <= 1.0 / slope <= f_px * CAMERA_HEIGHT_M[1] * 1.001


def test_every_class_appears():
    seen = set()
    for i in range(12):
        seen |= set(np.unique(render_scene((7, i)).label).tolist())
    assert seen == set(range(len(CLASSES)))


# --- datasets --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    ds.write_dataset(out, {"train": 48, "val": 8, "test": 8}, seed=2, height=32, width=64, progress=False)
    return out


def test_dataset_round_trip(micro_data):
    recipe = json.loads((micro_data / ds.RECIPE).read_text())
    assert recipe["splits"]["train"]["scenes"] == 48 and recipe["height"] == 32
    test = ds.load_split(micro_data, "test")
    again = render_scene(ds.scene_seed(2, "test", 3), 32, 64)
    assert np.array_equal(test.images_u8[3], again.image_u8) and np.array_equal(test.labels[3], again.label)
    assert np.allclose(test.depth_m[3], again.depth_m, rtol=1e-3)
    assert (micro_data / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_splits_never_share_a_scene(micro_data):
    images = {name: ds.load_split(micro_data, name).images_u8 for name in ds.SPLITS}
    seen = {}
    for name, arr in images.items():
        for i, img in enumerate(arr):
            key = img.tobytes()
            assert key not in seen, f"{name}[{i}] repeats {seen.get(key)}"
            seen[key] = (name, i)


def test_changed_split_file_is_refused(micro_data, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(micro_data, copy)
    data = (copy / "val.npz").read_bytes()
    (copy / "val.npz").write_bytes(data[:-10])
    with pytest.raises(ds.DatasetError, match="SHA-256"):
        ds.load_split(copy, "val")
    (copy / ds.RECIPE).write_text(json.dumps({**json.loads((copy / ds.RECIPE).read_text()), "generator_version": 0}))
    with pytest.raises(ds.DatasetError, match="generator_version"):
        ds.load_split(copy, "test")


def test_dataset_errors_name_the_field(tmp_path):
    with pytest.raises(ds.DatasetError, match="no such folder"):
        ds.load_split(tmp_path / "nope", "train")
    with pytest.raises(ds.DatasetError, match="missing"):
        ds.load_split(tmp_path, "train")
    with pytest.raises(ds.DatasetError, match=r"train scenes = -1: must be an integer in 0\.\."):
        ds.write_dataset(tmp_path / "x", {"train": -1})
    with pytest.raises(ds.DatasetError, match="unknown"):
        ds.write_dataset(tmp_path / "x", {"holdout": 3})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ds.DatasetError, match="not a folder"):
        ds.write_dataset(tmp_path / "file", {"train": 1})


# --- metrics -----------------------------------------------------------------------------------

def test_segmentation_metrics_match_a_hand_computed_confusion_matrix():
    true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 0, 2, 0])
    m = SegMetrics(4)
    m.update(pred[:6], true[:6])
    m.update(pred[6:], true[6:])
    # rows: true class, columns: predicted class
    expected = np.array([[3, 1, 0, 0], [0, 1, 1, 0], [1, 0, 3, 0], [0, 0, 0, 0]])
    assert np.array_equal(m.confusion, expected)
    iou = m.iou()
    assert iou[0] == pytest.approx(3 / (4 + 4 - 3))
    assert iou[1] == pytest.approx(1 / (2 + 2 - 1))
    assert iou[2] == pytest.approx(3 / (4 + 4 - 3))
    assert np.isnan(iou[3])                       # absent from truth and prediction: not in the mean
    s = m.summary()
    assert s["miou"] == pytest.approx((0.6 + 1 / 3 + 0.6) / 3)
    assert s["pixel_acc"] == pytest.approx(7 / 10)
    with pytest.raises(ValueError, match="0..3"):
        m.update(np.array([4]), np.array([0]))


def test_depth_metrics_by_hand():
    true = np.array([1.0, 2.0, 4.0, np.nan, 0.0])
    pred = np.array([1.1, 1.0, 4.0, 3.0, 1.0])
    m = DepthMetrics()
    m.update(pred, true)
    s = m.summary()
    assert m.pixels == 3
    assert s["abs_rel"] == pytest.approx((0.1 + 0.5 + 0) / 3)
    assert s["rmse_m"] == pytest.approx(np.sqrt((0.01 + 1 + 0) / 3))
    assert s["delta1"] == pytest.approx(2 / 3)
    assert "abs_rel_by_class" not in s


def test_depth_metrics_by_class_by_hand():
    true = np.array([[1.0, 2.0], [4.0, np.nan], [5.0, 10.0]])
    pred = np.array([[1.1, 1.0], [4.0, 3.0], [6.0, 10.0]])
    labels = np.array([[0, 1], [1, 0], [0, 0]])
    m = DepthMetrics(3)
    m.update(pred, true, labels)
    s = m.summary()
    # class 0: 1.0 -> 0.1, 5.0 -> 0.2, 10.0 -> 0 (the NaN pixel is not counted); class 1: 0.5, 0; class 2: none
    assert s["abs_rel_by_class"][:2] == pytest.approx([0.3 / 3, 0.5 / 2])
    assert np.isnan(s["abs_rel_by_class"][2])
    assert s["abs_rel"] == pytest.approx(0.8 / 5)
    with pytest.raises(ValueError, match="labels"):
        m.update(pred, true)
    with pytest.raises(ValueError, match="0..2"):
        m.update(pred, true, labels + 2)


# --- training ----------------------------------------------------------------------------------

def _small_cfg():
    return load_config("m3vit-micro", ["model.depth=2", "model.moe_blocks=odd", "model.head_channels=16"])


def test_short_training_lowers_the_loss_and_resumes(micro_data, tmp_path):
    from edgemoe.golden.checkpoint import load_m3vit_checkpoint
    from edgemoe.golden.train import TrainSettings, train

    cfg = _small_cfg()
    settings = TrainSettings(steps=40, batch=8, lr=2e-3, warmup_steps=4, val_scenes=8, save_every_s=1e9, log_every=1)
    out = tmp_path / "ck" / "small.pth"
    assert train(cfg, micro_data, out, settings, progress=False, log=lambda *_: None, stop_at_step=15) is None
    assert (tmp_path / "ck" / "small.pth.state.pt").exists() and not out.exists()
    lines = []
    recipe = train(cfg, micro_data, out, settings, progress=False, log=lines.append, command="test")
    assert any("resuming" in line and "step 15/40" in line for line in lines)
    losses = [h["loss"] for h in recipe["history"]]
    assert recipe["steps"] == 40 and len(losses) == 40
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])
    # the checkpoint is in M3ViT's format: the project's own loader takes it, checksum as recorded
    import hashlib

    assert hashlib.sha256(out.read_bytes()).hexdigest() == recipe["sha256"]
    loaded = load_m3vit_checkpoint(out, cfg.model)
    assert set(loaded.state_dict) == set(torch.load(out))
    assert json.loads(out.with_name("small.pth.json").read_text())["val"]["scenes"] == 8
    # fine-tuning starts from a checkpoint: its first loss is the trained model's, and the recipe names it
    tuned = train(cfg, micro_data, tmp_path / "ck" / "tuned.pth", dataclasses.replace(settings, steps=2),
                  progress=False, log=lambda *_: None, init=out)
    assert tuned["init"]["sha256"] == recipe["sha256"]
    assert tuned["history"][0]["loss"] < np.mean(losses[:8])


def test_head_crop_computes_the_window_of_the_whole_output():
    from edgemoe.golden.float_model import M3ViT
    from edgemoe.golden.heads import HeadCrop

    cfg = _small_cfg()
    torch.manual_seed(0)
    model = M3ViT(cfg.model).eval()
    head = model.decoders[cfg.model.task_names[0]]
    images = torch.rand(2, 3, cfg.model.img_height, cfg.model.img_width)
    with torch.no_grad():
        tokens = model.forward_backbone(images, 0)
        full = head(tokens)
        crop = HeadCrop(tops=(0, 3), lefts=(5, 1), height=8, width=12)
        part = head(tokens, crop=crop)
    assert part.shape == (2, full.shape[1], 16, 24)
    windows = crop.cut(full, scale=2)
    # away from the window's border (zero padding, upsampling clamp) the window is exact
    torch.testing.assert_close(part[..., 4:-4, 4:-4], windows[..., 4:-4, 4:-4], rtol=0, atol=1e-5)
    assert (part - windows).abs().max() > 1e-3  # the border is not
    with pytest.raises(ValueError, match="leave the"):
        head(tokens, crop=HeadCrop(tops=(0, 30), lefts=(0, 0), height=8, width=12))
    # in training mode the cropped stage normalises with its running statistics, not the window's
    last, first = getattr(head, f"syncbn_fc_{head.stages - 1}"), head.syncbn_fc_0
    last_before, first_before = last.running_mean.clone(), first.running_mean.clone()
    head.train()
    with torch.no_grad():
        head(tokens, crop=crop)
    assert torch.equal(last.running_mean, last_before)
    assert not torch.equal(first.running_mean, first_before)  # the uncropped stages did train


def test_class_weights_follow_median_frequency():
    from edgemoe.golden.train import class_weights

    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    assert class_weights(labels, 4, 0.0).tolist() == [1, 1, 1, 1]
    w = class_weights(labels, 4, 1.0).numpy()
    np.testing.assert_allclose(w, [0.5, 1.0, 3.0, 1.0], rtol=1e-6)  # median freq 0.3; class 3 absent -> 1
    np.testing.assert_allclose(class_weights(labels, 4, 0.5).numpy(), np.sqrt([0.5, 1.0, 3.0, 1.0]), rtol=1e-6)


def test_cropped_class_balanced_fine_tuning_runs_and_needs_a_trained_model(micro_data, tmp_path):
    from edgemoe.golden.train import TrainingError, TrainSettings, train

    cfg = _small_cfg()
    settings = TrainSettings(steps=3, batch=4, lr=1e-3, warmup_steps=1, val_scenes=4, save_every_s=1e9,
                             class_balance=0.5, head_crop=0.5)
    with pytest.raises(TrainingError, match="--head-crop 0.5 fine-tunes a trained model"):
        train(cfg, micro_data, tmp_path / "a.pth", settings, progress=False, log=lambda *_: None)
    base = train(cfg, micro_data, tmp_path / "base.pth", dataclasses.replace(settings, head_crop=1.0),
                 progress=False, log=lambda *_: None)
    lines = []
    tuned = train(cfg, micro_data, tmp_path / "tuned.pth", settings, progress=False, log=lines.append,
                  init=tmp_path / "base.pth")
    assert tuned["settings"]["head_crop"] == 0.5 and tuned["settings"]["class_balance"] == 0.5
    assert tuned["init"]["sha256"] == base["sha256"]
    # the recipe keeps the run it started from: the shipped model's description sums both
    from edgemoe.golden.pretrained import lineage

    assert tuned["init"]["recipe"]["sha256"] == base["sha256"]
    assert [r["steps"] for r in lineage(tuned)] == [3, 3] and lineage(base) == [base]
    assert any(line.startswith("class weights: ") for line in lines)
    with pytest.raises(TrainingError, match="--head-crop"):
        TrainSettings(head_crop=0.05).check()
    with pytest.raises(TrainingError, match="--threads = 0"):
        train(cfg, micro_data, tmp_path / "t.pth", settings, progress=False, init=tmp_path / "base.pth", threads=0)


def test_training_refuses_a_mismatched_dataset(micro_data, tmp_path):
    from edgemoe.golden.train import TrainingError, TrainSettings, train

    with pytest.raises(TrainingError, match="32x64, the model takes 128x256"):
        train(load_config("m3vit-tiny-cityscapes", []), micro_data, tmp_path / "x.pth", TrainSettings(steps=1),
              progress=False)
    with pytest.raises(TrainingError, match="--batch = 0"):
        train(_small_cfg(), micro_data, tmp_path / "x.pth", TrainSettings(batch=0), progress=False)


def test_fixed_point_evaluation_tracks_float(micro_data):
    from edgemoe.golden.evaluate import evaluate, fixed_predictor, float_predictor
    from edgemoe.golden.synthetic import synthetic_state_dict

    cfg = _small_cfg()
    sd = synthetic_state_dict(cfg.model, seed=0)
    test = ds.load_split(micro_data, "test")
    tokens = {}
    f = evaluate(cfg.model, float_predictor(cfg, sd), test, progress=False)
    q = evaluate(cfg.model, fixed_predictor(cfg, sd, tokens), test, progress=False)
    assert f["scenes"] == q["scenes"] == 8
    assert abs(f["pixel_acc"] - q["pixel_acc"]) < 0.05
    assert len(tokens["semseg"]) == 1 and tokens["semseg"][0].shape[0] == 8


# --- logit adjustment ------------------------------------------------------------------------------

def test_offsets_undo_a_prior_that_over_predicts_a_class():
    """Logits that would be right but for +3 on class 2: the search finds offsets that take it back."""
    from edgemoe.golden.logit_adjust import segmentation_summary, tune_offsets

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(6, 8, 8))
    logits = (2.0 * np.eye(3)[labels].transpose(0, 3, 1, 2) + rng.normal(0, 0.5, (6, 3, 8, 8))).astype(np.float32)
    logits[:, 2] += 3.0
    offsets, before, after = tune_offsets(logits, labels, progress=False)
    assert before["miou"] < 0.6 and after["miou"] > 0.95
    assert offsets[2] - np.mean(offsets[:2]) < -2.0 and abs(offsets.mean()) < 1e-9
    assert segmentation_summary(logits, labels, offsets)["miou"] == after["miou"]
    # nothing to gain: zero offsets, the same figures
    clean = logits.copy()
    clean[:, 2] -= 3.0
    offsets, before, after = tune_offsets(clean, labels, progress=False)
    assert after["miou"] >= before["miou"] and np.abs(offsets).max() <= 0.25


def test_adjustment_changes_only_the_segmentation_bias(micro_data):
    from edgemoe.golden.logit_adjust import (AdjustError, adjust_state_dict, bias_key, segmentation_logits,
                                              storage_dtype)
    from edgemoe.golden.synthetic import synthetic_state_dict

    cfg = _small_cfg()
    sd = synthetic_state_dict(cfg.model, seed=0)
    val = ds.load_split(micro_data, "val")
    task, key = bias_key(cfg.model)
    assert task == "semseg" and key == f"decoders.semseg.conv_{cfg.model.upsample_stages}.bias"
    adjusted, adj = adjust_state_dict(cfg.model, sd, val, progress=False)
    assert [k for k in sd if not torch.equal(sd[k], adjusted[k])] in ([], [key])
    assert np.allclose((adjusted[key] - sd[key]).numpy(), adj.offsets, atol=1e-6)
    assert adj.miou_after >= adj.miou_before and adj.scenes == 8
    # the adjusted model's logits are the old ones plus the offsets
    before, after = segmentation_logits(cfg.model, sd, val, progress=False), \
        segmentation_logits(cfg.model, adjusted, val, progress=False)
    assert np.allclose(after - before, np.asarray(adj.offsets, np.float32)[None, :, None, None], atol=1e-4)
    # stored as float16 only when that loses nothing; rounded to it, "after" is the rounded bias's figure
    assert storage_dtype({"a": torch.tensor([0.5, 1.25])}) == torch.float16
    assert storage_dtype({"a": torch.tensor([0.1])}) == torch.float32
    half, adj16 = adjust_state_dict(cfg.model, sd, val, dtype=torch.float16, progress=False)
    assert torch.equal(half[key], half[key].half().float())
    with pytest.raises(AdjustError, match="no decoders.semseg"):
        adjust_state_dict(cfg.model, {k: v for k, v in sd.items() if k != key}, val, progress=False)


# --- calibration -----------------------------------------------------------------------------------

def test_calibration_sizes_fields_to_their_ranges():
    from edgemoe.golden.calibrate import int_bits_for, measure_ranges, propose_profile, tag_field
    from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict

    assert int_bits_for(39.0, headroom=1.0) == 7          # |x| < 64 needs 6 magnitude bits + sign
    assert int_bits_for(31.9, headroom=1.0) == 6
    assert int_bits_for(0.3, headroom=1.0) == 0           # |x| < 0.5
    assert tag_field("blocks.3.norm2.centered") == "ln_centered"
    assert tag_field("blocks.10.expert_fc1") == "act"
    assert tag_field("weights.backbone.blocks.1.attn.qkv.bias") == "attn_bias"
    cfg = load_config("m3vit-micro", ["precision.profile=w16a16"])
    sd = synthetic_state_dict(cfg.model, seed=0)
    sd["backbone.blocks.0.mlp.fc2.weight"] = sd["backbone.blocks.0.mlp.fc2.weight"] * 40  # drive act past <16,6>
    ranges = measure_ranges(cfg, sd, synthetic_images(cfg.model, 2), progress=False)
    assert ranges["act"].overflows > 0 and ranges["act"].max_abs >= cfg.precision.act.max_value
    assert ranges["weight"].max_abs > 1.9              # the scaled weights saturate <16,2> too
    proposed, changes = propose_profile(cfg.model, cfg.precision, ranges, headroom=1.0)
    assert proposed.act.int_bits > cfg.precision.act.int_bits and proposed.act.bits == cfg.precision.act.bits
    assert proposed.pixel == cfg.precision.pixel
    # the accumulator follows the new formats and stays exact (the config's own width rules accept it)
    from edgemoe.golden.numerics.widths import check_precision, exact_accumulator
    assert proposed.accum == exact_accumulator(cfg.model, proposed)
    check_precision(cfg.model, proposed)
    with pytest.raises(Exception, match="fraction bits"):
        check_precision(cfg.model, dataclasses.replace(proposed, accum=dataclasses.replace(
            proposed.accum, int_bits=proposed.accum.int_bits + 1)))
    assert proposed.attn_prob == cfg.precision.attn_prob    # unsigned fields keep their format
    assert proposed.name == "w16a16-cal" and set(changes) <= set(cfg.precision.type_fields())


# --- the commands ----------------------------------------------------------------------------------

def test_commands_data_train_calibrate_eval(tmp_path, monkeypatch, capsys):
    """The whole flow on the micro preset: render, train, calibrate a profile, evaluate float/fixed/device."""
    from edgemoe.cli import main

    monkeypatch.setenv("EDGEMOE_BITSTREAMS", str(tmp_path / "bitstreams"))
    (tmp_path / "bitstreams").mkdir()
    small = ["--config", "m3vit-micro"]
    data, ckpt = tmp_path / "data", tmp_path / "ck" / "m.pth"
    assert main(["data", "scenes", *small, "--out", str(data), "--n", "24", "--val", "4", "--test", "4"]) == 0
    train_args = ["train", *small, "--data", str(data), "--out", str(ckpt), "--steps", "3", "--batch", "4",
                  "--val-scenes", "4"]
    # run as `python -m edgemoe`: the recipe still records the command line
    monkeypatch.setattr(sys, "argv", ["/somewhere/edgemoe/__main__.py", *train_args])
    assert main(train_args) == 0
    assert "validation: mIoU" in capsys.readouterr().out
    assert json.loads(ckpt.with_name("m.pth.json").read_text())["command"] == "edgemoe " + " ".join(train_args)
    # logit adjustment on the validation split: a new checkpoint whose recipe keeps the training's and adds the step
    adjusted = tmp_path / "ck" / "m-adj.pth"
    adjust_args = ["adjust", *small, "--data", str(data), "--weights", str(ckpt), "--out", str(adjusted)]
    monkeypatch.setattr(sys, "argv", ["edgemoe", *adjust_args])
    assert main(adjust_args) == 0
    out = capsys.readouterr().out
    assert "logit offsets tuned on 4 val scene(s)" in out and "val mIoU" in out
    from edgemoe.golden.checkpoint import load_m3vit_checkpoint
    from edgemoe.golden.pretrained import checkpoint_recipe

    recipe = checkpoint_recipe(adjusted)                     # checked against the file's SHA-256
    assert recipe["steps"] == 3 and recipe["checkpoint"] == "m-adj.pth"
    step = recipe["logit_adjustment"]
    assert step["command"] == "edgemoe " + " ".join(adjust_args) and step["val_scenes"] == 4
    assert step["source"]["sha256"] == json.loads(ckpt.with_name("m.pth.json").read_text())["sha256"]
    assert len(step["offsets"]) == load_config("m3vit-micro").model.tasks[0].out_channels
    load_m3vit_checkpoint(adjusted, load_config("m3vit-micro").model)
    assert main(["adjust", *small, "--data", str(data), "--weights", str(ckpt), "--out", str(ckpt)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["adjust", *small, "--data", str(data), "--out", str(adjusted)]) == 2
    assert "--weights" in capsys.readouterr().err
    assert main(["adjust", *small, "--data", str(data), "--weights", str(ckpt), "--split", "test",
                 "--out", str(adjusted)]) == 2
    assert "--split test" in capsys.readouterr().err
    profile = tmp_path / "cal.yaml"
    assert main(["calibrate", *small, "--set", "precision.profile=w16a16", "--data", str(data),
                 "--weights", str(ckpt), "--scenes", "2", "--out", str(profile)]) == 0
    out = capsys.readouterr().out
    assert "proposed" in out and "w16a16-cal" in out
    assert load_config(str(profile)).precision.name == "w16a16-cal"
    code = main(["eval", *small, "--data", str(data), "--weights", str(ckpt), "--profiles", f"w16a32,{profile}",
                 "--fixed-scenes", "2", "--device", "sim", "--device-scenes", "2", "--json", str(tmp_path / "e.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "fixed w16a32" in out and "fixed w16a16-cal" in out and "device (sim)" in out
    assert "device tokens == golden fixed-point tokens (w16a32) on 2 scene(s), both tasks: yes, bit for bit" in out
    assert "depth AbsRel by class" in out
    figures = json.loads((tmp_path / "e.json").read_text())
    assert set(figures["rows"]) == {"float", "float (first 2)", "fixed w16a32", "fixed w16a16-cal", "device (sim)"}
    assert figures["rows"]["float"]["scenes"] == 4 and figures["device_equal"] is True
    # the report shows them as a section; a file that is not eval's JSON is a one-line error
    report = tmp_path / "r.md"
    assert main(["report", *small, "--out", str(report), "--eval", str(tmp_path / "e.json")]) == 0
    text = report.read_text()
    assert "## Task metrics: float vs fixed point vs device" in text and "fixed w16a16-cal" in text
    assert "flat AbsRel" in text
    capsys.readouterr()
    for bad in ({"rows": 3}, {**figures, "rows": {"float": {**figures["rows"]["float"], "abs_rel_by_class": [0.1]}}}):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        assert main(["report", *small, "--out", str(report), "--eval", str(tmp_path / "bad.json")]) == 2
        assert "--eval" in capsys.readouterr().err


def test_command_errors_are_one_line(tmp_path, capsys):
    from edgemoe.cli import main

    assert main(["train", "--config", "m3vit-micro", "--data", str(tmp_path / "none"), "--out",
                 str(tmp_path / "m.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err
    assert main(["data", "scenes", "--out", str(tmp_path / "d"), "--n", "0"]) == 2
    assert "--n" in capsys.readouterr().err


def test_calibration_keeps_fraction_bits_a_width_rule_needs():
    """LayerNorm's epsilon needs ln_centered's fraction bits: a wider range widens the field instead."""
    from edgemoe.golden.calibrate import FieldRange, propose_profile
    from edgemoe.golden.numerics.widths import check_precision

    cfg = load_config("m3vit-tiny-cityscapes", ["precision.profile=w16a16"])
    p = cfg.precision
    ranges = {"ln_centered": FieldRange("ln_centered", p.ln_centered, 30.0, 0, 100, 1),
              "act": FieldRange("act", p.act, 30.0, 0, 100, 1)}
    proposed, changes = propose_profile(cfg.model, p, ranges, headroom=1.25)
    assert proposed.act.bits == 16 and proposed.act.int_bits == 7
    assert proposed.ln_centered.int_bits == 7 and proposed.ln_centered.frac_bits == p.ln_centered.frac_bits
    check_precision(cfg.model, proposed)
