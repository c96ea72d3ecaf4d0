"""The host runtime on the simulated device: pack -> allocate -> overlay -> driver -> kernel (csim) -> head.

Everything runs through pynq itself (pynq.Overlay, pynq.allocate, the DefaultIP
driver binding, MMIO register access); only the device is simulated.  The
kernel output must equal the golden fixed-point model word for word.
"""
from __future__ import annotations


import numpy as np
import pynq
import pytest
import torch
from pynq.buffer import PynqBuffer

from edgemoe.golden.fixed_model import FixedM3ViT
from edgemoe.golden.synthetic import synthetic_images
from edgemoe.hls.interface import config_hash32, register_map
from edgemoe.host.compare import check_tap, compare_device, format_comparison, select_taps
from edgemoe.host.driver import EdgeMoEDriver
from edgemoe.host.errors import DeviceError
from edgemoe.host.runtime import Accelerator, select_device
from edgemoe.hls.interface import VLNV
from edgemoe.host.simdevice import SimDevice


@pytest.fixture(scope="module")
def setup(micro_sim_overlay):
    cfg, sd, entry, packed = micro_sim_overlay
    return cfg, sd, entry, packed, FixedM3ViT(cfg, sd)


@pytest.fixture(scope="module")
def acc(setup):
    cfg, _, entry, packed, _ = setup
    return Accelerator(cfg, entry.overlay, packed, device="sim", log=None)


def test_full_path_is_bit_exact_for_both_tasks_with_three_images_in_one_call(setup, acc):
    cfg, _, _, _, golden = setup
    images = synthetic_images(cfg.model, 3, seed=11)
    before = len(acc.device.calls)
    res = acc.infer(images, "all")
    calls = [c for c in acc.device.calls[before:]]
    assert [(c.task, c.num_images, c.status) for c in calls] == [(0, 3, 0), (1, 3, 0)]  # one call per task
    assert res.kernel_calls == 2
    for t, name in enumerate(cfg.model.task_names):
        ref = golden.forward(images, t, keep_taps=False).tokens
        assert res.tokens[name].dtype == np.int64
        assert np.array_equal(res.tokens[name], ref.numpy()), f"{name}: kernel tokens differ from golden"
        head = golden.run_head(ref, t).numpy()
        assert np.allclose(res.outputs[name], head, rtol=0, atol=1e-5)
    assert res.labels.shape == (3, 32, 64) and res.labels.dtype == np.uint8 and res.labels.max() < 7
    assert res.depth.shape == (3, 32, 64) and res.depth.dtype == np.float32
    assert set(res.timings) == {"preprocess", "transfer", "kernel", "head"} and all(v >= 0 for v in res.timings.values())
    assert "kernel call(s)" in res.format_timings()


def test_pynq_binds_the_driver_and_the_pieces_are_pynq_objects(setup, acc):
    cfg, _, entry, packed, _ = setup
    assert isinstance(acc.device, SimDevice) and isinstance(acc.device, pynq.Device)
    assert isinstance(acc.overlay, pynq.Overlay)
    assert acc.overlay.ip_dict["edgemoe_vit_0"]["type"] == VLNV
    assert isinstance(acc.overlay.edgemoe_vit_0, EdgeMoEDriver) and acc.driver is acc.overlay.edgemoe_vit_0
    # offsets come from the generated register map
    regs = register_map(cfg)["registers"]
    assert acc.driver._off == {k: v["offset"] for k, v in regs.items()}
    assert acc.driver.register_map.task.address == regs["task"]["offset"]
    assert acc.driver_config_hash == config_hash32(cfg) == entry.data["config_hash"]
    assert isinstance(acc._wbuf, PynqBuffer) and acc._wbuf.device_address >= 0x8_0000_0000
    assert np.array_equal(np.asarray(acc._wbuf), packed.words)


def test_buffers_stay_allocated_and_a_task_switch_reloads_nothing(setup, acc):
    cfg = setup[0]
    images = synthetic_images(cfg.model, 2, seed=5)
    acc.infer(images, "semseg")
    wbuf, ibuf, abuf = acc._wbuf, acc._ibuf, acc._abuf
    n_allocs = len(acc.device._allocs)
    weights_before = np.asarray(acc._wbuf).copy()
    for task in ("depth", "semseg", "depth"):
        acc.infer(images, task)
    assert (acc._wbuf, acc._ibuf, acc._abuf) == (wbuf, ibuf, abuf)
    assert len(acc.device._allocs) == n_allocs  # nothing reallocated
    assert np.array_equal(np.asarray(acc._wbuf), weights_before)
    assert [c.task for c in acc.device.calls[-3:]] == [1, 0, 1]


def test_batches_larger_than_max_batch_are_split_and_stay_exact(setup):
    cfg, _, entry, packed, golden = setup
    acc = Accelerator(cfg, entry.overlay, packed, device="sim", max_batch=2, log=None)
    images = synthetic_images(cfg.model, 5, seed=2)
    res = acc.infer(images, "depth")
    assert [c.num_images for c in acc.device.calls if c.num_images] == [2, 2, 1]
    assert np.array_equal(res.tokens["depth"], golden.forward(images, 1, keep_taps=False).tokens.numpy())


def test_taps_through_the_driver_equal_golden(setup, acc):
    cfg, _, _, _, golden = setup
    images = synthetic_images(cfg.model, 2, seed=4)
    taps = select_taps(cfg, "pixels,blocks.0.scores,blocks.1.*,blocks.3.out")
    ref = golden.forward(images, 1)
    for tap in taps:
        assert np.array_equal(acc.run_tap(images, "depth", tap), ref.taps[tap].numpy()), tap
    # the buffer grown for the widest tap still serves the token layout
    res = acc.infer(images, "depth")
    assert np.array_equal(res.tokens["depth"], ref.tokens.numpy())


def test_images_from_files_of_any_size_are_cropped_and_resized(setup, acc, tmp_path):
    from skimage.io import imsave

    cfg, _, _, _, golden = setup
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(50, 90), (100, 100)]):
        paths.append(tmp_path / f"im{i}.png")
        imsave(paths[-1], rng.integers(0, 256, (h, w, 3), dtype=np.uint8), check_contrast=False)
    res = acc.infer([str(p) for p in paths], "semseg")
    assert res.pixels.shape == (2, 3, 32, 64) and res.pixels.dtype == np.uint8
    ref = golden.forward(torch.from_numpy(res.pixels.astype(np.int64)), 0, keep_taps=False).tokens.numpy()
    assert np.array_equal(res.tokens["semseg"], ref)
    # one HxWx3 photo as an array, and a grey one: cropped/resized the same way
    assert acc.infer(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), "semseg").pixels.shape == (1, 3, 32, 64)
    grey = acc.infer(rng.random((64, 64)), "semseg").pixels
    assert grey.shape == (1, 3, 32, 64) and np.array_equal(grey[0, 0], grey[0, 2])


def test_compare_reports_bit_exact_taps_and_float_error(setup, acc):
    cfg, sd, _, _, _ = setup
    images = synthetic_images(cfg.model, 2, seed=8)
    results = compare_device(acc, images, "all", select_taps(cfg, "blocks"), sd)
    assert [c.task for c in results] == ["semseg", "depth"]
    for c in results:
        assert c.exact and len(c.taps) == cfg.model.depth + 1
        assert c.head is not None and c.head.cosine > 0.99
        text = format_comparison(c)
        assert "bit-exact: yes" in text and "blocks.3.out" in text and "fixed vs float" in text
    assert results[0].label_agreement is not None and "label agreement" in format_comparison(results[0])


def test_a_mismatch_names_the_first_index_and_both_values():
    ref = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    got = ref.copy()
    got[1, 2, 0] = 99
    got[1, 2, 3] = -1
    c = check_tap("blocks.0.qkv", got, ref)
    assert not c.exact and c.mismatches == 2 and c.first_index == (1, 2, 0)
    assert c.describe() == "NO: 2 of 24 words differ; first at [1, 2, 0]: device 99, golden 20"
    assert check_tap("x", got[:1], ref).describe().startswith("NO: shape")


def test_device_selection_is_explicit_or_auto_and_says_which(capsys):
    dev, desc = select_device("sim")
    assert isinstance(dev, SimDevice) and "device: sim" in capsys.readouterr().out and "explicitly" in desc
    dev, desc = select_device("auto")
    out = capsys.readouterr().out
    assert isinstance(dev, SimDevice) and "device: sim (auto: pynq found no board" in out
    # the simulated device registered itself with pynq's probing (no board here)
    assert any(isinstance(d, SimDevice) for d in pynq.Device.devices)
    with pytest.raises(DeviceError, match="--device board: pynq found no board.*--device sim"):
        select_device("board")
    with pytest.raises(DeviceError, match="must be one of auto, sim, board"):
        select_device("fpga")


