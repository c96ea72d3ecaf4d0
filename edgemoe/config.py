"""The typed configuration: model, precision profile and hardware.

A :class:`Config` is validated as a whole when it is made: every error names
the field, its value and what is allowed (:class:`ConfigError`).  The named
precision profiles live here with :class:`PrecisionProfile` (a config that
names none gets :data:`DEFAULT_PROFILE`); the named model presets in
:mod:`edgemoe.presets`; board facts in :mod:`edgemoe.boards`.  A config is
read from a preset name or a YAML file plus ``section.field=value`` overrides
by :func:`edgemoe.loading.load_config`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

import yaml

from edgemoe.errors import ConfigError  # noqa: F401 - re-exported: the config's error
from edgemoe.golden.numerics.fixed import FixedType, FixedTypeError


def _doc(text: str, **kw) -> Any:
    return field(metadata={"doc": text}, **kw)


# --- names ---------------------------------------------------------------------

@dataclass(frozen=True)
class NameRule:
    """What a name may hold.  Names reach generated C++, Makefiles, Tcl and file names: ASCII, bounded."""

    pattern: re.Pattern
    allowed: str

    def check(self, path: str, value: Any, hint: str = "") -> None:
        if not isinstance(value, str) or not self.pattern.fullmatch(value):
            raise ConfigError(path, value, self.allowed + hint)


CONFIG_NAME = NameRule(re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}"),
                       "must start with a letter and hold only ASCII letters, digits, '_', '.' and '-' "
                       "(at most 64 characters)")
PROFILE_NAME = NameRule(re.compile(r"[A-Za-z][A-Za-z0-9_.+-]{0,63}"),
                        "must start with a letter and hold only ASCII letters, digits, '_', '.', '+' and '-' "
                        "(at most 64 characters)")
IDENTIFIER = NameRule(re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}"),
                      "must be an identifier: ASCII letters, digits and '_', not starting with a digit "
                      "(at most 64 characters)")


# --- sizes -----------------------------------------------------------------------

#: largest value of each model size: generous for real models, small enough that a typo is an
#: error here rather than an out-of-memory later
MODEL_LIMITS = {"img_height": 8192, "img_width": 8192, "in_chans": 64, "patch_size": 128, "embed_dim": 8192,
                "depth": 128, "num_heads": 128, "num_experts": 1024, "expert_hidden": 65536, "head_channels": 4096}
MAX_MLP_HIDDEN = 65536
MAX_PATCHES = 8192          # 1024x2048 (full Cityscapes) at patch 16
MAX_TASKS = 256             # the kernel's task register is 8 bits
MAX_OUT_CHANNELS = 4096
#: the generated kernel counts words (weights, tap outputs) and offsets in C ints
KERNEL_MAX_WORDS = 2**31 - 1


# --- model -------------------------------------------------------------------

HEAD_TYPES = {"uphead": "M3ViT VisionTransformerUpHead: LayerNorm, conv3x3+BN+ReLU+2x upsample stages, conv1x1"}


@dataclass(frozen=True)
class TaskConfig:
    """One task of the multi-task model: its gate in every MoE block and its head."""

    name: str = _doc("task name, used in state-dict keys (decoders.<name>)")
    out_channels: int = _doc("channels of the head's output (classes for segmentation, 1 for depth)")
    head: str = _doc("head type; one of: " + ", ".join(HEAD_TYPES), default="uphead")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the M3ViT backbone and its task heads."""

    img_height: int = _doc("input height in pixels", default=128)
    img_width: int = _doc("input width in pixels", default=256)
    in_chans: int = _doc("input channels", default=3)
    patch_size: int = _doc("square patch side in pixels", default=16)
    embed_dim: int = _doc("token width", default=192)
    depth: int = _doc("number of transformer blocks", default=12)
    num_heads: int = _doc("attention heads per block", default=3)
    mlp_ratio: float = _doc("dense MLP hidden width / embed_dim", default=4.0)
    moe_blocks: tuple[int, ...] = _doc(
        "indices of MoE blocks (YAML/CLI also take 'odd', 'even', 'all', 'none')",
        default=(1, 3, 5, 7, 9, 11))
    num_experts: int = _doc("experts per MoE block", default=16)
    top_k: int = _doc("experts chosen per token", default=2)
    expert_hidden: int = _doc("hidden width of each expert MLP", default=384)
    tasks: tuple[TaskConfig, ...] = _doc(
        "the tasks (one gate per task per MoE block, one head per task)",
        default=(TaskConfig("semseg", 7), TaskConfig("depth", 1)))
    ln_eps: float = _doc("LayerNorm epsilon", default=1e-6)
    head_channels: int = _doc("channels inside each task head", default=256)

    # derived facts (one formula each)
    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (rows, cols)."""
        return self.img_height // self.patch_size, self.img_width // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def num_tokens(self) -> int:
        """Patches plus the cls token."""
        return self.num_patches + 1

    @property
    def patch_dim(self) -> int:
        """Length of one flattened patch (in_chans * patch_size**2)."""
        return self.in_chans * self.patch_size ** 2

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task_index(self, task: str | int) -> int:
        if isinstance(task, int) and not isinstance(task, bool):
            if 0 <= task < len(self.tasks):
                return task
        elif task in self.task_names:
            return self.task_names.index(task)
        raise ConfigError("task", task, f"must be one of {', '.join(self.task_names)} "
                                        f"(or an index 0..{len(self.tasks) - 1})")

    def is_moe(self, block: int) -> bool:
        return block in self.moe_blocks

    @property
    def upsample_stages(self) -> int:
        """2x upsamplings in the head: log2(patch_size)."""
        return int(math.log2(self.patch_size))


# --- precision ----------------------------------------------------------------

@dataclass(frozen=True)
class PrecisionProfile:
    """Fixed-point type of every tensor class, and the approximation tables' sizes.

    Each type field holds a :class:`FixedType` (``fixed<bits,int,ROUND,OVF>``).
    """

    name: str = _doc("profile name")
    pixel: FixedType = _doc("input pixels in [0, 1]")
    act: FixedType = _doc("activations: residual stream, LayerNorm/linear/GELU outputs")
    accum: FixedType = _doc("the compute unit's exact accumulator (every matmul)")
    weight: FixedType = _doc("linear-layer weights (qkv, proj, fc1/fc2, experts, gates)")
    patch_weight: FixedType = _doc("patch-embedding weights")
    bias: FixedType = _doc("biases of MLP / expert / patch-embed layers")
    attn_bias: FixedType = _doc("biases of qkv and proj")
    embed: FixedType = _doc("cls token and position embedding")
    ln_gamma: FixedType = _doc("LayerNorm scale")
    ln_beta: FixedType = _doc("LayerNorm shift")
    ln_centered: FixedType = _doc("LayerNorm: x - mean, the operand of the variance")
    ln_inv_std: FixedType = _doc("LayerNorm: rsqrt(var + eps)")
    ln_norm: FixedType = _doc("LayerNorm: (x - mean) * inv_std, before gamma/beta")
    qkv: FixedType = _doc("attention operands q, k, v")
    attn_score: FixedType = _doc("scaled scores q.k / sqrt(head_dim)")
    exp: FixedType = _doc("exp output, in (0, 1]: softmax numerators")
    softmax_sum: FixedType = _doc("softmax running / final sum of exps")
    softmax_inv: FixedType = _doc("softmax state stored per row: 1 / sum")
    attn_prob: FixedType = _doc("normalised attention probabilities fed to A*V")
    gelu_table: FixedType = _doc("entries of the GELU correction table d(t) = t*Phi(-t)")
    gate_logit: FixedType = _doc("gate logits x @ w_gate")
    gate_score: FixedType = _doc("gate softmax probabilities used as expert scores")
    table_frac_bits: int = _doc("fraction bits of exp2 / reciprocal / rsqrt table entries", default=20)
    exp_table_bits: int = _doc("log2 of exp2 table segments on [0, 1)", default=8)
    recip_table_bits: int = _doc("log2 of reciprocal table segments on [1, 2)", default=8)
    rsqrt_table_bits: int = _doc("log2 of rsqrt table segments per unit on [1, 4)", default=7)
    gelu_step_log2: int = _doc("GELU table step is 2**-gelu_step_log2", default=5)
    gelu_range: float = _doc("GELU table covers |x| in [0, gelu_range); d = 0 beyond", default=5.5)

    @classmethod
    def type_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.type in (FixedType, "FixedType"))


# --- named precision profiles ---------------------------------------------------

_T = FixedType.parse

#: Edge-MoE's storage widths of the weights and input (shared by the profiles below):
#: linear weights <16,2>, attention biases <16,7>, other biases, embeddings and LN
#: <16,5>, patch-embed weights <16,0>, pixels ufixed<8,0>.
_EDGE_MOE_WEIGHTS = dict(
    pixel=_T("ufixed<8,0,RND,SAT>"),
    weight=_T("fixed<16,2,RND_CONV,SAT>"),
    patch_weight=_T("fixed<16,0,RND_CONV,SAT>"),
    bias=_T("fixed<16,5,RND_CONV,SAT>"),
    attn_bias=_T("fixed<16,7,RND_CONV,SAT>"),
    embed=_T("fixed<16,5,RND_CONV,SAT>"),
    ln_gamma=_T("fixed<16,5,RND_CONV,SAT>"),
    ln_beta=_T("fixed<16,5,RND_CONV,SAT>"),
)

#: Precision profiles.  w16a32 is Edge-MoE's (activations <32,10>); w16a16 halves
#: the datapath; the rest of each profile sizes the intermediates for exactness.
PRECISION_PROFILES: dict[str, PrecisionProfile] = {p.name: p for p in (
    PrecisionProfile(
        name="w16a32", **_EDGE_MOE_WEIGHTS,
        act=_T("fixed<32,10,TRN,SAT>"),
        accum=_T("fixed<60,24,TRN,SAT>"),
        ln_centered=_T("fixed<24,10,TRN,SAT>"),
        ln_inv_std=_T("ufixed<32,11,TRN,SAT>"),
        ln_norm=_T("fixed<24,6,TRN,SAT>"),
        qkv=_T("fixed<24,8,TRN,SAT>"),
        attn_score=_T("fixed<24,8,TRN,SAT>"),
        exp=_T("ufixed<18,1,RND,SAT>"),
        softmax_sum=_T("ufixed<32,9,RND,SAT>"),
        softmax_inv=_T("ufixed<18,1,RND,SAT>"),
        attn_prob=_T("ufixed<18,1,RND,SAT>"),
        gelu_table=_T("ufixed<20,0,RND,SAT>"),
        gate_logit=_T("fixed<24,8,TRN,SAT>"),
        gate_score=_T("ufixed<18,1,RND,SAT>"),
        table_frac_bits=20, exp_table_bits=8, recip_table_bits=8, rsqrt_table_bits=7,
    ),
    PrecisionProfile(
        name="w16a16", **_EDGE_MOE_WEIGHTS,
        act=_T("fixed<16,6,RND,SAT>"),
        accum=_T("fixed<48,22,TRN,SAT>"),
        ln_centered=_T("fixed<16,6,RND,SAT>"),
        ln_inv_std=_T("ufixed<24,11,RND,SAT>"),
        ln_norm=_T("fixed<16,6,RND,SAT>"),
        qkv=_T("fixed<16,6,RND,SAT>"),
        attn_score=_T("fixed<16,6,RND,SAT>"),
        exp=_T("ufixed<16,1,RND,SAT>"),
        softmax_sum=_T("ufixed<24,9,RND,SAT>"),
        softmax_inv=_T("ufixed<16,1,RND,SAT>"),
        attn_prob=_T("ufixed<16,1,RND,SAT>"),
        gelu_table=_T("ufixed<16,0,RND,SAT>"),
        gate_logit=_T("fixed<16,6,RND,SAT>"),
        gate_score=_T("ufixed<16,1,RND,SAT>"),
        table_frac_bits=18, exp_table_bits=6, recip_table_bits=7, rsqrt_table_bits=6,
    ),
)}
# 8-bit weights on top of w16a16: the narrow profile "one switch away".
PRECISION_PROFILES["w8a16"] = PrecisionProfile(**{
    **PRECISION_PROFILES["w16a16"].__dict__, "name": "w8a16",
    "weight": _T("fixed<8,0,RND_CONV,SAT>"), "patch_weight": _T("fixed<8,0,RND_CONV,SAT>")})


#: the profile of a config that names none
DEFAULT_PROFILE = "w16a32"
#: ``precision.profile``: not a field of the profile but the switch between them (YAML ``precision: NAME``)
PROFILE_SWITCH_DOC = ("the named profile every field below starts from: " + ", ".join(PRECISION_PROFILES)
                      + "; fields set as well override it and make the name <profile>+custom")


def precision_profile(name: str) -> PrecisionProfile:
    if not isinstance(name, str) or name not in PRECISION_PROFILES:
        raise ConfigError("precision", name, f"must be one of {', '.join(PRECISION_PROFILES)}")
    return PRECISION_PROFILES[name]


# --- hardware -----------------------------------------------------------------

BUFFERS = ("image", "weights", "activations")  # activations: output tokens or a debug tap


@dataclass(frozen=True)
class HardwareConfig:
    """Target board and the accelerator's structural parameters."""

    board: str = _doc("target board (see edgemoe.boards)", default="zcu102")
    part: str = _doc("FPGA part; empty = the board's part", default="")
    clock_mhz: float = _doc("kernel clock in MHz", default=300.0)
    cu_in: int = _doc("compute unit block: inputs consumed per cycle", default=16)
    cu_out: int = _doc("compute unit block: outputs produced per cycle", default=16)
    attn_parallel: int = _doc("attention queries in flight per group (P)", default=4)
    axi_width: int = _doc("m_axi data width in bits", default=256)
    weight_lanes: int = _doc("m_axi pointers (bundles, memory ports) the weight bus word is striped over", default=1)
    moe_batch: int = _doc("images of a call whose MoE blocks run together: each active expert's weights stream "
                          "once for all of them (their residual streams, LayerNorm rows and MoE sums wait on "
                          "chip); 1 = image by image", default=1)
    bundles: tuple[tuple[str, str], ...] = _doc(
        "m_axi bundle of each buffer (" + ", ".join(BUFFERS) + ")",
        default=(("image", "gmem0"), ("weights", "gmem1"), ("activations", "gmem2")))

    @property
    def bundle_of(self) -> dict[str, str]:
        return dict(self.bundles)


#: the most images whose MoE blocks the kernel runs together (``hardware.moe_batch``): each keeps its residual
#: stream, LayerNorm rows and MoE sums on chip
MAX_MOE_BATCH = 16

#: hardware fields added after designs were built and recorded by digest (bitstreams/manifest.json), with the
#: value that builds the earlier hardware: left out of to_dict() at that value, so those digests stay valid
HARDWARE_SINCE_DIGEST = {"weight_lanes": 1, "moe_batch": 1}


@dataclass(frozen=True)
class Config:
    """Model + precision + hardware: everything a generated accelerator depends on."""

    model: ModelConfig = field(default_factory=ModelConfig)
    precision: PrecisionProfile = None  # type: ignore[assignment]
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.precision is None:
            object.__setattr__(self, "precision", precision_profile(DEFAULT_PROFILE))
        validate(self)

    def file_label(self) -> str:
        """The name, where it becomes part of a file name; ConfigError unless it is a valid config name."""
        CONFIG_NAME.check("name", self.name)
        return self.name

    def replace(self, **sections) -> "Config":
        return dataclasses.replace(self, **sections)

    def to_dict(self) -> dict:
        hardware = _to_plain(self.hardware)
        for name, default in HARDWARE_SINCE_DIGEST.items():
            if hardware[name] == default:
                del hardware[name]
        return {"name": self.name, "model": _to_plain(self.model),
                "precision": _to_plain(self.precision), "hardware": hardware}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def digest(self) -> str:
        """SHA-256 of the canonical config (hex); what a bitstream is built for.

        Names (of the config and of the precision profile) are left out: two
        configs that build the same hardware have the same digest.
        """
        data = self.to_dict()
        data["name"] = ""
        data["precision"] = {k: v for k, v in data["precision"].items() if k != "name"}
        canon = json.dumps(data, sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, FixedType):
        return str(obj)
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple) and obj and isinstance(obj[0], tuple) and len(obj[0]) == 2 \
            and all(isinstance(x, str) for x in obj[0]):
        return {k: v for k, v in obj}
    if isinstance(obj, tuple):
        return [_to_plain(x) for x in obj]
    return obj


