"""Task heads: M3ViT's VisionTransformerUpHead (the ``num_conv=4`` variant, generalised).

With S = ``model_cfg.upsample_stages`` (log2 of the patch size) and C =
``head_channels``: LayerNorm over the patch tokens, reshape to the patch grid,
then S-1 stages of conv3x3 + BatchNorm + ReLU + 2x bilinear upsample, one
conv3x3 + BatchNorm + ReLU, a 1x1 conv to the task's channels and a last 2x
bilinear upsample, back to the input resolution.  For patch 16 that is
``conv_0..conv_3`` (3x3), ``conv_4`` (1x1), ``syncbn_fc_0..3``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgemoe.config import ModelConfig


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, 2h, 2w], bilinear, align_corners=False."""
    return F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bilinear", align_corners=False)


class UpHead(nn.Module):
    """Tokens [B, N, D] (cls first) -> dense prediction [B, out_channels, H, W].

    Modules: ``norm`` (LayerNorm D), ``conv_0`` (D->C, 3x3), ``conv_1..conv_{S-1}``
    (C->C, 3x3), ``conv_S`` (C->out_channels, 1x1), ``syncbn_fc_0..syncbn_fc_{S-1}``
    (BatchNorm2d C, running statistics in eval mode).
    """

    def __init__(self, model_cfg: ModelConfig, out_channels: int):
        super().__init__()
        stages = model_cfg.upsample_stages
        if stages < 1:
            raise ValueError(f"UpHead needs patch_size >= 2 (got {model_cfg.patch_size})")
        d, c = model_cfg.embed_dim, model_cfg.head_channels
        self.grid = model_cfg.grid
        self.stages = stages
        self.norm = nn.LayerNorm(d, eps=model_cfg.ln_eps)
        for j in range(stages):
            setattr(self, f"conv_{j}", nn.Conv2d(d if j == 0 else c, c, 3, padding=1))
        setattr(self, f"conv_{stages}", nn.Conv2d(c, out_channels, 1))
        for j in range(stages):
            setattr(self, f"syncbn_fc_{j}", nn.BatchNorm2d(c))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm(tokens[:, 1:])
        b, _, d = x.shape
        x = x.transpose(1, 2).reshape(b, d, *self.grid)
        for j in range(self.stages):
            x = F.relu(getattr(self, f"syncbn_fc_{j}")(getattr(self, f"conv_{j}")(x)))
            if j < self.stages - 1:
                x = upsample2x(x)
        return upsample2x(getattr(self, f"conv_{self.stages}")(x))
