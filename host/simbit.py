"""The simulated overlay file: a ``.simbit`` (JSON) and the pynq parser built from it.

A ``.simbit`` in bitstreams/ names the kernel's C-simulation library (with the
SHA-256 it had when it was compiled, checked before it is loaded), the
register map and the config; it is registered in the same manifest as a real
build.  :class:`SimParser` turns it into what ``pynq.Overlay`` reads from a
.hwh/.xclbin parser (the ip_dict with the kernel's registers), so the
simulated device (:mod:`edgemoe.host.simdevice`) binds the same driver as a board.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgemoe import __version__
from edgemoe.hls.interface import TOP, VLNV
from edgemoe.hls.plan import KernelPlan
from edgemoe.hls.shared_files import sha256_file

from .errors import OverlayMismatchError

SIMBIT_FORMAT = "edgemoe-simbit"
SIMBIT_VERSION = 2  # 2: records the library's SHA-256
#: the kernel's instance name in the block design (its IP name, VLNV, is the interface's)
INSTANCE = f"{TOP}_0"
#: where the kernel's AXI-Lite registers sit (M_AXI_HPM0_FPD on the ZCU102, as in the block design)
CTRL_BASE = 0xA000_0000
CTRL_RANGE = 0x1_0000


# --- the simulated overlay file ------------------------------------------------------

def simbit_data(cfg, library: str, regmap: str, library_sha256: str) -> dict:
    """Contents of a ``.simbit``: what the simulated PL holds (paths relative to the file; the library's
    SHA-256 from its build record)."""
    from edgemoe.hls.interface import config_hash32

    m = cfg.model
    plan = KernelPlan.from_config(cfg)
    types = plan.buffer_types
    return {
        "format": SIMBIT_FORMAT, "version": SIMBIT_VERSION, "kernel": TOP, "instance": INSTANCE, "vlnv": VLNV,
        "phys_addr": CTRL_BASE, "addr_range": CTRL_RANGE, "library": library, "library_sha256": library_sha256,
        "regmap": regmap,
        "config_name": cfg.name, "config_digest": cfg.digest(), "config_hash": config_hash32(cfg),
        "generator_version": __version__, "clock_mhz": cfg.hardware.clock_mhz,
        "tasks": len(m.tasks), "taps": len(plan.taps),
        "buffers": {
            "image": {"dtype": types["image"].str, "words_per_image": plan.buffer_depths["image"]},
            "weights": {"dtype": types["weights"].str, "words": plan.layout.total_words},
            "activations": {"dtype": types["activations"].str, "words_per_image": m.num_tokens * m.embed_dim,
                            "tap_words_per_image": plan.max_tap_words},
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


class SimParser:
    """What ``pynq.Overlay`` reads from a parser (HWH/XclBin), built from a ``.simbit``."""

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
        self.mem_dict: dict = {}
        self.gpio_dict: dict = {}
        self.interrupt_pins: dict = {}
        self.interrupt_controllers: dict = {}
        self.hierarchy_dict: dict = {}
        self.clock_dict: dict = {}
        self.systemgraph = None
