"""Fill the Jinja2 templates (hls/templates/) from a config: one function per output file.

Every number a template needs comes from the config, the golden numerics
(types, tables), the kernel plan (:class:`~edgemoe.hls.plan.KernelPlan`:
widths, tiles, taps, weight offsets) or the interface (arguments, C
signature, IP name); nothing is derived or retyped here.
"""
from __future__ import annotations

import json
from pathlib import Path

import jinja2

from edgemoe import __version__
from edgemoe.config import PrecisionProfile
from edgemoe.golden.attention import attention_scale
from edgemoe.golden.numerics.fixed import ROUNDING_MODES
from edgemoe.golden.numerics.layernorm import eps_raw
from edgemoe.golden.numerics.tables import entry_bits, exp2_table, gelu_table, log2e_raw, recip_table, rsqrt_table

from .interface import (IP_LIBRARY, IP_VENDOR, IP_VERSION, STATUS, TAP_NONE, TOP, VLNV, config_hash32, kernel_args,
                        kernel_signature, m_axi_bundles, register_map_json, weight_beat, weight_call_args,
                        weight_params)
from .plan import KernelPlan
from .quoting import FILTERS, single_line

TEMPLATES = Path(__file__).parent / "templates"

#: generated file -> template
SOURCES = {
    "include/edgemoe_numerics.h": "edgemoe_numerics.h.j2",
    "include/edgemoe_config.h": "edgemoe_config.h.j2",
    "include/edgemoe_kernel.h": "edgemoe_kernel.h.j2",
    "src/edgemoe_vit.cpp": "edgemoe_vit.cpp.j2",
    "src/csim_bridge.cpp": "csim_bridge.cpp.j2",
}
#: the files render() writes besides SOURCES (from json / yaml, not from templates)
DATA_FILES = ("regmap.json", "config.yaml", "layout.json", "taps.json")


def _env() -> jinja2.Environment:
    """The templates' environment: the quoting filters of :mod:`.quoting`, no value spanning lines."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, finalize=single_line)
    env.filters.update(FILTERS)
    env.filters["int_bits"] = lambda v: int(v).bit_length()
    return env


def context(cfg) -> dict:
    """Everything the templates read: the config, the kernel plan's numbers, the numerics' tables."""
    m, p, h = cfg.model, cfg.precision, cfg.hardware
    plan = KernelPlan.from_config(cfg)
    types = []
    for field in PrecisionProfile.type_fields():
        t = getattr(p, field)
        types.append({"field": field, "spelled": str(t), "bits": t.bits, "signed": t.signed, "frac": t.frac_bits,
                      "min_raw": t.min_raw, "max_raw": t.max_raw, "rounding": t.rounding, "overflow": t.overflow})
    return {
        "version": __version__, "cfg": cfg, "m": m, "h": h, "profile": p.name, "top": TOP, "plan": plan,
        "rounding_modes": list(ROUNDING_MODES), "types": types,
        "rounding": {f: getattr(p, f).rounding for f in PrecisionProfile.type_fields()},
        "table_frac": p.table_frac_bits, "log2e": log2e_raw(p.table_frac_bits),
        "exp_bits": p.exp_table_bits, "recip_bits": p.recip_table_bits, "rsqrt_bits": p.rsqrt_table_bits,
        "gelu_step_log2": p.gelu_step_log2,
        "exp2_table": list(exp2_table(p.table_frac_bits, p.exp_table_bits)),
        "exp_v_bits": entry_bits(p)["exp2"],
        "recip_table": list(recip_table(p.table_frac_bits, p.recip_table_bits)),
        "rsqrt_table": list(rsqrt_table(p.table_frac_bits, p.rsqrt_table_bits)),
        "gelu_table": list(gelu_table(p.gelu_table, p.gelu_step_log2, p.gelu_range)),
        "gelu_common_frac": max(p.act.frac_bits, p.gelu_table.frac_bits),
        "config_hash": config_hash32(cfg), "tap_none": TAP_NONE, "status": STATUS,
        "score_shift": attention_scale(m.head_dim)[0], "ln_eps_raw": eps_raw(m.ln_eps, p),
        "is_moe": ["true" if m.is_moe(b) else "false" for b in range(m.depth)],
        "row_words": plan.row_words, "layout": plan.layout, "off": plan.offsets,
        "pixel_word_bits": plan.pixel_word_bits, "out_word_bits": plan.out_word_bits,
        "cu_word_bits": plan.cu_word_bits, "block_offsets": plan.block_offsets, "gate_offsets": plan.gate_offsets,
        "expert_offsets": plan.expert_offsets, "taps": list(plan.taps), "tap_id": plan.tap_id,
        "block_taps": plan.block_taps, "max_tap_words": plan.max_tap_words, "args": kernel_args(cfg),
        "signature": kernel_signature(cfg), "bundles": m_axi_bundles(cfg), "depths": plan.buffer_depths,
        # the weight pointers every function that reads weights takes and passes on, and the read of one bus word
        "weight_params": weight_params(cfg), "weight_args": weight_call_args(cfg),
        "weight_beat": lambda index: weight_beat(cfg, index),
        "max_tiles": plan.max_tiles, "vlnv": VLNV, "ip_vendor": IP_VENDOR, "ip_library": IP_LIBRARY,
        "ip_version": IP_VERSION,
    }


def render(cfg, names: list[str] | None = None) -> dict[str, str]:
    """Generated file path (relative) -> text."""
    env = _env()
    ctx = context(cfg)
    out = {}
    for rel, template in SOURCES.items():
        if names is None or rel in names:
            out[rel] = env.get_template(template).render(**ctx)
    out["regmap.json"] = register_map_json(cfg)
    out["config.yaml"] = cfg.to_yaml()          # what the project was generated from (load_config reads it)
    layout, lanes = ctx["layout"], ctx["plan"].lanes
    out["layout.json"] = json.dumps({
        "word_bits": layout.word_bits, "total_words": layout.total_words, "align_words": layout.align_words,
        "tensors": [{"key": s.key, "offset": s.offset, "shape": list(s.shape), "class": s.tensor_class}
                    for s in layout.slots]}
        | ({"lanes": {"count": lanes.count, "lane_bits": lanes.lane_bits, "lane_words": lanes.lane_words,
                      "args": list(lanes.names), "bundles": list(lanes.bundles)}} if lanes.count > 1 else {}),
        indent=1)
    # each tap's region of the activations buffer (hls.plan.ActRegion): `parts` parts (a head each in a per-head
    # tap) of part_words words, part_stride words apart; image i's region at word i x image_stride
    plan = ctx["plan"]
    out["taps.json"] = json.dumps([{"id": i, "name": t, "words": r.words, "shape": list(r.shape), "parts": r.parts,
                                    "part_words": r.part_words, "part_stride": r.part_stride,
                                    "image_stride": plan.max_tap_words}
                                   for i, (t, r) in enumerate(plan.tap_regions.items())], indent=1)
    return out


def write(cfg, out_dir: Path) -> list[Path]:
    """Write every generated file under ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    paths = []
    for rel, text in render(cfg).items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths
