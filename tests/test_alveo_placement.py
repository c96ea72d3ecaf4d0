"""Where the kernel's m_axi bundles meet memory: one placement, from the generator to the simulated card.

The placement (``hls/memory_map.py``) is what the v++ link config and the
ZCU102 block design are rendered from, what the manifest and the ``.simbit``
record, and what the host runtime allocates by: on a simulated U50/U280 each
buffer lies in the HBM pseudo-channel its argument is linked to, the run is
bit-exact, and a buffer on another bank makes the kernel call fail as XRT
would.  The Zynq path keeps one PS DDR.
"""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pynq
import pytest

from edgemoe.boards import BOARDS
from edgemoe.config import ConfigError, validate
from edgemoe.golden.fixed_model import FixedM3ViT
from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict
from edgemoe.hls.memory_map import buffer_bytes, placement, placement_data, placement_of
from edgemoe.hls.project import HLSProject
from edgemoe.host import manifest as mf
from edgemoe.host.errors import DeviceError, OverlayMismatchError, SimBusError
from edgemoe.host.runtime import Accelerator
from edgemoe.host.sim_overlay import build_sim_overlay
from edgemoe.host.simbit import SimParser
from edgemoe.host.simdevice import DDR_BASE, pynq_memory_name
from edgemoe.host.weights_file import pack_state_dict
from edgemoe.loading import load_config

ALVEO = ("u50", "u280")
SP = re.compile(r"^sp=(\w+)\.(\w+):(HBM\[\d+(?::\d+)?\])$", re.M)


def _micro(board: str, *overrides: str):
    return load_config("m3vit-micro", [f"hardware.board={board}", *overrides])


def _link_targets(text: str) -> dict[str, str]:
    """alveo_link.cfg's ``sp`` lines: argument -> HBM target (each argument once, on the one compute unit)."""
    found = SP.findall(text)
    assert len({arg for _, arg, _ in found}) == len(found) and {cu for cu, _, _ in found} == {"edgemoe_vit_1"}
    return {arg: target for _, arg, target in found}


def _small_banks(monkeypatch, board: str, bank_bytes: int) -> None:
    monkeypatch.setitem(BOARDS, board, dataclasses.replace(BOARDS[board], bank_bytes=bank_bytes))


# --- the generator -----------------------------------------------------------------------------

@pytest.mark.parametrize("board", ALVEO)
def test_link_config_links_each_bundle_to_its_own_banks(board, tmp_path):
    shared = "hardware.bundles={image: gmem0, weights: gmem1, activations: gmem1}"
    for name, cfg in (("default", _micro(board)), ("shared", _micro(board, shared))):
        text = (HLSProject(cfg).write(tmp_path / name) / "alveo_link.cfg").read_text()
        assert "nk=edgemoe_vit:1:edgemoe_vit_1" in text and "freqHz=300000000:edgemoe_vit_1" in text
        links = _link_targets(text)
        assert links == {arg: p.target for arg, p in placement_of(cfg).items()}
        banks = [set(p.banks) for p in placement(cfg)]
        assert all(not (a & b) for i, a in enumerate(banks) for b in banks[i + 1:])  # no bank shared by bundles
        if name == "default":  # the micro model fits one 256 MiB pseudo-channel per bundle
            assert links == {"image": "HBM[0]", "weights": "HBM[1]", "activations": "HBM[2]"}
        else:  # arguments of one bundle (one AXI port) are linked to the same banks
            assert links["weights"] == links["activations"] != links["image"]