# --- building sections from plain data (YAML / CLI values, see edgemoe.loading) ---------

def _coerce(section: str, name: str, hint: Any, value: Any) -> Any:
    """Convert a YAML/CLI value to the field's type, with a field-naming error."""
    path = f"{section}.{name}"
    try:
        if hint is FixedType:
            return FixedType.parse(value)
        if hint is bool:
            if isinstance(value, str):
                return {"true": True, "false": False, "1": True, "0": False}[value.lower()]
            return bool(value)
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            return str(value)
    except FixedTypeError as e:
        raise ConfigError(path, value, str(e)) from None
    except (ValueError, TypeError, KeyError):
        raise ConfigError(path, value, f"must be of type {getattr(hint, '__name__', hint)}") from None
    return value


def _moe_blocks(value: Any, depth: int) -> tuple[int, ...]:
    if isinstance(value, str):
        key = value.strip().lower()
        named = {"odd": range(1, depth, 2), "even": range(0, depth, 2), "all": range(depth), "none": ()}
        if key in named:
            return tuple(named[key])
        value = [v for v in key.replace(",", " ").split() if v]
    try:
        blocks = []
        for v in value:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            blocks.append(int(v))
        return tuple(sorted(blocks))
    except (TypeError, ValueError):
        raise ConfigError("model.moe_blocks", value,
                          "must be a list of block indices or one of 'odd', 'even', 'all', 'none'") from None


