"""The simulated overlay file: a ``.simbit`` (JSON) and the pynq parser built from it.

A ``.simbit`` in bitstreams/ names the kernel's C-simulation library (with the
SHA-256 it had when it was compiled, checked before it is loaded), the
register map, the config and where the generator placed each m_axi bundle
on the config's board (``memory``: :func:`edgemoe.hls.memory_map.placement_data`);
it is registered in the same manifest as a real build.  :class:`SimParser`
turns it into what ``pynq.Overlay`` reads from the board's parser, so the
simulated device (:mod:`edgemoe.host.simdevice`) binds the same driver as a board:

* Zynq: what pynq reads from a .hwh (the ip_dict with the kernel's registers;
  every buffer lives in the one PS DDR, no memory to choose);
* Alveo: what pynq 4.0 reads from an .xclbin (``XclBin``): the compute unit
  with one register per argument, each m_axi argument naming the HBM
  pseudo-channel it is linked to (``memory``; ``MBG``, the list, when it is
  linked to several), and the memory topology (``mem_dict``: ``HBM[0]`` ..
  ``HBM[31]``, ``used`` where an argument is linked), so
  ``overlay.HBM1`` is a memory the host allocates on.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgemoe import __version__
from edgemoe.hls.interface import TOP, VLNVS
from edgemoe.hls.memory_map import INSTANCE, placement_data
from edgemoe.hls.plan import KernelPlan
from edgemoe.hls.shared_files import sha256_file

from .errors import OverlayMismatchError

SIMBIT_FORMAT = "edgemoe-simbit"
#: 2: records the library's SHA-256; 3: the board, its flow and the memory placement; 4: the activations in bus
#: words (each image's region, each head's in a per-head tap, from a bus word; the library takes the buffer's bytes)
SIMBIT_VERSION = 4
#: the kernel's IP name (VLNV) per flow: the Vivado IP export (Zynq), a Vitis .xo's default vendor (Alveo)
FLOW_VLNV = {"zynq": VLNVS[0], "alveo": VLNVS[1]}
#: where the kernel's AXI-Lite registers sit (M_AXI_HPM0_FPD on the ZCU102, as in the block design)
CTRL_BASE = 0xA000_0000
CTRL_RANGE = 0x1_0000
#: the simulated card's HBM: pseudo-channel i at HBM_BASE + i * bank_bytes (above 0, so a null pointer is in none)
HBM_BASE = 0x10_0000_0000
#: pynq's memory type of an HBM bank (index into its ``_mem_types``: XRT's MEM_HBM)
MEM_HBM = 6


# --- the simulated overlay file ------------------------------------------------------

def simbit_data(cfg, library: str, regmap: str, library_sha256: str) -> dict:
    """Contents of a ``.simbit``: what the simulated PL holds (paths relative to the file; the library's
    SHA-256 from its build record)."""
    from edgemoe.hls.interface import config_hash32

    m = cfg.model
    plan = KernelPlan.from_config(cfg)
    types = plan.buffer_types
    memory = placement_data(cfg)
    flow = memory["flow"]
    return {
        "format": SIMBIT_FORMAT, "version": SIMBIT_VERSION, "kernel": TOP, "board": memory["board"], "flow": flow,
        "instance": INSTANCE[flow], "vlnv": FLOW_VLNV[flow], "memory": memory,
        "phys_addr": CTRL_BASE, "addr_range": CTRL_RANGE, "library": library, "library_sha256": library_sha256,
        "regmap": regmap,
        "config_name": cfg.name, "config_digest": cfg.digest(), "config_hash": config_hash32(cfg),
        "generator_version": __version__, "clock_mhz": cfg.hardware.clock_mhz,
        "tasks": len(m.tasks), "taps": len(plan.taps),
        "buffers": {
            "image": {"dtype": types["image"].str, "words_per_image": plan.buffer_depths["image"]},
            "weights": {"dtype": types["weights"].str, "words": plan.layout.total_words,
                        # the lane buffers, lane 0 first, and their weight words per bus word (absent: one buffer)
                        **({"lanes": list(plan.lanes.names), "lane_words": plan.lanes.lane_words}
                           if plan.lanes.count > 1 else {})},
            # output words from one image's region to the next (whole bus words): inference, a tap call
            "activations": {"dtype": types["activations"].str, "words_per_image": plan.image_stride(False),
                            "tap_words_per_image": plan.image_stride(True)},
        },
    }


def load_simbit(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OverlayMismatchError(f"{path}: not a simulated overlay (.simbit JSON): {e}") from None
    if not isinstance(data, dict) or data.get("format") != SIMBIT_FORMAT:
        raise OverlayMismatchError(f"{path}: not a simulated overlay (format is not {SIMBIT_FORMAT!r}); "
                                   f"a real .bit/.xclbin needs --device board")
    if data.get("version") != SIMBIT_VERSION:
        raise OverlayMismatchError(f"{path}: .simbit version {data.get('version')!r}, this edgemoe reads "
                                   f"{SIMBIT_VERSION}; rebuild it")
    data["_root"] = str(path.resolve().parent)
    return data


def library_problem(simbit: dict) -> str | None:
    """Why the csim library a loaded ``.simbit`` names cannot be loaded (None when it matches its record)."""
    lib = Path(simbit["_root"]) / str(simbit.get("library"))
    if not lib.is_file():
        return f"its C simulation library {lib} is missing"
    got = sha256_file(lib)
    if got != simbit.get("library_sha256"):
        return (f"its C simulation library {lib} has SHA-256 {got[:12]}..., compiled as "
                f"{str(simbit.get('library_sha256'))[:12]}... (truncated or replaced since it was built)")
    return None


def _pynq_registers(regmap: dict) -> dict:
    """The register map in the form of a .hwh-derived ip_dict (so ``driver.register_map`` works too)."""
    out = {}
    for name, reg in regmap["registers"].items():
        if "bits" in reg:  # control registers
            access = "read-write"
            fields = {b.upper(): {"bit_offset": i, "bit_width": 1, "access": "read-write", "description": b}
                      for b, i in reg["bits"].items()}
            out[name.upper()] = {"address_offset": reg["offset"], "size": 32, "access": access,
                                 "description": name, "fields": fields}
        elif reg["kind"] == "pointer":
            for i, half in enumerate(("low", "high")):
                out[f"{name}_{i + 1}"] = {"address_offset": reg["offset"] + 4 * i, "size": 32,
                                          "access": "write-only", "description": f"{reg['doc']} ({half} word)",
                                          "fields": {name: {"bit_offset": 0, "bit_width": 32,
                                                            "access": "write-only", "description": half}}}
        elif reg["kind"] == "scalar":
            out[name] = {"address_offset": reg["offset"], "size": 32, "access": "write-only",
                         "description": reg["doc"],
                         "fields": {name: {"bit_offset": 0, "bit_width": 32, "access": "write-only",
                                           "description": reg["doc"]}}}
        else:
            out[name] = {"address_offset": reg["offset"], "size": 32, "access": "read-only",
                         "description": reg["doc"],
                         "fields": {name: {"bit_offset": 0, "bit_width": 32, "access": "read-only",
                                           "description": reg["doc"]}}}
            out[f"{name}_ctrl"] = {"address_offset": reg["ctrl_offset"], "size": 32, "access": "read-only",
                                   "description": f"{name} control",
                                   "fields": {f"{name}_ap_vld": {"bit_offset": reg["ap_vld_bit"], "bit_width": 1,
                                                                 "access": "read-only", "description": "ap_vld"}}}
    return out


def _xclbin_registers(regmap: dict, memory: dict) -> dict:
    """The compute unit's registers as pynq's ``XclBin`` parser gives them: ``CTRL``, then one per argument
    (``id`` its index); an m_axi argument names its HBM bank (``memory``: the last one, ``MBG``: all of
    them when it is linked to several, as pynq records a multi-bank connection)."""
    linked = {arg: [f"HBM[{i}]" for i in b["banks"]] for b in memory["bundles"] for arg in b["args"]}
    out = {"CTRL": {"address_offset": regmap["registers"]["ap_ctrl"]["offset"], "access": "read-write", "size": 32,
                    "description": "OpenCL Control Register", "type": "unsigned int", "id": None}}
    args = [(name, reg) for name, reg in regmap["registers"].items() if "kind" in reg]
    for i, (name, reg) in enumerate(args):
        pointer = reg["kind"] == "pointer"
        r = {"address_offset": reg["offset"], "access": "read-write;", "size": 64 if pointer else 32,
             "host_size": 8 if pointer else 4, "description": "OpenCL Argument Register",
             "type": "void*" if pointer else "unsigned int", "id": i}
        if pointer:
            tags = linked[name]
            r["memory"] = tags[-1]
            if len(tags) > 1:
                r["MBG"] = tags
        out[name] = r
    return out


def _hbm_topology(memory: dict) -> dict:
    """The card's memory topology as pynq's ``mem_dict``: every HBM pseudo-channel, ``used`` where linked."""
    used = {i for b in memory["bundles"] for i in b["banks"]}
    size = memory["bank_bytes"]
    return {f"HBM[{i}]": {"raw_type": MEM_HBM, "used": int(i in used), "base_address": HBM_BASE + i * size,
                          "size": size, "type": "HBM", "streaming": False, "idx": i, "tag": f"HBM[{i}]"}
            for i in range(memory["ports"])}


class SimParser:
    """What ``pynq.Overlay`` reads from a parser (HWH on Zynq, XclBin on Alveo), built from a ``.simbit``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.simbit = load_simbit(path)
        root = Path(self.simbit["_root"])
        self.library = root / self.simbit["library"]
        problem = library_problem(self.simbit)
        if problem is not None:
            raise OverlayMismatchError(f"{path}: {problem}; rebuild the simulated overlay")
        try:
            self.regmap = json.loads((root / self.simbit["regmap"]).read_text())
        except (OSError, ValueError) as e:  # ValueError: not UTF-8 or not JSON
            raise OverlayMismatchError(f"{path}: register map {self.simbit['regmap']} cannot be read: {e}") from None
        inst = self.simbit["instance"]
        self.alveo = self.simbit["flow"] == "alveo"
        if self.alveo:
            self.ip_dict = {inst: {
                "fullpath": inst, "type": self.simbit["vlnv"], "hw_control_protocol": "ap_ctrl_hs",
                "phys_addr": self.simbit["phys_addr"], "addr_range": self.simbit["addr_range"],
                "registers": _xclbin_registers(self.regmap, self.simbit["memory"]), "streams": {},
                "mem_id": None, "state": None, "interrupts": {}, "gpio": {},
                "cu_name": f"{self.simbit['kernel']}:{inst}", "cu_index": 0,
            }}
            self.mem_dict: dict = _hbm_topology(self.simbit["memory"])
        else:
            self.ip_dict = {inst: {
                "fullpath": inst, "type": self.simbit["vlnv"], "bdtype": None, "state": None,
                "phys_addr": self.simbit["phys_addr"], "addr_range": self.simbit["addr_range"],
                "mem_id": "s_axi_control", "memtype": "REGISTER", "gpio": {}, "interrupts": {},
                "parameters": {"C_S_AXI_CONTROL_BASEADDR": hex(self.simbit["phys_addr"]),
                               "C_S_AXI_CONTROL_HIGHADDR": hex(self.simbit["phys_addr"] + self.simbit["addr_range"] - 1),
                               "CONFIG_DIGEST": self.simbit["config_digest"],
                               "CLK_FREQ_MHZ": self.simbit["clock_mhz"]},
                "registers": _pynq_registers(self.regmap),
            }}
            self.mem_dict = {}
        self.gpio_dict: dict = {}
        self.interrupt_pins: dict = {}
        self.interrupt_controllers: dict = {}
        self.hierarchy_dict: dict = {}
        self.clock_dict: dict = {}
        self.systemgraph = None
