"""The kernel's interface: its IP name (VLNV), top-function arguments and the s_axilite register map.

The argument list here is the one source of the C++ signature
(:func:`kernel_signature`, which the kernel header and source print), its
INTERFACE pragmas and the register-map JSON the host driver uses.  The IP
name (:data:`VLNV`) is the one the Vitis HLS export gives the kernel, the
block design instantiates and the host driver binds to.

Offsets follow Vitis HLS's s_axilite layout: control and interrupt
registers at 0x00-0x0c, then each argument in order (64-bit pointers take
low/high words plus a reserved word, scalars a data word plus a reserved
word, output scalars a data word plus a control word holding ap_vld).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

from edgemoe import __version__

TOP = "edgemoe_vit"
#: the exported IP's vendor, library and version (``export_design -vendor -library -version``)
IP_VENDOR = "edgemoe.org"
IP_LIBRARY = "hls"
IP_VERSION = "1.0"
#: the kernel's IP name as the block design instantiates it and a ``.hwh`` records it
VLNV = f"{IP_VENDOR}:{IP_LIBRARY}:{TOP}:{IP_VERSION}"
#: every VLNV the kernel can appear under: the Vivado IP export (ZCU102) and the vendor a Vitis ``.xo`` gets
#: by default (Alveo)
VLNVS = (VLNV, f"xilinx.com:{IP_LIBRARY}:{TOP}:{IP_VERSION}")
#: status register values written by the kernel
STATUS = {"ok": 0, "bad_task": 1, "bad_tap": 2}
#: tap register value meaning "no tap: run to the end and write the tokens"
TAP_NONE = 0xFFFF

CONTROL_REGISTERS = {
    "ap_ctrl": {"offset": 0x00, "bits": {"ap_start": 0, "ap_done": 1, "ap_idle": 2, "ap_ready": 3, "auto_restart": 7}},
    "gie": {"offset": 0x04, "bits": {"global_interrupt_enable": 0}},
    "ier": {"offset": 0x08, "bits": {"ap_done": 0, "ap_ready": 1}},
    "isr": {"offset": 0x0C, "bits": {"ap_done": 0, "ap_ready": 1}},
}


@dataclass(frozen=True)
class Arg:
    """One top-level argument: ``kind`` is m_axi (a pointer), scalar (in) or output (out scalar)."""

    name: str
    kind: str
    ctype: str
    bits: int
    doc: str
    offset: int = 0

    @property
    def value_bits(self) -> int:
        """Bits of a scalar's C type (``ap_uint<N>`` / ``ap_int<N>``): its register's meaningful width."""
        m = re.fullmatch(r"ap_u?int<(\d+)>", self.ctype.strip())
        if not m:
            raise ValueError(f"argument {self.name}: C type {self.ctype!r} is not ap_uint<N> or ap_int<N>")
        return int(m.group(1))


def kernel_args(cfg) -> list[Arg]:
    """Arguments of the top function in order, with their register offsets."""
    from .layout import WeightLanes, matrix_bits, word_bits
    from .plan import KernelPlan

    wb, mb, bus = word_bits(cfg.precision), matrix_bits(cfg.precision), cfg.hardware.axi_width
    packed = f"; matrices packed {wb // mb} elements to a word" if mb < wb else ""
    lanes = WeightLanes.of(cfg)
    plan = KernelPlan.from_config(cfg)
    if lanes.count == 1:
        weights = [Arg("weights", "m_axi", "const weight_beat_t*", 64,
                       f"packed weight words ({wb}-bit, {bus // wb} per {bus}-bit bus word, little-endian{packed}), "
                       "see layout.json")]
    else:
        weights = [Arg(name, "m_axi", "const weight_lane_t*", 64,
                       f"lane {i} of {lanes.count} of the packed weight words: bits [{i * lanes.lane_bits}, "
                       f"{(i + 1) * lanes.lane_bits}) of every {bus}-bit bus word ({lanes.lane_words} {wb}-bit "
                       f"words, little-endian{packed}), see layout.json")
                   for i, name in enumerate(lanes.names)]
    args = [
        Arg("image", "m_axi", "const image_word_t*", 64,
            f"pixel codes [images][C][H][W] ({plan.pixel_word_bits}-bit, {plan.image_lanes} per "
            f"{plan.image_word_bits}-bit word, little-endian)"),
        *weights,
        Arg("activations", "m_axi", "act_beat_t*", 64,
            f"output tokens [images][N][D], or the debug tap's words: {plan.out_word_bits}-bit output words, "
            f"{plan.out_per_beat} per {bus}-bit bus word, little-endian; each image's region (each head's in a "
            f"per-head tap) from a bus word of its own, see taps.json"),
        Arg("task", "scalar", "ap_uint<8>", 32, "task index: selects every MoE block's gate"),
        Arg("num_images", "scalar", "ap_uint<16>", 32, "images in this call"),
        Arg("tap", "scalar", "ap_uint<16>", 32, f"debug tap id (stop after that step), {TAP_NONE:#x} = none"),
        Arg("config_hash", "output", "ap_uint<32>", 32, "hash of the config and generator version (read-only)"),
        Arg("status", "output", "ap_uint<32>", 32, "0 ok, 1 bad task, 2 bad tap"),
    ]
    off = 0x10
    placed = []
    for a in args:
        placed.append(Arg(a.name, a.kind, a.ctype, a.bits, a.doc, off))
        off += 12 if a.kind == "m_axi" else 8
    return placed


def m_axi_bundles(cfg) -> dict[str, str]:
    """m_axi argument -> its bundle: the config's ``hardware.bundles``, each weight lane on its own
    (:class:`~edgemoe.hls.layout.WeightLanes`)."""
    from .layout import WeightLanes

    lanes = WeightLanes.of(cfg)
    of = cfg.hardware.bundle_of
    out = {}
    for a in kernel_args(cfg):
        if a.kind == "m_axi":
            out[a.name] = of[a.name] if a.name in of else lanes.bundles[lanes.names.index(a.name)]
    return out


def weight_params(cfg) -> str:
    """The weight pointer parameters of every kernel function that reads weights (the top's weight arguments)."""
    return ", ".join(f"{a.ctype} {a.name}" for a in kernel_args(cfg) if a.name in _weight_names(cfg))


def weight_call_args(cfg) -> str:
    """The weight pointers passed on to a callee, as :func:`weight_params` declares them."""
    return ", ".join(_weight_names(cfg))


def weight_beat(cfg, index: str) -> str:
    """C++ expression of bus word ``index`` of the weights: one m_axi read, or one read of every lane (each on
    its own bundle, in the same iteration) joined by ``join_lanes``."""
    names = _weight_names(cfg)
    if len(names) == 1:
        return f"{names[0]}[{index}]"
    return "join_lanes(" + ", ".join(f"{n}[{index}]" for n in names) + ")"


def _weight_names(cfg) -> tuple[str, ...]:
    from .layout import WeightLanes

    return WeightLanes.of(cfg).names


def kernel_signature(cfg) -> list[str]:
    """The top function's parameter list, one line per argument kind (pointers, scalars, outputs).

    The templates print ``void <TOP>(`` + these lines joined by ``,`` and a line
    break; an output scalar is passed by pointer.
    """
    lines = []
    for kind in ("m_axi", "scalar", "output"):
        params = [f"{a.ctype}{'*' if kind == 'output' else ''} {a.name}" for a in kernel_args(cfg) if a.kind == kind]
        if params:
            lines.append(", ".join(params))
    return lines


def config_hash32(cfg) -> int:
    """32-bit hash of the config digest and the generator version (the kernel's config_hash register)."""
    h = hashlib.sha256(f"{cfg.digest()}:{__version__}".encode()).hexdigest()
    return int(h[:8], 16)


def register_map(cfg) -> dict:
    """The control interface as plain data (written as regmap.json for the host)."""
    regs = dict(CONTROL_REGISTERS)
    bundles = m_axi_bundles(cfg)
    for a in kernel_args(cfg):
        if a.kind == "m_axi":
            regs[a.name] = {"offset": a.offset, "width": 64, "kind": "pointer", "doc": a.doc,
                            "bundle": bundles[a.name]}
        elif a.kind == "scalar":
            regs[a.name] = {"offset": a.offset, "width": 32, "kind": "scalar", "doc": a.doc}
        else:
            regs[a.name] = {"offset": a.offset, "width": 32, "kind": "output", "doc": a.doc,
                            "ctrl_offset": a.offset + 4, "ap_vld_bit": 0}
    lanes = _weight_names(cfg)
    return {"kernel": TOP, "generator_version": __version__, "config_digest": cfg.digest(),
            "config_hash": config_hash32(cfg), "tap_none": TAP_NONE, "status": STATUS, "registers": regs,
            # the weight pointers, lane 0 first (absent: the one pointer "weights")
            **({"weight_lanes": list(lanes)} if len(lanes) > 1 else {})}


def register_map_json(cfg) -> str:
    return json.dumps(register_map(cfg), indent=2)


def args_as_dicts(cfg) -> list[dict]:
    return [asdict(a) for a in kernel_args(cfg)]