def _tasks(value: Any) -> tuple[TaskConfig, ...]:
    if isinstance(value, dict):  # {semseg: 7, depth: 1}
        value = [{"name": k, "out_channels": v} for k, v in value.items()]
    out = []
    if not isinstance(value, (list, tuple)):
        raise ConfigError("model.tasks", value, "must be a list of {name, out_channels, head}")
    for i, t in enumerate(value):
        if isinstance(t, TaskConfig):
            out.append(t)
            continue
        if not isinstance(t, dict) or "name" not in t or "out_channels" not in t:
            raise ConfigError(f"model.tasks[{i}]", t, "must be a mapping with name and out_channels")
        unknown = set(t) - {"name", "out_channels", "head"}
        if unknown:
            raise ConfigError(f"model.tasks[{i}]", t,
                              f"unknown keys {sorted(map(str, unknown))}; allowed: name, out_channels, head")
        out.append(TaskConfig(str(t["name"]), _coerce(f"model.tasks[{i}]", "out_channels", int, t["out_channels"]),
                              str(t.get("head", "uphead"))))
    return tuple(out)


def _bundles(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict):
        value = list(value.items())
    try:
        return tuple((str(k), str(v)) for k, v in value)
    except (TypeError, ValueError):
        raise ConfigError("hardware.bundles", value, "must map buffers (" + ", ".join(BUFFERS) + ") to bundle names") from None


def build_section(cls: type, section: str, base: Any, updates: dict) -> Any:
    """``base`` (a ``cls`` instance) with ``updates`` applied, each coerced and checked."""
    if not isinstance(updates, dict):
        raise ConfigError(section, updates, "must be a mapping of field: value")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    changes = {}
    for key, value in updates.items():
        if key not in names:
            raise ConfigError(f"{section}.{key}", value, f"unknown field; fields of {section}: {', '.join(sorted(names))}")
        if key == "moe_blocks":
            depth = _coerce(section, "depth", int, updates["depth"]) if "depth" in updates else base.depth
            _at_most("model.depth", depth, MODEL_LIMITS["depth"])   # before 'all' lists every block
            changes[key] = _moe_blocks(value, depth)
        elif key == "tasks":
            changes[key] = _tasks(value)
        elif key == "bundles":
            changes[key] = _bundles(value)
        else:
            changes[key] = _coerce(section, key, hints[key], value)
    return dataclasses.replace(base, **changes)


# --- validation ------------------------------------------------------------------------

def _positive(path: str, value: int | float) -> None:
    if not value > 0:
        raise ConfigError(path, value, "must be > 0")


def _at_most(path: str, value: int | float, limit: int | float, why: str = "") -> None:
    if value > limit:
        limit_text = f"{limit:g}" if isinstance(limit, float) else str(limit)
        raise ConfigError(path, value, f"must be <= {limit_text}" + (f" ({why})" if why else ""))


