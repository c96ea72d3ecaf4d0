"""Bad input to the host runtime: each a clear error naming the problem, and the runtime usable afterwards."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgemoe.golden.fixed_model import FixedM3ViT
from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict
from edgemoe.host import manifest as mf
from edgemoe.host.errors import (KernelError, KernelTimeout, ManifestError, OverlayMismatchError, SimBusError,
                                 WeightsFileError)
from edgemoe.host.runtime import Accelerator
from edgemoe.host.weights_file import load_weights_file, pack_state_dict
from edgemoe.images import ImageError
from edgemoe.loading import load_config


@pytest.fixture(scope="module")
def setup(micro_sim_overlay):
    cfg, sd, entry, packed = micro_sim_overlay
    images = synthetic_images(cfg.model, 2, seed=1)
    golden = {t: FixedM3ViT(cfg, sd).forward(images, t, keep_taps=False).tokens.numpy() for t in (0, 1)}
    return cfg, entry, packed, images, golden


@pytest.fixture(scope="module")
def acc(setup):
    cfg, entry, packed, _, _ = setup
    return Accelerator(cfg, entry.overlay, packed, device="sim", timeout=0.3, log=None)


def _still_works(acc, setup):
    _, _, _, images, golden = setup
    res = acc.infer(images, "all")
    assert np.array_equal(res.tokens["semseg"], golden[0]) and np.array_equal(res.tokens["depth"], golden[1])


def _copy_build(entry, dst: Path) -> Path:
    """The overlay's files and manifest, copied to ``dst`` (to damage them there)."""
    dst.mkdir(parents=True, exist_ok=True)
    for rel in entry.data["files"]:
        shutil.copy(entry.root / rel, dst / rel)
    shutil.copy(entry.root / "manifest.json", dst / "manifest.json")
    return dst / entry.data["overlay"]


# --- bitstream / manifest ---------------------------------------------------------------

def test_missing_overlay(setup, tmp_path):
    cfg, _, packed, _, _ = setup
    with pytest.raises(ManifestError, match=r"overlay .*nope\.simbit: no such file"):
        Accelerator(cfg, tmp_path / "nope.simbit", packed, device="sim", log=None)


def test_missing_manifest(setup, tmp_path):
    cfg, entry, packed, _, _ = setup
    overlay = _copy_build(entry, tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"manifest\.json: no such file; every overlay is registered there"):
        Accelerator(cfg, overlay, packed, device="sim", log=None)


def test_unregistered_overlay(setup, tmp_path):
    cfg, entry, packed, _, _ = setup
    overlay = _copy_build(entry, tmp_path)
    renamed = overlay.with_name("other.simbit")
    overlay.rename(renamed)
    with pytest.raises(ManifestError, match=r"other\.simbit: not registered in .*manifest\.json"):
        Accelerator(cfg, renamed, packed, device="sim", log=None)


def test_a_file_of_the_build_missing(setup, tmp_path):
    cfg, entry, packed, _, _ = setup
    overlay = _copy_build(entry, tmp_path)
    lib = next(tmp_path.glob("*.csim.so"))
    lib.unlink()
    with pytest.raises(ManifestError, match=rf"{lib.name}: missing \(listed in manifest entry"):
        Accelerator(cfg, overlay, packed, device="sim", log=None)


@pytest.mark.parametrize("which", ["simbit", "regmap"])
def test_a_changed_file_fails_its_checksum(setup, acc, tmp_path, which):
    cfg, entry, packed, _, _ = setup
    overlay = _copy_build(entry, tmp_path)
    path = overlay if which == "simbit" else next(tmp_path.glob("*.regmap.json"))
    data = json.loads(path.read_text())
    data["tampered"] = True
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=rf"{path.name}: SHA-256 .* differs from manifest entry .*changed or is corrupted"):
        Accelerator(cfg, overlay, packed, device="sim", log=None)
    _still_works(acc, setup)


def test_overlay_built_for_another_config(setup):
    _, entry, _, _, _ = setup
    other = load_config("m3vit-micro", ["precision.profile=w16a16"])
    with pytest.raises(ManifestError, match=r"was built for config 'm3vit-micro' \(digest .*\), but the runtime "
                                            r"config is 'm3vit-micro' \(digest"):
        Accelerator(other, entry.overlay, None, device="sim", log=None)


def test_config_hash_register_refuses_a_mislabelled_bitstream(setup, acc, tmp_path):
    """The manifest claims another config, the kernel's config_hash register tells the truth."""
    cfg, entry, _, _, _ = setup
    other = load_config("m3vit-micro", ["model.depth=2", "model.moe_blocks=[1]"])
    overlay = _copy_build(entry, tmp_path)
    (tmp_path / "manifest.json").unlink()
    mf.add_entry(other, overlay, list(tmp_path.glob("*.csim.so")), regmap=next(tmp_path.glob("*.regmap.json")),
                 flow="sim", manifest=tmp_path)
    with pytest.raises(OverlayMismatchError, match=r"config_hash register reads 0x[0-9a-f]{8}, but config "
                                                   r"'m3vit-micro' .* expects 0x[0-9a-f]{8}"):
        Accelerator(other, overlay, None, device="sim", log=None)
    _still_works(acc, setup)


def test_a_simulated_overlay_is_not_a_board_bitstream(setup, tmp_path):
    cfg, entry, packed, _, _ = setup
    bit = tmp_path / "edgemoe_vit.bit"
    bit.write_bytes(b"\0" * 64)
    (tmp_path / "edgemoe_vit.hwh").write_text("<hwh/>")
    mf.add_entry(cfg, bit, manifest=tmp_path)
    with pytest.raises(ManifestError, match=r"edgemoe_vit\.bit is a zynq build: the simulated device loads "
                                            r"\.simbit overlays"):
        Accelerator(cfg, bit, packed, device="sim", log=None)


