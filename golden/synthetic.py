"""Deterministic synthetic weights and images for tests without a trained checkpoint.

Every tensor is drawn from its own ``torch.Generator`` seeded from (seed, key),
in float64, then rounded to float32: the same seed gives identical tensors on
every run and machine, and adding a key never shifts the others.
"""
from __future__ import annotations

import math
import zlib

import torch

from edgemoe.config import ModelConfig
from edgemoe.golden.float_model import expected_shapes

_F64 = torch.float64
_LINEAR = ("qkv", "proj", "fc1", "fc2", "htoh4", "h4toh")  # linear layers and expert linears


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}".encode()))


def _normal(shape, g, std: float, mean: float = 0.0) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=_F64) * std + mean


def _uniform(shape, g, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(shape, generator=g, dtype=_F64) * (hi - lo) + lo


def _trunc_normal(shape, g, std: float, bound: float = 2.0) -> torch.Tensor:
    """N(0, std) truncated to +-bound std (inverse-CDF sampling)."""
    lo = 0.5 * (1 + math.erf(-bound / math.sqrt(2)))
    u = _uniform(shape, g, lo, 1 - lo)
    return torch.erfinv(2 * u - 1) * math.sqrt(2) * std


def _xavier(shape, g) -> torch.Tensor:
    """Xavier-uniform on the last two dims (out, in); leading dims are experts."""
    fan_out, fan_in = shape[-2], shape[-1]
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return _uniform(shape, g, -a, a)


def _draw(key: str, shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    """One tensor of the family ``key`` belongs to (float64)."""
    leaf = key.rsplit(".", 1)[-1]
    module = key.rsplit(".", 2)[-2]
    if key in ("backbone.cls_token", "backbone.pos_embed"):
        return _trunc_normal(shape, g, 0.02)
    if key.startswith("backbone.patch_embed."):
        return _trunc_normal(shape, g, 0.02) if leaf == "weight" else _normal(shape, g, 0.02)
    if leaf == "w_gate":
        return _normal(shape, g, shape[0] ** -0.5)
    if module.startswith("norm"):  # LayerNorms: norm1, norm2, decoders.*.norm
        return _normal(shape, g, 0.1, 1.0) if leaf == "weight" else _normal(shape, g, 0.02)
    if module.startswith("syncbn_fc_"):
        if leaf == "weight":
            return _normal(shape, g, 0.1, 1.0)
        if leaf == "bias":
            return _normal(shape, g, 0.02)
        if leaf == "running_mean":
            return _normal(shape, g, 0.1)
        return _uniform(shape, g, 0.5, 1.5)  # running_var
    if module.startswith("conv_"):
        if leaf == "bias":
            return _normal(shape, g, 0.01)
        fan_out = shape[0] * shape[2] * shape[3]
        return _normal(shape, g, 0.5 * math.sqrt(2.0 / fan_out))  # kaiming-normal (fan_out, relu) x 0.5
    if module in _LINEAR:
        return _xavier(shape, g) if leaf == "weight" else _normal(shape, g, 0.02)
    raise KeyError(f"synthetic_state_dict: no initialiser for state-dict key {key!r}")


def synthetic_state_dict(model_cfg: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A complete M3ViT state dict (keys/shapes of ``M3ViT(model_cfg).state_dict()``), float32.

    Families: linear / expert weights Xavier-uniform, biases N(0, 0.02);
    LayerNorm gamma 1 + N(0, 0.1), beta N(0, 0.02); cls token, position and
    patch embedding weights N(0, 0.02) truncated at 2 std; gates N(0, dim^-1/2);
    head convs kaiming-normal (fan_out, relu) x 0.5 with bias N(0, 0.01);
    BatchNorm gamma 1 + N(0, 0.1), beta N(0, 0.02), running mean N(0, 0.1),
    running var U(0.5, 1.5), num_batches_tracked 0 (int64).
    """
    out = {}
    for key, (shape, dtype) in expected_shapes(model_cfg).items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=dtype)
        else:
            out[key] = _draw(key, shape, _generator(seed, key)).to(torch.float32)
    return out


def synthetic_images(model_cfg: ModelConfig, n: int, seed: int = 0) -> torch.Tensor:
    """n smooth image-like inputs [n, in_chans, H, W], float32 in [0, 1].

    Each channel is a gradient plus a few low-frequency 2D sinusoids plus a
    little noise, clipped to [0, 1].
    """
    g = _generator(seed, "images")
    h, w, c = model_cfg.img_height, model_cfg.img_width, model_cfg.in_chans
    yy = torch.linspace(0, 1, h, dtype=_F64)[:, None]
    xx = torch.linspace(0, 1, w, dtype=_F64)[None, :]
    waves = 4
    shape = (n, c, waves, 1, 1)
    fy, fx = _uniform(shape, g, -3, 3), _uniform(shape, g, -3, 3)       # cycles per image
    phase, amp = _uniform(shape, g, 0, 2 * math.pi), _uniform(shape, g, 0.05, 0.2)
    img = (amp * torch.sin(2 * math.pi * (fy * yy + fx * xx) + phase)).sum(dim=2)
    gy, gx = _uniform((n, c, 1, 1), g, -0.3, 0.3), _uniform((n, c, 1, 1), g, -0.3, 0.3)
    img = img + gy * (yy - 0.5) + gx * (xx - 0.5) + _uniform((n, c, 1, 1), g, 0.35, 0.65)
    img = img + _normal(img.shape, g, 0.02)
    return img.clamp(0, 1).to(torch.float32)