def validate(cfg: Config) -> None:
    """Check a config as a whole; raise :class:`ConfigError` naming the first bad field."""
    from edgemoe.boards import BOARDS
    from edgemoe.golden.numerics.widths import check_precision

    m, p, h = cfg.model, cfg.precision, cfg.hardware
    CONFIG_NAME.check("name", cfg.name)
    for name in ("img_height", "img_width", "in_chans", "patch_size", "embed_dim", "depth", "num_heads",
                 "num_experts", "top_k", "expert_hidden", "head_channels"):
        _positive(f"model.{name}", getattr(m, name))
    _positive("model.mlp_ratio", m.mlp_ratio)
    if not 0 < m.ln_eps < 1:
        raise ConfigError("model.ln_eps", m.ln_eps, "must be in (0, 1)")
    for name, limit in MODEL_LIMITS.items():
        _at_most(f"model.{name}", getattr(m, name), limit)
    _at_most("model.mlp_ratio", m.mlp_ratio, MAX_MLP_HIDDEN / m.embed_dim,
             f"embed_dim * mlp_ratio is the MLP's hidden width, at most {MAX_MLP_HIDDEN}")
    for side in ("img_height", "img_width"):
        if getattr(m, side) % m.patch_size:
            raise ConfigError(f"model.{side}", getattr(m, side),
                              f"must be a multiple of model.patch_size ({m.patch_size})")
    if m.patch_size & (m.patch_size - 1):
        raise ConfigError("model.patch_size", m.patch_size, "must be a power of two (the heads upsample by 2x stages)")
    if m.num_patches > MAX_PATCHES:
        raise ConfigError("model.img_height", m.img_height,
                          f"with img_width {m.img_width} and patch_size {m.patch_size} the model has "
                          f"{m.num_patches} patches ({m.num_tokens} tokens); at most {MAX_PATCHES} patches")
    if m.num_heads * m.num_tokens ** 2 > KERNEL_MAX_WORDS:
        raise ConfigError("model.num_heads", m.num_heads,
                          f"the attention scores of {m.num_tokens} tokens (num_heads x tokens^2 = "
                          f"{m.num_heads * m.num_tokens ** 2} words) exceed 2**31 - 1 words, the kernel's word "
                          "counts are C ints; use fewer heads or a smaller image")
    if m.embed_dim % m.num_heads:
        raise ConfigError("model.embed_dim", m.embed_dim, f"must be divisible by model.num_heads ({m.num_heads})")
    if not float(m.embed_dim * m.mlp_ratio).is_integer():
        raise ConfigError("model.mlp_ratio", m.mlp_ratio, f"embed_dim * mlp_ratio must be an integer (embed_dim {m.embed_dim})")
    bad = [b for b in m.moe_blocks if not 0 <= b < m.depth]
    if bad:
        raise ConfigError("model.moe_blocks", list(m.moe_blocks), f"block indices must be in 0..{m.depth - 1}")
    if len(set(m.moe_blocks)) != len(m.moe_blocks):
        raise ConfigError("model.moe_blocks", list(m.moe_blocks), "must not repeat a block")
    if m.top_k > m.num_experts:
        raise ConfigError("model.top_k", m.top_k, f"must be <= model.num_experts ({m.num_experts})")
    if not m.tasks:
        raise ConfigError("model.tasks", [], "must name at least one task")
    if len(m.tasks) > MAX_TASKS:
        raise ConfigError("model.tasks", f"{len(m.tasks)} tasks",
                          f"at most {MAX_TASKS} tasks (the kernel's task register is 8 bits)")
    names = [t.name for t in m.tasks]
    if len(set(names)) != len(names):
        raise ConfigError("model.tasks", names, "task names must be unique")
    for i, t in enumerate(m.tasks):
        IDENTIFIER.check(f"model.tasks[{i}].name", t.name)
        if t.out_channels < 1:
            raise ConfigError(f"model.tasks[{i}].out_channels", t.out_channels, "must be >= 1")
        _at_most(f"model.tasks[{i}].out_channels", t.out_channels, MAX_OUT_CHANNELS)
        if t.head not in HEAD_TYPES:
            raise ConfigError(f"model.tasks[{i}].head", t.head, f"must be one of {', '.join(HEAD_TYPES)}")

    if h.board not in BOARDS:
        raise ConfigError("hardware.board", h.board, f"must be one of {', '.join(BOARDS)}")
    if h.part and h.part != BOARDS[h.board].part:
        raise ConfigError("hardware.part", h.part, f"board {h.board} carries {BOARDS[h.board].part}; leave part empty or use that")
    if not 10 <= h.clock_mhz <= 800:
        raise ConfigError("hardware.clock_mhz", h.clock_mhz, "must be in 10..800 MHz")
    for name in ("cu_in", "cu_out", "attn_parallel"):
        _positive(f"hardware.{name}", getattr(h, name))
    if h.axi_width not in (32, 64, 128, 256, 512, 1024):
        raise ConfigError("hardware.axi_width", h.axi_width, "must be one of 32, 64, 128, 256, 512, 1024 bits")
    if not isinstance(h.moe_batch, int) or isinstance(h.moe_batch, bool) or not 1 <= h.moe_batch <= MAX_MOE_BATCH:
        raise ConfigError("hardware.moe_batch", h.moe_batch, f"must be an integer in 1..{MAX_MOE_BATCH}")
    if h.moe_batch * m.num_tokens > 0xFFFF:
        raise ConfigError("hardware.moe_batch", h.moe_batch,
                          f"x {m.num_tokens} tokens must be <= 65535 (an expert queue entry is a 16-bit image x "
                          f"token index): at most {0xFFFF // m.num_tokens}")
    if h.attn_parallel > m.num_tokens:
        raise ConfigError("hardware.attn_parallel", h.attn_parallel, f"must be <= the token count ({m.num_tokens})")
    # every linear layer runs on the one compute unit: its dims must tile by the block
    linear_in = {"embed_dim": m.embed_dim, "mlp hidden (embed_dim*mlp_ratio)": m.mlp_hidden,
                 "model.expert_hidden": m.expert_hidden, "patch_dim (in_chans*patch_size**2)": m.patch_dim,
                 "head_dim (embed_dim/num_heads)": m.head_dim}
    linear_out = {"embed_dim": m.embed_dim, "mlp hidden (embed_dim*mlp_ratio)": m.mlp_hidden,
                  "model.expert_hidden": m.expert_hidden}
    for what, dim in linear_in.items():
        if dim % h.cu_in:
            raise ConfigError("hardware.cu_in", h.cu_in, f"must divide every compute-unit input dim; {what} = {dim}")
    for what, dim in linear_out.items():
        if dim % h.cu_out:
            raise ConfigError("hardware.cu_out", h.cu_out, f"must divide every compute-unit output dim; {what} = {dim}")
    bundles = h.bundle_of
    missing = [b for b in BUFFERS if b not in bundles]
    extra = [b for b in bundles if b not in BUFFERS]
    if missing or extra:
        raise ConfigError("hardware.bundles", dict(bundles),
                          f"must map exactly the buffers {', '.join(BUFFERS)}" + (f"; missing {missing}" if missing else "")
                          + (f"; unknown {extra}" if extra else ""))
    for b, name in bundles.items():
        IDENTIFIER.check(f"hardware.bundles.{b}", name)
    ports = BOARDS[h.board].ports  # each bundle is linked to a memory port of its own
    if len(set(bundles.values())) > ports:
        raise ConfigError("hardware.bundles", dict(bundles),
                          f"names {len(set(bundles.values()))} m_axi bundles; board {h.board} has {ports} memory "
                          f"ports, so 1..{ports} bundles")
    _check_weight_lanes(h, p, ports)

    _check_weight_words(m)
    _check_profile_name(p)
    check_precision(m, p)


