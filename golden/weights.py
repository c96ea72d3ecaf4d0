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

import torch

from .attention import attention_scale
from .numerics.fixed import FixedType, from_float, to_float

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


class QuantizedWeights(dict):
    """key -> :class:`QuantizedTensor` for every backbone tensor (M3ViT key names)."""

    def raw(self, key: str) -> torch.Tensor:
        return self[key].raw


def query_fold(model_cfg) -> float:
    """Factor folded into the query rows of qkv (1.0 when head_dim is a power of 4)."""
    return attention_scale(model_cfg.head_dim)[1]


def pixel_fold(pixel: FixedType) -> float:
    """Factor folded into the patch-embedding weights: pixel words are codes / 2**b, not / (2**b - 1)."""
    return (1 << pixel.bits) / ((1 << pixel.bits) - 1)


def quantize_weights(cfg, state_dict: dict[str, torch.Tensor]) -> QuantizedWeights:
    """Quantise the backbone of a float M3ViT state dict to ``cfg.precision``.

    Overflows are counted under ``weights.<key>`` when an OverflowCounter is active.
    """
    p = cfg.precision
    fold = query_fold(cfg.model)
    d = cfg.model.embed_dim
    out = QuantizedWeights()
    for key, value in state_dict.items():
        cls = tensor_class(key)
        if cls is None:
            continue
        x = value.detach().to(torch.float64)
        if fold != 1.0 and re.fullmatch(r"backbone\.blocks\.\d+\.attn\.qkv\.(weight|bias)", key):
            x = x.clone()
            x[:d] *= fold
        if key == "backbone.patch_embed.proj.weight":
            x = x * pixel_fold(p.pixel)
        t: FixedType = getattr(p, cls)
        out[key] = QuantizedTensor(from_float(x, t, f"weights.{key}"), t, cls)
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
