"""Backbone weights as raw fixed-point words: the one float -> hardware conversion.

Every backbone tensor of an M3ViT state dict gets a tensor class (a field of
the precision profile) by :data:`TENSOR_CLASSES`; the heads stay float (they
run on the host).  The attention scale's non-power-of-two factor is folded
into the query rows of qkv here (see :func:`edgemoe.golden.attention.attention_scale`),
and the pixel code scale into the patch-embedding weights (:func:`pixel_fold`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch

from .attention import attention_scale
from .numerics.fixed import FixedType, from_float, to_float
from .numerics.overflow import OverflowCounter, OverflowStats

#: (key pattern, precision-profile field) in match order; keys are M3ViT's.
TENSOR_CLASSES: tuple[tuple[str, str], ...] = (
    (r"backbone\.patch_embed\.proj\.weight", "patch_weight"),
    (r"backbone\.patch_embed\.proj\.bias", "bias"),
    (r"backbone\.(cls_token|pos_embed)", "embed"),
    (r"backbone\.blocks\.\d+\.norm[12]\.weight", "ln_gamma"),
    (r"backbone\.blocks\.\d+\.norm[12]\.bias", "ln_beta"),
    (r"backbone\.blocks\.\d+\.attn\.(qkv|proj)\.weight", "weight"),
    (r"backbone\.blocks\.\d+\.attn\.(qkv|proj)\.bias", "attn_bias"),
    (r"backbone\.blocks\.\d+\.mlp\.(fc[12]|experts\.(htoh4|h4toh))\.weight", "weight"),
    (r"backbone\.blocks\.\d+\.mlp\.(fc[12]|experts\.(htoh4|h4toh))\.bias", "bias"),
    (r"backbone\.blocks\.\d+\.mlp\.gate\.\d+\.w_gate", "weight"),
)


def tensor_class(key: str) -> str | None:
    """Precision-profile field of a backbone key, or None for keys that stay float."""
    for pattern, cls in TENSOR_CLASSES:
        if re.fullmatch(pattern, key):
            return cls
    return None


@dataclass(frozen=True)
class QuantizedTensor:
    """Raw words of one tensor and the type they are in."""

    raw: torch.Tensor
    type: FixedType
    tensor_class: str

    def to_float(self) -> torch.Tensor:
        return to_float(self.raw, self.type)


@dataclass(frozen=True)
class WeightSaturation:
    """Values of one float tensor outside its fixed-point type's range (clamped by SAT, folded by WRAP)."""

    key: str
    stats: OverflowStats    # overflows of total values, in stats.type
    max_abs: float          # largest |value| quantised (after the query / pixel folds)

    def notice(self) -> str:
        t, s = self.stats.type, self.stats
        effect = "saturate" if t.overflow.startswith("SAT") else "wrap around"
        return (f"{self.key}: {s.overflows} of {s.total} values {effect} in {t} (max |w| {self.max_abs:.4g}, "
                f"the type holds {t.min_value:.4g}..{t.max_value:.4g})")


class QuantizedWeights(dict):
    """key -> :class:`QuantizedTensor` for every backbone tensor (M3ViT key names).

    ``saturation`` holds a :class:`WeightSaturation` per tensor that did not fit its
    type when quantised (empty for words unpacked from a file).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saturation: dict[str, WeightSaturation] = {}

    def raw(self, key: str) -> torch.Tensor:
        return self[key].raw

    def saturation_notices(self) -> list[str]:
        """One line per saturated tensor: how many values, max |w| and the type's range."""
        return [s.notice() for s in self.saturation.values()]


def nonfinite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """One line per floating tensor holding NaN or inf, e.g. ``decoders.semseg.conv_4.bias: 2 NaN of 7 values``."""
    lines = []
    for key, value in tensors.items():
        if not value.is_floating_point():
            continue
        nan, inf = int(value.isnan().sum()), int(value.isinf().sum())
        if nan or inf:
            what = " and ".join(f"{n} {name}" for n, name in ((nan, "NaN"), (inf, "inf")) if n)
            lines.append(f"{key}: {what} of {value.numel()} values")
    return lines


def query_fold(model_cfg) -> float:
    """Factor folded into the query rows of qkv (1.0 when head_dim is a power of 4)."""
    return attention_scale(model_cfg.head_dim)[1]


def pixel_fold(pixel: FixedType) -> float:
    """Factor folded into the patch-embedding weights: pixel words are codes / 2**b, not / (2**b - 1)."""
    return (1 << pixel.bits) / ((1 << pixel.bits) - 1)


def quantize_weights(cfg, state_dict: dict[str, torch.Tensor]) -> QuantizedWeights:
    """Quantise the backbone of a float M3ViT state dict to ``cfg.precision``.

    Values outside a tensor's type are recorded in ``saturation`` (and counted
    under ``weights.<key>`` by an active OverflowCounter); NaN or inf in a
    backbone tensor is a ValueError naming every such tensor.
    """
    p = cfg.precision
    fold = query_fold(cfg.model)
    d = cfg.model.embed_dim
    backbone = {k: v for k, v in state_dict.items() if tensor_class(k) is not None}
    bad = nonfinite(backbone)
    if bad:
        raise ValueError(f"non-finite values in {len(bad)} backbone tensor(s): {'; '.join(bad)}")
    out = QuantizedWeights()
    largest: dict[str, float] = {}
    with OverflowCounter() as ovf:
        for key, value in backbone.items():
            cls = tensor_class(key)
            x = value.detach().to(torch.float64)
            if fold != 1.0 and re.fullmatch(r"backbone\.blocks\.\d+\.attn\.qkv\.(weight|bias)", key):
                x = x.clone()
                x[:d] *= fold
            if key == "backbone.patch_embed.proj.weight":
                x = x * pixel_fold(p.pixel)
            t: FixedType = getattr(p, cls)
            out[key] = QuantizedTensor(from_float(x, t, f"weights.{key}"), t, cls)
            largest[key] = x.abs().max().item() if x.numel() else 0.0
    out.saturation = {key: WeightSaturation(key, ovf.stats[f"weights.{key}"], largest[key])
                      for key in out if ovf.stats[f"weights.{key}"].overflows}
    missing = [k for k in _required_keys(cfg.model) if k not in out]
    if missing:
        raise KeyError(f"state dict lacks backbone tensors: {', '.join(missing)}")
    return out


def _required_keys(m) -> list[str]:
    keys = ["backbone.patch_embed.proj.weight", "backbone.patch_embed.proj.bias",
            "backbone.cls_token", "backbone.pos_embed"]
    for i in range(m.depth):
        pre = f"backbone.blocks.{i}."
        keys += [pre + s for s in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                   "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias")]
        if m.is_moe(i):
            keys += [pre + f"mlp.experts.{n}.{s}" for n in ("htoh4", "h4toh") for s in ("weight", "bias")]
            keys += [pre + f"mlp.gate.{t}.w_gate" for t in range(len(m.tasks))]
        else:
            keys += [pre + f"mlp.{n}.{s}" for n in ("fc1", "fc2") for s in ("weight", "bias")]
    return keys