# --- weights file ----------------------------------------------------------------------

def test_weights_with_wrong_shapes(setup, acc, tmp_path):
    cfg, entry, packed, _, _ = setup
    bad = pack_state_dict(cfg, synthetic_state_dict(cfg.model, seed=0))
    bad.words = bad.words[:-16]
    bad.save(tmp_path / "short.npz")
    with pytest.raises(WeightsFileError, match=r"wrong shapes: 'words' holds \(317232,\) int16, config "
                                               r"'m3vit-micro' needs \(317248,\)"):
        Accelerator(cfg, entry.overlay, tmp_path / "short.npz", device="sim", log=None)
    bad = pack_state_dict(cfg, synthetic_state_dict(cfg.model, seed=0))
    bad.heads["decoders.semseg.conv_4.weight"] = bad.heads["decoders.semseg.conv_4.weight"][:3]
    bad.save(tmp_path / "head.npz")
    with pytest.raises(WeightsFileError, match=r"wrong shapes in the task heads: decoders\.semseg\.conv_4\.weight "
                                               r"is \[3, 32, 1, 1\], config expects \[7, 32, 1, 1\]"):
        load_weights_file(tmp_path / "head.npz", cfg)
    _still_works(acc, setup)


def test_weights_with_a_bad_checksum(setup, acc, tmp_path):
    cfg, entry, packed, _, _ = setup
    path = packed.save(tmp_path / "w.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["words"] = arrays["words"].copy()
    arrays["words"][1000] ^= 1  # one flipped bit
    np.savez(path, **arrays)
    with pytest.raises(WeightsFileError, match=r"w\.npz: bad checksum .*corrupted or was modified"):
        Accelerator(cfg, entry.overlay, path, device="sim", log=None)
    _still_works(acc, setup)


def test_weights_for_another_config_or_version_or_not_weights(setup, tmp_path):
    cfg, _, packed, _, _ = setup
    path = packed.save(tmp_path / "w.npz")
    other = load_config("m3vit-micro", ["model.num_experts=2"])
    with pytest.raises(WeightsFileError, match=r"packed for config 'm3vit-micro' \(digest .*\), but the runtime "
                                               r"config is 'm3vit-micro' .*weight layout differs too"):
        load_weights_file(path, other)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["header"]))
    header["version"] = 99
    arrays["header"] = np.array(json.dumps(header))
    np.savez(tmp_path / "v99.npz", **arrays)
    with pytest.raises(WeightsFileError, match=r"format version 99, but edgemoe .* reads version 1"):
        load_weights_file(tmp_path / "v99.npz", cfg)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(WeightsFileError, match="not an edgemoe weights file"):
        load_weights_file(tmp_path / "junk.npz", cfg)
    with pytest.raises(WeightsFileError, match="no such file"):
        load_weights_file(tmp_path / "absent.npz", cfg)


# --- images ---------------------------------------------------------------------------------

def test_images_of_the_wrong_size_or_mode(setup, acc, tmp_path):
    cfg, _, _, images, _ = setup
    with pytest.raises(ImageError, match=r"shape \[2, 3, 40, 64\] is not the configured input \[B, 3, 32, 64\]"):
        acc.infer(np.zeros((2, 3, 40, 64), np.float32))
    with pytest.raises(ImageError, match=r"shape \[1, 1, 32, 64\] is not the configured input"):
        acc.infer(np.zeros((1, 1, 32, 64), np.float32))
    with pytest.raises(ImageError, match=r"image 0: expected an HxW grey, HxWx2 grey\+alpha, HxWx3 RGB or HxWx4 "
                                         r"RGBA image, got shape \(20, 30, 5\)"):
        acc.infer([np.zeros((20, 30, 5), np.uint8)])  # five channels: no such mode
    with pytest.raises(ImageError, match=r"pixel type int16 not supported"):
        acc.infer(np.zeros((1, 3, 32, 64), np.int16))
    with pytest.raises(ImageError, match=r"float pixels must be in \[0, 1\]"):
        acc.infer(np.full((1, 3, 32, 64), 2.0, np.float32))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match=r"bad\.png: not an image \(PNG, JPEG"):
        acc.infer([str(tmp_path / "bad.png")])
    _still_works(acc, setup)


# --- the kernel -------------------------------------------------------------------------------

def test_a_kernel_that_never_raises_ap_done_times_out_and_is_reset(setup, acc):
    _, _, _, images, _ = setup
    acc.device.hang = True
    with pytest.raises(KernelTimeout, match=r"did not raise ap_done within 0\.3 s .*ap_idle=0.*the kernel was "
                                            r"reset .* ready for the next call"):
        acc.infer(images, "semseg")
    acc.device.hang = False
    _still_works(acc, setup)
    acc.device.hang = 1  # a single hang: the very next call works without touching anything
    with pytest.raises(KernelTimeout):
        acc.infer(images, "depth")
    _still_works(acc, setup)


def test_bad_task_status_and_bad_pointer_are_errors_and_leave_the_device_usable(setup, acc):
    _, _, _, images, _ = setup
    acc.infer(images, "semseg")  # buffers allocated
    with pytest.raises(KernelError, match=r"refused the call \(task 7.*status register = 1 \(bad_task\)"):
        acc.driver.run(acc._ibuf, acc._wbuf, acc._abuf, task=7, num_images=1)
    with pytest.raises(SimBusError, match=r"kernel activations pointer 0x10: .*not inside one allocated buffer"):
        acc.driver.run(acc._ibuf, acc._wbuf, 0x10, task=0, num_images=1)
    assert acc.driver.is_idle()
    _still_works(acc, setup)
