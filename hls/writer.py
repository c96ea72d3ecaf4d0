"""Fill the Jinja2 templates (hls/templates/) from a config: one function per output file.

Every number a template needs comes from the config, the golden numerics
(types, tables) or the weight layout; nothing is retyped here.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import jinja2

from edgemoe import __version__
from edgemoe.config import PrecisionProfile
from edgemoe.golden.attention import attention_scale
from edgemoe.golden.fixed_model import tap_schedule, tap_shapes, tap_type
from edgemoe.golden.numerics.fixed import ROUNDING_MODES
from edgemoe.golden.numerics.layernorm import eps_raw
from edgemoe.golden.numerics.tables import exp2_table, gelu_table, log2e_raw, recip_table, rsqrt_table

from .interface import STATUS, TAP_NONE, TOP, config_hash32, kernel_args, register_map_json
from .layout import WeightLayout
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


def _container_bits(bits: int) -> int:
    for w in (8, 16, 32, 64):
        if bits <= w:
            return w
    raise ValueError(f"{bits}-bit words do not fit a 64-bit container")


def tap_words(cfg) -> dict[str, int]:
    """Words per image of every tap, in schedule order (the kernel writes taps row-major)."""
    return {name: math.prod(shape) for name, shape in tap_shapes(cfg.model).items()}


def out_word_bits(cfg) -> int:
    """Output words hold every tap's raw words: 32 bits unless a tap type is wider."""
    widest = max((t.bits + (0 if t.signed else 1)) for name in tap_schedule(cfg.model)
                 if (t := tap_type(name, cfg.precision)) is not None)
    return 32 if widest <= 32 else 64


def context(cfg) -> dict:
    """Everything the templates read."""
    m, p, h = cfg.model, cfg.precision, cfg.hardware
    layout = WeightLayout.of(cfg)
    off = {s.key: s.offset for s in layout.slots}
    types = []
    for field in PrecisionProfile.type_fields():
        t = getattr(p, field)
        types.append({"field": field, "spelled": str(t), "bits": t.bits, "signed": t.signed, "frac": t.frac_bits,
                      "min_raw": t.min_raw, "max_raw": t.max_raw, "rounding": t.rounding, "overflow": t.overflow})
    taps = tap_schedule(m)
    tap_id = {name: i for i, name in enumerate(taps)}
    steps = ("norm1", "qkv", "scores", "softmax_max", "softmax_inv", "attn", "proj", "resid1", "norm2",
             "gate_logits", "gate_scores", "topk_idx", "topk_score", "expert_counts", "moe", "fc1", "fc2", "out")
    block_taps = {f"TAP_{s.upper()}": [tap_id.get(f"blocks.{b}.{s}", -1) for b in range(m.depth)] for s in steps}

    def per_block(suffix: str) -> list[int]:
        return [off.get(f"backbone.blocks.{b}.{suffix}", -1) for b in range(m.depth)]

    block_offsets = {
        "OFF_NORM1_W": per_block("norm1.weight"), "OFF_NORM1_B": per_block("norm1.bias"),
        "OFF_QKV_W": per_block("attn.qkv.weight"), "OFF_QKV_B": per_block("attn.qkv.bias"),
        "OFF_PROJ_W": per_block("attn.proj.weight"), "OFF_PROJ_B": per_block("attn.proj.bias"),
        "OFF_NORM2_W": per_block("norm2.weight"), "OFF_NORM2_B": per_block("norm2.bias"),
        "OFF_FC1_W": per_block("mlp.fc1.weight"), "OFF_FC1_B": per_block("mlp.fc1.bias"),
        "OFF_FC2_W": per_block("mlp.fc2.weight"), "OFF_FC2_B": per_block("mlp.fc2.bias"),
    }
    gate_offsets = [[off.get(f"backbone.blocks.{b}.mlp.gate.{t}.w_gate", -1) for t in range(len(m.tasks))]
                    for b in range(m.depth)]
    expert_offsets = {
        name: [[off.get(f"backbone.blocks.{b}.mlp.experts.{e}.{suffix}", -1) for e in range(m.num_experts)]
               for b in range(m.depth)]
        for name, suffix in (("OFF_EXP_W1", "htoh4.weight"), ("OFF_EXP_B1", "htoh4.bias"),
                             ("OFF_EXP_W2", "h4toh.weight"), ("OFF_EXP_B2", "h4toh.bias"))}
    n, par = m.num_tokens, h.attn_parallel
    attn_cycles = ((n - 1) // par) * n + (n - 1) % par + n
    row_words = max(3 * m.embed_dim, m.mlp_hidden, m.expert_hidden, m.patch_dim, m.num_experts)
    row_words = -(-row_words // h.cu_in) * h.cu_in
    words = tap_words(cfg)
    cu_bits = max(p.act.bits, p.qkv.bits, p.gate_logit.bits, p.pixel.bits + 1)
    depths = {"image": m.in_chans * m.img_height * m.img_width, "weights": layout.total_words,
              "activations": max(words.values())}
    return {
        "version": __version__, "cfg": cfg, "m": m, "h": h, "profile": p.name, "top": TOP,
        "rounding_modes": list(ROUNDING_MODES), "types": types,
        "rounding": {f: getattr(p, f).rounding for f in PrecisionProfile.type_fields()},
        "table_frac": p.table_frac_bits, "log2e": log2e_raw(p.table_frac_bits),
        "exp_bits": p.exp_table_bits, "recip_bits": p.recip_table_bits, "rsqrt_bits": p.rsqrt_table_bits,
        "gelu_step_log2": p.gelu_step_log2,
        "exp2_table": list(exp2_table(p.table_frac_bits, p.exp_table_bits)),
        "recip_table": list(recip_table(p.table_frac_bits, p.recip_table_bits)),
        "rsqrt_table": list(rsqrt_table(p.table_frac_bits, p.rsqrt_table_bits)),
        "gelu_table": list(gelu_table(p.gelu_table, p.gelu_step_log2, p.gelu_range)),
        "gelu_common_frac": max(p.act.frac_bits, p.gelu_table.frac_bits),
        "config_hash": config_hash32(cfg), "tap_none": TAP_NONE, "status": STATUS,
        "score_shift": attention_scale(m.head_dim)[0], "ln_eps_raw": eps_raw(m.ln_eps, p),
        "is_moe": ["true" if m.is_moe(b) else "false" for b in range(m.depth)],
        "attn_cycles": attn_cycles, "row_words": row_words, "layout": layout, "off": off,
        "pixel_word_bits": _container_bits(p.pixel.bits), "out_word_bits": out_word_bits(cfg),
        "cu_word_bits": cu_bits, "block_offsets": block_offsets, "gate_offsets": gate_offsets,
        "expert_offsets": expert_offsets, "taps": taps, "tap_id": tap_id, "block_taps": block_taps,
        "max_tap_words": max(words.values()), "args": kernel_args(cfg), "bundles": h.bundle_of,
        "depths": depths, "max_tiles": -(-max(3 * m.embed_dim, m.mlp_hidden, m.expert_hidden) // h.cu_out),
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
    layout = ctx["layout"]
    out["layout.json"] = json.dumps({
        "word_bits": layout.word_bits, "total_words": layout.total_words, "align_words": layout.align_words,
        "tensors": [{"key": s.key, "offset": s.offset, "shape": list(s.shape), "class": s.tensor_class}
                    for s in layout.slots]}, indent=1)
    out["taps.json"] = json.dumps([{"id": i, "name": t, "words": w} for i, (t, w) in
                                   enumerate(tap_words(cfg).items())], indent=1)
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