def test_plain_pynq_calls_use_the_simulated_device_where_no_board_is(setup):
    """Unchanged pynq user code: no device argument anywhere."""
    cfg, _, entry, packed, golden = setup
    assert isinstance(pynq.Device.active_device, SimDevice)
    ol = pynq.Overlay(str(entry.overlay))
    kernel = ol.edgemoe_vit_0
    kernel.bind_register_map(entry.regmap())
    images = synthetic_images(cfg.model, 2, seed=9)
    codes = golden.quantize_images(images).numpy()
    img = pynq.allocate(codes.shape, np.uint8)
    w = pynq.allocate(packed.words.shape, packed.words.dtype)
    act = pynq.allocate((2, cfg.model.num_tokens, cfg.model.embed_dim), np.int32)
    img[:], w[:] = codes, packed.words
    img.sync_to_device()
    w.sync_to_device()
    kernel.run(img, w, act, task=0, num_images=2)
    act.sync_from_device()
    assert np.array_equal(act, golden.forward(images, 0, keep_taps=False).tokens.numpy())


def test_auto_prefers_a_board_and_the_sim_device_then_stays_out_of_pynq(tmp_path):
    """A board class registered with pynq wins; the simulated device's probe then answers nothing."""
    import subprocess
    import sys

    script = tmp_path / "board.py"
    script.write_text(
        "import pynq\n"
        "class FakeBoard(pynq.Device):\n"
        "    _probe_priority_ = 7\n"
        "    @classmethod\n"
        "    def _probe_(cls):\n"
        "        return [cls('fake0')]\n"
        "import edgemoe.host.simdevice\n"
        "from edgemoe.host.runtime import select_device\n"
        "print([type(d).__name__ for d in pynq.Device.devices])\n"
        "dev, _ = select_device('auto')\n"
        "dev, _ = select_device('board')\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["['FakeBoard']",
                                "device: board (FakeBoard 'fake0'; auto: pynq found a board)",
                                "device: board (FakeBoard 'fake0'; selected explicitly)"]



def test_two_weight_lanes_run_end_to_end_with_a_buffer_per_lane(tmp_path_factory, csim_cache):
    """hardware.weight_lanes=2: one buffer per lane (lane i of every bus word), each pointer register set; the
    simulated device joins the lanes and the tokens equal golden."""
    from edgemoe.golden.synthetic import synthetic_state_dict
    from edgemoe.hls.plan import KernelPlan
    from edgemoe.host.errors import KernelError
    from edgemoe.host.sim_overlay import build_sim_overlay
    from edgemoe.host.weights_file import pack_state_dict
    from edgemoe.loading import load_config

    cfg = load_config("m3vit-micro", ["hardware.weight_lanes=2"])
    sd = synthetic_state_dict(cfg.model, seed=0)
    entry = build_sim_overlay(cfg, tmp_path_factory.mktemp("bitstreams-lanes"), cache_dir=csim_cache)
    packed = pack_state_dict(cfg, sd, "synthetic (seed 0)")
    acc = Accelerator(cfg, entry.overlay, packed, device="sim", log=None)
    lanes = KernelPlan.from_config(cfg).lanes
    assert acc.driver.weight_lanes == ("weights_0", "weights_1") == lanes.names
    assert isinstance(acc._wbuf, tuple) and len(acc._wbuf) == 2
    beats = packed.words.reshape(-1, lanes.count * lanes.lane_words)   # bus words of weight words
    for i, buf in enumerate(acc._wbuf):
        assert isinstance(buf, PynqBuffer) and buf.size == packed.words.size // 2
        assert np.array_equal(np.asarray(buf).reshape(-1, lanes.lane_words),
                              beats[:, i * lanes.lane_words:(i + 1) * lanes.lane_words])
    images = synthetic_images(cfg.model, 2, seed=11)
    res = acc.infer(images, "all")
    golden = FixedM3ViT(cfg, sd)
    for t, name in enumerate(cfg.model.task_names):
        assert np.array_equal(res.tokens[name], golden.forward(images, t, keep_taps=False).tokens.numpy()), name
    for name, buf in zip(lanes.names, acc._wbuf):   # each lane's pointer register holds its buffer
        off = acc.driver._off[name]
        assert acc.device.kernel.values[off] == buf.device_address & 0xFFFF_FFFF
    # the lanes swapped: the device reads what the registers point at, so the tokens change
    acc.driver.run(acc._ibuf, acc._wbuf[::-1], acc._abuf, 0, 2)
    swapped = acc._read_activations(2, None)
    assert not np.array_equal(swapped.reshape(res.tokens["semseg"].shape), res.tokens["semseg"])
    with pytest.raises(KernelError, match="2 pointer"):
        acc.driver.run(acc._ibuf, acc._wbuf[0], acc._abuf, 0, 2)
