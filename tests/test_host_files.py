"""Host files and commands: packed weights round trip, the bitstream manifest, the CLI and the demo (m3vit-micro)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from edgemoe.golden.synthetic import synthetic_state_dict
from edgemoe.golden.weights import quantize_weights
from edgemoe.hls.interface import config_hash32
from edgemoe.hls.layout import WeightLayout, pack_weights
from edgemoe.host import manifest as mf
from edgemoe.cli import main as host_main
from edgemoe.host.errors import ManifestError, WeightsFileError
from edgemoe.host.sim_overlay import build_sim_overlay
from edgemoe.host.simbit import SimParser
from edgemoe.host.weights_file import VERSION, is_weights_file, load_weights_file, pack_state_dict
from edgemoe.loading import load_config


@pytest.fixture(scope="module")
def cfg():
    return load_config("m3vit-micro")


@pytest.fixture(scope="module")
def sd(cfg):
    return synthetic_state_dict(cfg.model, seed=3)


@pytest.fixture
def bitstreams(tmp_path, monkeypatch):
    """bitstreams/ redirected to a temporary folder (the CLI and the demo build their overlay there)."""
    path = tmp_path / "bitstreams"
    path.mkdir()
    monkeypatch.setenv("EDGEMOE_BITSTREAMS", str(path))
    return path


def test_weights_file_round_trip(cfg, sd, tmp_path):
    packed = pack_state_dict(cfg, sd, "synthetic (seed 3)")
    path = packed.save(tmp_path / "micro.weights.npz")
    assert is_weights_file(path) and not is_weights_file(Path(__file__))
    back = load_weights_file(path, cfg)
    layout = WeightLayout.of(cfg)
    assert back.words.dtype == layout.numpy_dtype and back.words.shape == (layout.total_words,)
    assert np.array_equal(back.words, pack_weights(cfg, quantize_weights(cfg, sd)))
    assert back.source == "synthetic (seed 3)" and back.sha256 == packed.sha256 and back.config_digest == cfg.digest()
    heads = {k: v for k, v in sd.items() if k.startswith("decoders.")}
    assert set(back.heads) == set(heads) and all(torch.equal(back.heads[k], heads[k]) for k in heads)
    header = back.header()
    assert header["version"] == VERSION and header["layout"]["word_bits"] == 16
    # the packed words unpack to exactly the golden quantised weights
    ref, got = quantize_weights(cfg, sd), back.quantized(cfg)
    assert set(ref) == set(got)
    for k in ref:
        assert torch.equal(ref[k].raw, got[k].raw) and ref[k].type == got[k].type, k


def test_packing_the_golden_models_weights(cfg, sd):
    from edgemoe.golden.fixed_model import FixedM3ViT
    from edgemoe.host.weights_file import pack_quantized

    golden = FixedM3ViT(cfg, sd)
    heads = {k: v for k, v in sd.items() if k.startswith("decoders.")}
    packed = pack_quantized(cfg, golden.weights, heads, "golden")
    assert np.array_equal(packed.words, pack_state_dict(cfg, sd).words)


def test_packing_a_state_dict_that_does_not_fit(cfg, sd):
    bad = dict(sd)
    bad["backbone.blocks.0.attn.qkv.weight"] = bad["backbone.blocks.0.attn.qkv.weight"][:, :32]
    with pytest.raises(WeightsFileError, match=r"not fit config m3vit-micro: backbone\.blocks\.0\.attn\.qkv\.weight"):
        pack_state_dict(cfg, bad)
    no_heads = {k: v for k, v in sd.items() if not k.startswith("decoders.depth")}
    with pytest.raises(WeightsFileError, match=r"task heads do not fit .*decoders\.depth\..* missing"):
        pack_state_dict(cfg, no_heads)


def test_manifest_add_verify_find(cfg, tmp_path):
    bit = tmp_path / "edgemoe_vit.bit"
    bit.write_bytes(b"bitstream")
    with pytest.raises(ManifestError, match=r"edgemoe_vit\.hwh: no such file"):
        mf.add_entry(cfg, bit, manifest=tmp_path)  # a .bit needs its .hwh
    (tmp_path / "edgemoe_vit.hwh").write_text("<hwh/>")
    regmap = tmp_path / "edgemoe_vit.regmap.json"
    regmap.write_text("{}")
    entry = mf.add_entry(cfg, bit, regmap=regmap, manifest=tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    (e,) = data["entries"]
    assert {"name", "board", "flow", "config_digest", "config_hash", "generator_version", "files"} <= set(e)
    assert e["board"] == "zcu102" and e["flow"] == "zynq" and e["config_hash"] == config_hash32(cfg)
    assert set(e["files"]) == {"edgemoe_vit.bit", "edgemoe_vit.hwh", "edgemoe_vit.regmap.json"}
    assert all(len(f["sha256"]) == 64 for f in e["files"].values())
    assert mf.verify_overlay(bit, cfg).name == entry.name == "edgemoe_vit"
    assert mf.find_overlay(cfg, "zynq", tmp_path).overlay == bit.resolve() or \
        mf.find_overlay(cfg, "zynq", tmp_path).overlay == bit
    assert mf.find_overlay(cfg, "alveo", tmp_path) is None
    mf.add_entry(cfg, bit, regmap=regmap, manifest=tmp_path)  # re-registering replaces the entry
    assert len(json.loads((tmp_path / "manifest.json").read_text())["entries"]) == 1
    (tmp_path / "edgemoe_vit.hwh").write_text("<hwh>changed</hwh>")
    with pytest.raises(ManifestError, match=r"edgemoe_vit\.hwh: SHA-256"):
        mf.verify_overlay(bit, cfg)
    with pytest.raises(ManifestError, match=r"edgemoe_vit\.hwh: SHA-256 .* changed or is corrupted"):
        mf.find_overlay(cfg, "zynq", tmp_path)  # a registered build that no longer verifies is reported


def _board_build(cfg, root: Path) -> Path:
    """A registered board build (.bit, .hwh, register map) in ``root``; returns the manifest path."""
    (root / "edgemoe_vit.bit").write_bytes(b"bitstream")
    (root / "edgemoe_vit.hwh").write_text("<hwh/>")
    (root / "edgemoe_vit.regmap.json").write_text("{}")
    mf.add_entry(cfg, root / "edgemoe_vit.bit", regmap=root / "edgemoe_vit.regmap.json", manifest=root)
    return root / "manifest.json"


def test_two_entries_for_one_overlay_are_refused(cfg, tmp_path):
    path = _board_build(cfg, tmp_path)
    data = json.loads(path.read_text())
    forged = dict(data["entries"][0], name="edgemoe_vit-2")
    forged["files"] = {f: {"sha256": "0" * 64, "bytes": 0} for f in forged["files"]}
    data["entries"].append(forged)
    path.write_text(json.dumps(data))
    for check in (lambda: mf.find_overlay(cfg, "zynq", tmp_path),
                  lambda: mf.verify_overlay(tmp_path / "edgemoe_vit.bit", cfg)):
        with pytest.raises(ManifestError, match=r"manifest\.json: entries\[0\] and entries\[1\] both have overlay "
                                                r"'edgemoe_vit\.bit'"):
            check()


def test_an_entry_must_checksum_its_overlay_and_register_map(cfg, tmp_path):
    path = _board_build(cfg, tmp_path)
    data = json.loads(path.read_text())
    del data["entries"][0]["files"]["edgemoe_vit.regmap.json"]
    path.write_text(json.dumps(data))
    (tmp_path / "edgemoe_vit.regmap.json").write_text('{"edited": true}')
    with pytest.raises(ManifestError, match=r"entries\[0\]: its regmap 'edgemoe_vit\.regmap\.json' is not listed in "
                                            r"'files', so it cannot be verified"):
        mf.find_overlay(cfg, "zynq", tmp_path)


@pytest.mark.parametrize("suffix", [".simbit", ".csim.so", ".regmap.json"])
def test_a_tampered_simulated_overlay_is_reported_not_rebuilt(cfg, bitstreams, csim_cache, tmp_path, suffix, capsys):
    entry = build_sim_overlay(cfg, bitstreams, cache_dir=csim_cache)
    (tampered,) = [f for f in bitstreams.iterdir() if f.name.endswith(suffix)]
    tampered.write_bytes(tampered.read_bytes() + b" ")
    with pytest.raises(ManifestError, match=rf"{tampered.name}: SHA-256 .* differs from manifest entry "
                                            rf"'{entry.name}'"):
        build_sim_overlay(cfg, bitstreams, cache_dir=csim_cache)
    rc = host_main(["run", "--config", "m3vit-micro", "--device", "sim", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and f"{tampered}: SHA-256" in err, err
    assert tampered.read_bytes().endswith(b" ")  # left as found: nothing was rebuilt over it


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe{}", r"manifest\.json: not UTF-8 text"),
    (b'{"format": "edgemoe-manifest", "version": 1, "entries": ["m3vit.simbit"]}',
     r"manifest\.json: entries\[0\] is a str, not an object with 'name'"),
    (b'{"format": "edgemoe-manifest", "version": 1, "entries": [{"name": "x", "flow": "sim"}]}',
     r"manifest\.json: entries\[0\]: 'overlay' is missing; it must be the overlay file"),
])
def test_a_broken_manifest_is_a_one_line_error(bitstreams, tmp_path, content, message, capsys):
    (bitstreams / "manifest.json").write_bytes(content)
    with pytest.raises(ManifestError, match=message):
        mf.read_manifest(bitstreams)
    rc = host_main(["run", "--config", "m3vit-micro", "--device", "sim", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(message, err), err


def test_simbit_is_what_pynq_reads(cfg, csim_cache, tmp_path):
    entry = build_sim_overlay(cfg, tmp_path, cache_dir=csim_cache)
    assert build_sim_overlay(cfg, tmp_path, cache_dir=csim_cache).name == entry.name  # reused when it verifies
    parser = SimParser(entry.overlay)
    ip = parser.ip_dict["edgemoe_vit_0"]
    assert ip["type"] == "edgemoe.org:hls:edgemoe_vit:1.0" and ip["phys_addr"] == 0xA000_0000
    assert ip["registers"]["AP_CTRL"]["fields"]["AP_DONE"]["bit_offset"] == 1
    assert parser.mem_dict == {} and parser.clock_dict == {} and parser.hierarchy_dict == {}
    sb = parser.simbit
    assert sb["config_digest"] == cfg.digest() and sb["buffers"]["weights"]["words"] == WeightLayout.of(cfg).total_words
    assert sb["buffers"]["image"]["dtype"] == "|u1" and sb["buffers"]["activations"]["dtype"] == "<i4"


def test_cli_pack_then_run_writes_pngs_and_stage_times(cfg, bitstreams, tmp_path, capsys):
    from skimage.io import imread, imsave

    packed = tmp_path / "micro.weights.npz"
    assert host_main(["pack", "--config", "m3vit-micro", "--seed", "3", "--out", str(packed)]) == 0
    assert "packed 317248 16-bit words" in capsys.readouterr().out
    rng = np.random.default_rng(1)
    images = []
    for i in range(3):
        images.append(str(tmp_path / f"photo{i}.png"))
        imsave(images[-1], rng.integers(0, 256, (60 + 10 * i, 100, 3), dtype=np.uint8), check_contrast=False)
    out = tmp_path / "out"
    rc = host_main(["run", "--config", "m3vit-micro", "--weights", str(packed), "--device", "sim", "--task", "all",
                    "--out", str(out), *images])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "device: sim" in text and "in 2 kernel call(s)" in text
    assert "per-stage times: preprocess" in text and all(s in text for s in ("transfer", "kernel", "head"))
    for i in range(3):
        seg, depth = imread(out / f"photo{i}_semseg.png"), imread(out / f"photo{i}_depth.png")
        assert seg.shape == (32, 64, 3) and depth.shape == (32, 64, 3) and seg.dtype == np.uint8
    assert list(bitstreams.glob("*.simbit"))  # the simulated overlay was built and registered there


def test_cli_compare_and_one_line_errors(bitstreams, tmp_path, capsys):
    rc = host_main(["compare", "--config", "m3vit-micro", "--device", "sim", "--taps", "embed,blocks.1.*",
                    "--images", "2", "--task", "depth"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "task depth: device vs golden fixed-point model, 2 image(s)" in text
    assert "blocks.1.topk_idx" in text and "bit-exact: yes" in text and "fixed vs float, head.depth" in text
    assert "bit-exact with golden: yes" in text
    rc = host_main(["run", "--config", "m3vit-micro", "--device", "sim", "--weights", str(tmp_path / "none.npz"),
                    str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("edgemoe run: error: ") and "none.npz: no such" in err and "Traceback" not in err
    rc = host_main(["compare", "--config", "m3vit-micro", "--taps", "blocks.9.*"])
    assert rc == 2 and "--taps = 'blocks.9.*': matches no tap" in capsys.readouterr().err


def test_cli_register_a_board_build(bitstreams, capsys):
    bit = bitstreams / "edgemoe_vit.bit"
    bit.write_bytes(b"bit")
    (bitstreams / "edgemoe_vit.hwh").write_text("<hwh/>")
    assert host_main(["register", "--config", "m3vit-micro", str(bit)]) == 0
    out = capsys.readouterr().out
    assert "registered 'edgemoe_vit' (zynq, board zcu102)" in out and "edgemoe_vit.regmap.json" in out
    assert mf.verify_overlay(bit, load_config("m3vit-micro")).regmap()["kernel"] == "edgemoe_vit"


def test_demo_on_micro(bitstreams, tmp_path, capsys):
    from edgemoe.cli.demo import main as demo_main

    out = tmp_path / "demo"
    assert demo_main(["--config", "m3vit-micro", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for fragment in ("[1/6] weights", "[2/6] generate and compile", "[4/6] the simulated device",
                     "per-stage times: preprocess", "bit-exact with the golden fixed-point model: yes",
                     "label agreement", "motorcycle_semseg.png", "demo done"):
        assert fragment in text, fragment
    for name in ("input", "semseg", "depth", "overview"):
        assert (out / f"motorcycle_{name}.png").is_file()
        assert (out / f"scene-0_{name}.png").is_file()
    assert (out / "scene-0_truth.png").is_file() and "held-out generated street scene" in text
    assert (out / "hls" / "build_prj.tcl").is_file() and (out / "hls" / "regmap.json").is_file()


def test_demo_with_an_edgemoe_trained_checkpoint_shows_metres_and_scene_figures(bitstreams, tmp_path, capsys):
    """A checkpoint with its training recipe beside it: depth decoded to metres, the scene's mIoU and AbsRel said."""
    import hashlib
    import json

    import torch

    from edgemoe.golden.evaluate import DEPTH_ENCODING
    from edgemoe.golden.pretrained import ShippedCheckpointError, checkpoint_recipe
    from edgemoe.golden.synthetic import synthetic_state_dict
    from edgemoe.cli.demo import main as demo_main

    ckpt = tmp_path / "trained.pth"
    torch.save(synthetic_state_dict(load_config("m3vit-micro").model, seed=3), ckpt)
    recipe = {"depth_encoding": DEPTH_ENCODING, "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    (tmp_path / "trained.pth.json").write_text(json.dumps(recipe))
    assert checkpoint_recipe(ckpt) == recipe
    out = tmp_path / "demo"
    assert demo_main(["--config", "m3vit-micro", "--weights", str(ckpt), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scene-0: mIoU" in text and "depth AbsRel" in text and " m\n" in text
    # an altered checkpoint no longer matches its recipe: refused, not used
    ckpt.write_bytes(ckpt.read_bytes()[:-1] + b"x")
    with pytest.raises(ShippedCheckpointError, match="SHA-256"):
        checkpoint_recipe(ckpt)
    assert demo_main(["--config", "m3vit-micro", "--weights", str(ckpt), "--out", str(out)]) == 2
    assert "SHA-256" in capsys.readouterr().err


def test_shipped_checkpoints_are_only_for_their_own_model():
    from edgemoe.golden.checkpoint import load_m3vit_checkpoint
    from edgemoe.golden.pretrained import shipped_checkpoint

    tiny = load_config("m3vit-tiny-cityscapes")
    shipped = shipped_checkpoint(tiny)                       # verified against its recipe's SHA-256
    assert shipped is not None and shipped.depth_encoding == "ln_m" and "generated street scenes" in shipped.describe()
    # its segmentation biases were re-tuned on the validation split (edgemoe adjust): the recipe says so
    step = shipped.recipe["logit_adjustment"]
    assert step["val_miou_after"] >= step["val_miou_before"] and "output biases re-tuned" in shipped.describe()
    assert step["data"]["split"] == "val" and len(step["offsets"]) == tiny.model.tasks[0].out_channels
    assert shipped.recipe["config_digest"] == tiny.digest() and shipped.path.stat().st_size < 50e6
    assert set(load_m3vit_checkpoint(shipped.path, tiny.model).state_dict) >= {"decoders.semseg.conv_4.weight"}
    assert shipped_checkpoint(load_config("m3vit-micro")) is None
    assert shipped_checkpoint(load_config("m3vit-tiny-cityscapes", ["model.depth=2", "model.moe_blocks=odd"])) is None