def _check_weight_lanes(h: HardwareConfig, p: PrecisionProfile, ports: int) -> None:
    """The weight bus word splits into ``weight_lanes`` whole lanes, and their bundles fit the board's ports."""
    from edgemoe.hls.layout import WeightLanes, lane_counts, word_bits

    wb = word_bits(p)
    allowed = lane_counts(h.axi_width, wb)
    if h.weight_lanes not in allowed:
        raise ConfigError("hardware.weight_lanes", h.weight_lanes,
                          f"must split the {h.axi_width}-bit bus word (hardware.axi_width) into lanes of >= 32 bits, "
                          f"each a whole number of {wb}-bit weight words: one of {', '.join(map(str, allowed))}")
    if h.weight_lanes == 1:
        return
    lanes = WeightLanes(h.weight_lanes, h.axi_width, wb, h.bundle_of["weights"])
    others = {b for name, b in h.bundle_of.items() if name != "weights"}
    clash = sorted(others & set(lanes.bundles))
    if clash:
        raise ConfigError("hardware.bundles", dict(h.bundle_of),
                          f"names {', '.join(clash)}, the bundle of a weight lane ({', '.join(lanes.bundles)}); "
                          f"give the other buffers other bundles")
    need = len(others) + h.weight_lanes
    if need > ports:
        raise ConfigError("hardware.weight_lanes", h.weight_lanes,
                          f"{h.weight_lanes} lane bundles + {len(others)} of the other buffers = {need} m_axi "
                          f"bundles; board {h.board} has {ports} memory ports, so at most {ports - len(others)} "
                          f"lanes with these bundles")


def _check_weight_words(m: ModelConfig) -> None:
    from edgemoe.hls.layout import tensor_order

    words = sum(math.prod(shape) for _, shape, _ in tensor_order(m))
    if words > KERNEL_MAX_WORDS:
        raise ConfigError("model", f"{words} weight words",
                          "the weights (depth, embed_dim, MLP / expert widths, experts) must stay below 2**31 words, "
                          "the kernel's weight offsets are C ints")


def _check_profile_name(p: PrecisionProfile) -> None:
    """A profile may carry a built-in profile's name only if it is that profile."""
    PROFILE_NAME.check("precision.name", p.name)
    builtin = PRECISION_PROFILES.get(p.name)
    if builtin is not None and builtin != p:
        differ = [f.name for f in fields(p) if getattr(p, f.name) != getattr(builtin, f.name)]
        shown = ", ".join(differ[:4]) + (f" and {len(differ) - 4} more fields" if len(differ) > 4 else "")
        raise ConfigError("precision.name", p.name,
                          f"names a built-in profile, but this profile's {shown} differ from it; "
                          f"switch profiles with precision.profile={p.name}, or give this profile another name")