def test_weights_larger_than_a_pseudo_channel_span_several(monkeypatch, tmp_path):
    cfg = _micro("u50")
    need = buffer_bytes(cfg)
    _small_banks(monkeypatch, "u50", 256 << 10)
    span = -(-need["weights"] // (256 << 10))
    assert span > 1
    where = placement_of(cfg)
    assert where["image"].banks == (0,) and where["weights"].banks == tuple(range(1, 1 + span))
    assert where["activations"].banks == (1 + span,)
    assert where["weights"].target == f"HBM[1:{span}]"
    text = (HLSProject(cfg).write(tmp_path / "prj") / "alveo_link.cfg").read_text()
    assert _link_targets(text)["weights"] == f"HBM[1:{span}]"
    # more pseudo-channels than the card has: refused, naming the sizes and the count
    _small_banks(monkeypatch, "u50", 16 << 10)
    with pytest.raises(ConfigError, match=r"model.*the bundles need \d+ HBM pseudo-channels of 16384 bytes \(gmem0 \(image\): 1, "
                                          r"gmem1 \(weights\): \d+, gmem2 \(activations\): 2\); board u50 has 32"):
        placement(cfg)


def test_zynq_block_design_wires_each_bundle_to_its_hp_port(tmp_path):
    cfg = _micro("zcu102", "hardware.bundles={image: zz, weights: aa, activations: mm}")
    text = (HLSProject(cfg).write(tmp_path / "prj") / "bd_zcu102.tcl").read_text()
    places = placement(cfg)
    assert sorted(p.hp for p in places) == [0, 1, 2] and all(p.banks == () for p in places)
    assert [p.bundle for p in sorted(places, key=lambda p: p.hp)] == ["aa", "mm", "zz"]  # as the block design orders them
    for p in places:
        assert (f'Master "/edgemoe_vit_0/m_axi_{p.bundle}" Slave "/zynq_ultra_ps_e_0/S_AXI_HP{p.hp}_FPD"') in text
        assert f"CONFIG.PSU__USE__S_AXI_GP{p.hp + 2} {{1}}" in text  # GP2..GP5 are HP0..HP3
        assert p.ps_port == f"S_AXI_HP{p.hp}_FPD"
    assert text.count("apply_bd_automation -rule xilinx.com:bd_rule:axi4") == 1 + len(places)
    assert placement_data(cfg)["memory"] == "PS DDR"


def test_board_ports_and_the_config_rule(monkeypatch):
    for name in ALVEO:
        b = BOARDS[name]
        assert (b.ports, b.bank_bytes) == (32, 256 << 20) and b.port_gbps == pytest.approx(256 / 8 * 0.450)
        assert b.ports * b.bank_bytes == 8 << 30  # 8 GiB of HBM2
    assert (BOARDS["zcu102"].ports, BOARDS["zcu102"].bank_bytes) == (6, 0)
    assert BOARDS["zcu102"].ps_ports[:4] == tuple(f"S_AXI_HP{i}_FPD" for i in range(4))  # HP first, then HPC
    cfg = _micro("zcu102")  # three bundles on the first three HP ports
    two = cfg.replace(hardware=dataclasses.replace(cfg.hardware, bundles=(("image", "gmem0"), ("weights", "gmem1"),
                                                                          ("activations", "gmem0"))))
    monkeypatch.setitem(BOARDS, "zcu102", dataclasses.replace(BOARDS["zcu102"], ports=2,
                                                              ps_ports=BOARDS["zcu102"].ps_ports[:2]))
    with pytest.raises(ConfigError, match=r"hardware\.bundles.*names 3 m_axi bundles; board zcu102 has 2 memory "
                                          r"ports, so 1\.\.2 bundles"):
        validate(cfg)
    validate(two)


# --- the simulated card ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weights():
    cfg = _micro("u50")
    return synthetic_state_dict(cfg.model, seed=0)


@pytest.fixture(scope="module", params=ALVEO)
def alveo(request, tmp_path_factory, csim_cache, weights):
    """A simulated U50 / U280 overlay of m3vit-micro: (cfg, manifest entry, packed weights, golden model)."""
    cfg = _micro(request.param)
    entry = build_sim_overlay(cfg, tmp_path_factory.mktemp(f"bitstreams-{request.param}"), cache_dir=csim_cache)
    return cfg, entry, pack_state_dict(cfg, weights, "synthetic (seed 0)"), FixedM3ViT(cfg, weights)


def test_manifest_and_simbit_carry_the_placement(alveo):
    cfg, entry, _, _ = alveo
    data = placement_data(cfg)
    assert data["flow"] == "alveo" and data["board"] == cfg.hardware.board and data["instance"] == "edgemoe_vit_1"
    assert entry.data["memory"] == data
    assert mf.read_manifest(entry.root)["entries"][-1]["memory"] == data  # written to manifest.json
    assert {arg: rec["target"] for arg, rec in entry.placement().items()} == \
           {arg: p.target for arg, p in placement_of(cfg).items()}
    simbit = json.loads(entry.overlay.read_text())
    assert simbit["memory"] == data and simbit["flow"] == "alveo" and simbit["instance"] == "edgemoe_vit_1"
    parser = SimParser(entry.overlay)  # what pynq reads: an xclbin's compute unit and memory topology
    regs = parser.ip_dict["edgemoe_vit_1"]["registers"]
    assert parser.ip_dict["edgemoe_vit_1"]["type"] == "xilinx.com:hls:edgemoe_vit:1.0"
    assert {arg: regs[arg]["memory"] for arg in placement_of(cfg)} == \
           {arg: p.bank_tags[-1] for arg, p in placement_of(cfg).items()}
    assert "memory" not in regs["task"] and len(parser.mem_dict) == 32
    assert {t for t, m in parser.mem_dict.items() if m["used"]} == {t for p in placement(cfg) for t in p.bank_tags}


def test_runtime_allocates_each_buffer_on_its_bank_and_is_bit_exact(alveo):
    cfg, entry, packed, golden = alveo
    lines = []
    acc = Accelerator(cfg, entry.overlay, packed, device="sim", log=lines.append)
    where = placement_of(cfg)
    assert isinstance(acc.overlay.edgemoe_vit_1, type(acc.driver))
    for arg, p in where.items():  # pynq's memory object of the linked bank, the same as overlay.HBM<i>
        assert acc.targets[arg] == getattr(acc.overlay, pynq_memory_name(p.bank_tags[0]))
    assert "memory: image on HBM[0], weights on HBM[1], activations on HBM[2]" in lines
    images = synthetic_images(cfg.model, 3, seed=11)
    res = acc.infer(images, "all")
    assert [(c.num_images, c.status) for c in acc.device.calls[-2:]] == [(3, 0), (3, 0)]
    for t, name in enumerate(cfg.model.task_names):
        assert np.array_equal(res.tokens[name], golden.forward(images, t, keep_taps=False).tokens.numpy()), name
    for arg, buf in (("image", acc._ibuf), ("weights", acc._wbuf), ("activations", acc._abuf)):
        assert acc.device.bank_of(buf.device_address) == where[arg].bank_tags[0], arg
    # a tap through the same buffers (the activation buffer grows inside its bank)
    tap = "blocks.1.attn"
    assert np.array_equal(acc.run_tap(images[:2], "depth", tap), golden.forward(images[:2], 1).taps[tap].numpy())
    assert acc.device.bank_of(acc._abuf.device_address) == where["activations"].bank_tags[0]


def test_a_buffer_on_the_wrong_bank_fails_the_call_clearly(alveo):
    cfg, entry, packed, golden = alveo
    acc = Accelerator(cfg, entry.overlay, packed, device="sim", log=None)
    images = synthetic_images(cfg.model, 2, seed=3)
    good = acc._wbuf
    wrong = pynq.allocate(good.shape, good.dtype, target=acc.overlay.HBM0)  # the image's bank
    wrong[:] = good
    acc._wbuf = wrong
    with pytest.raises(SimBusError, match=r"kernel argument 'weights' is a buffer on HBM\[0\] .*but "
                                          r"edgemoe_vit_1\.weights is linked to HBM\[1\] "
                                          r"\(sp=edgemoe_vit_1\.weights:HBM\[1\] in alveo_link\.cfg\).*"
                                          r"target=overlay\.HBM1"):
        acc.infer(images, "semseg")
    acc._wbuf = good  # the kernel is idle again: the next call with the right bank works
    res = acc.infer(images, "semseg")
    assert np.array_equal(res.tokens["semseg"], golden.forward(images, 0, keep_taps=False).tokens.numpy())
    # an allocation with no bank named is refused while the overlay uses several (pynq on XRT does so)
    with pytest.raises(RuntimeError, match=r"Multiple memories active in design: specify the memory"):
        pynq.allocate((16,), np.int32, target=acc.device)


def test_an_overlay_linked_otherwise_than_placed_is_refused(alveo, tmp_path):
    cfg, entry, packed, _ = alveo
    out = tmp_path / "bitstreams"
    out.mkdir()
    for rel in entry.data["files"]:
        (out / rel).write_bytes((entry.root / rel).read_bytes())
    simbit = json.loads((out / entry.data["overlay"]).read_text())
    for b in simbit["memory"]["bundles"]:  # an .xclbin linked with a hand-edited config: weights on HBM[7]
        if "weights" in b["args"]:
            b["banks"], b["target"] = [7], "HBM[7]"
    overlay = out / entry.data["overlay"]
    overlay.write_text(json.dumps(simbit))
    mf.add_entry(cfg, overlay, [out / r for r in entry.data["files"] if r.endswith(".so")], board="sim", flow="sim",
                 regmap=out / entry.data["regmap"], manifest=out)
    with pytest.raises(OverlayMismatchError, match=r"links kernel argument 'weights' to HBM\[7\], but the generator "
                                                   r"placed it on HBM\[1\]"):
        Accelerator(cfg, overlay, packed, device="sim", log=None)


def test_bank_capacity_bounds_the_batch_and_the_weights(monkeypatch, tmp_path, csim_cache, weights):
    cfg = _micro("u50")
    need = buffer_bytes(cfg)
    packed = pack_state_dict(cfg, weights, "synthetic (seed 0)")
    bank = 640 << 10  # the weights fit one bank; the activation bank holds few images
    _small_banks(monkeypatch, "u50", bank)
    entry = build_sim_overlay(cfg, tmp_path / "a", cache_dir=csim_cache)
    acc = Accelerator(cfg, entry.overlay, packed, device="sim", max_batch=64, log=None)
    fit = (bank - 4096) // need["activations"]
    assert 1 < fit < 64 and acc.max_batch == fit
    images = synthetic_images(cfg.model, fit + 1, seed=2)
    res = acc.infer(images, "depth")
    assert [c.num_images for c in acc.device.calls if c.num_images] == [fit, 1]
    assert np.array_equal(res.tokens["depth"],
                          FixedM3ViT(cfg, weights).forward(images, 1, keep_taps=False).tokens.numpy())
    # weights over several pseudo-channels: linked to all of them, but one buffer lies in one bank
    _small_banks(monkeypatch, "u50", 256 << 10)
    entry = build_sim_overlay(cfg, tmp_path / "b", cache_dir=csim_cache)
    regs = SimParser(entry.overlay).ip_dict["edgemoe_vit_1"]["registers"]
    assert regs["weights"]["MBG"] == list(placement_of(cfg)["weights"].bank_tags) and len(regs["weights"]["MBG"]) > 1
    with pytest.raises(DeviceError, match=rf"weights {need['weights']} bytes: more than HBM\[1\] holds"):
        Accelerator(cfg, entry.overlay, packed, device="sim", log=None)


# --- Zynq: unchanged ---------------------------------------------------------------------------

def test_zynq_buffers_stay_in_the_one_ps_ddr(micro_sim_overlay):
    cfg, _, entry, packed = micro_sim_overlay
    acc = Accelerator(cfg, entry.overlay, packed, device="sim", log=None)
    assert set(acc.targets.values()) == {acc.device} and acc.overlay.mem_dict == {}
    acc.infer(synthetic_images(cfg.model, 1, seed=0), "semseg")
    assert all(b.device_address >= DDR_BASE for b in (acc._ibuf, acc._wbuf, acc._abuf))
    assert acc.device.bank_of(acc._wbuf.device_address).startswith("no memory bank")
    assert {arg: rec["target"] for arg, rec in entry.placement().items()} == \
           {"image": "S_AXI_HP0_FPD", "weights": "S_AXI_HP1_FPD", "activations": "S_AXI_HP2_FPD"}


# --- weight lanes ---------------------------------------------------------------------------------

def test_each_weight_lane_is_a_bundle_on_its_own_port(tmp_path):
    """hardware.weight_lanes=2: the lanes' bundles are linked to pseudo-channels of their own (Alveo) and to HP
    ports of their own (Zynq), in lane order, each holding half the weight bytes."""
    cfg = _micro("u50", "hardware.weight_lanes=2")
    need = buffer_bytes(cfg)
    whole = buffer_bytes(_micro("u50"))["weights"]
    assert need["weights_0"] == need["weights_1"] == whole // 2 and "weights" not in need
    text = (HLSProject(cfg).write(tmp_path / "u50") / "alveo_link.cfg").read_text()
    assert _link_targets(text) == {"image": "HBM[0]", "weights_0": "HBM[1]", "weights_1": "HBM[2]",
                                   "activations": "HBM[3]"}
    assert [(p.bundle, p.args) for p in placement(cfg)] == [
        ("gmem0", ("image",)), ("gmem1_0", ("weights_0",)), ("gmem1_1", ("weights_1",)), ("gmem2", ("activations",))]
    zynq = _micro("zcu102", "hardware.weight_lanes=2")
    bd = (HLSProject(zynq).write(tmp_path / "zcu102") / "bd_zcu102.tcl").read_text()
    hp = {p.bundle: p.hp for p in placement(zynq)}
    assert hp == {"gmem0": 0, "gmem1_0": 1, "gmem1_1": 2, "gmem2": 3}   # all four HP ports
    for bundle, i in hp.items():
        assert f'Master "/edgemoe_vit_0/m_axi_{bundle}" Slave "/zynq_ultra_ps_e_0/S_AXI_HP{i}_FPD"' in bd
    # four lanes: six bundles, the last two on the coherent-interconnect ports HPC0 / HPC1 (the PS's GP0 / GP1)
    six = _micro("zcu102", "hardware.weight_lanes=4", "hardware.axi_width=512")
    bd = (HLSProject(six).write(tmp_path / "zcu102-4") / "bd_zcu102.tcl").read_text()
    port = {p.bundle: p.target for p in placement(six)}
    assert port == {"gmem0": "S_AXI_HP0_FPD", "gmem1_0": "S_AXI_HP1_FPD", "gmem1_1": "S_AXI_HP2_FPD",
                    "gmem1_2": "S_AXI_HP3_FPD", "gmem1_3": "S_AXI_HPC0_FPD", "gmem2": "S_AXI_HPC1_FPD"}
    for bundle, target in port.items():
        assert f'Master "/edgemoe_vit_0/m_axi_{bundle}" Slave "/zynq_ultra_ps_e_0/{target}"' in bd
    assert all(f"CONFIG.PSU__USE__S_AXI_GP{n} {{1}}" in bd for n in range(6))
    regs = json.loads((tmp_path / "zcu102" / "regmap.json").read_text())
    assert regs["weight_lanes"] == ["weights_0", "weights_1"]
    assert [regs["registers"][n]["bundle"] for n in regs["weight_lanes"]] == ["gmem1_0", "gmem1_1"]


def test_weight_lanes_on_a_simulated_card_each_on_its_bank(tmp_path_factory, csim_cache, weights):
    cfg = _micro("u50", "hardware.weight_lanes=2")
    entry = build_sim_overlay(cfg, tmp_path_factory.mktemp("bitstreams-lanes"), cache_dir=csim_cache)
    packed = pack_state_dict(cfg, weights, "synthetic (seed 0)")
    lines = []
    acc = Accelerator(cfg, entry.overlay, packed, device="sim", log=lines.append)
    assert "memory: image on HBM[0], weights_0 on HBM[1], weights_1 on HBM[2], activations on HBM[3]" in lines
    where = placement_of(cfg)
    for arg, buf in zip(("weights_0", "weights_1"), acc._wbuf):
        assert acc.device.bank_of(buf.device_address) == where[arg].bank_tags[0], arg
    images = synthetic_images(cfg.model, 2, seed=3)
    golden = FixedM3ViT(cfg, weights)
    res = acc.infer(images, "semseg")
    assert np.array_equal(res.tokens["semseg"], golden.forward(images, 0, keep_taps=False).tokens.numpy())
    good = acc._wbuf
    wrong = pynq.allocate(good[1].shape, good[1].dtype, target=acc.overlay.HBM1)   # lane 0's bank
    wrong[:] = good[1]
    acc._wbuf = (good[0], wrong)
    with pytest.raises(SimBusError, match=r"kernel argument 'weights_1' is a buffer on HBM\[1\] .*but "
                                          r"edgemoe_vit_1\.weights_1 is linked to HBM\[2\]"):
        acc.infer(images, "semseg")
    acc._wbuf = good
