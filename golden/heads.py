"""Task heads: M3ViT's VisionTransformerUpHead (the ``num_conv=4`` variant, generalised).

With S = ``model_cfg.upsample_stages`` (log2 of the patch size) and C =
``head_channels``: LayerNorm over the patch tokens, reshape to the patch grid,
then S-1 stages of conv3x3 + BatchNorm + ReLU + 2x bilinear upsample, one
conv3x3 + BatchNorm + ReLU, a 1x1 conv to the task's channels and a last 2x
bilinear upsample, back to the input resolution.  For patch 16 that is
``conv_0..conv_3`` (3x3), ``conv_4`` (1x1), ``syncbn_fc_0..3``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgemoe.config import ModelConfig


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, 2h, 2w], bilinear, align_corners=False."""
    return F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bilinear", align_corners=False)


def classifier_name(stages: int) -> str:
    """The UpHead's last layer, the 1x1 conv to the task's channels, for ``stages`` upsampling stages: ``conv_S``."""
    return f"conv_{stages}"


@dataclass(frozen=True)
class HeadCrop:
    """One window per image in the heads' last-stage map: ``tops[i]``, ``lefts[i]``, ``height`` x ``width`` pixels."""

    tops: tuple[int, ...]
    lefts: tuple[int, ...]
    height: int
    width: int

    def cut(self, x: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """The windows of ``x`` [B, ..., rows, cols], whose pixels are ``scale`` x the last stage's."""
        if len(self.tops) != x.shape[0] or len(self.lefts) != x.shape[0]:
            raise ValueError(f"crop has {len(self.tops)} windows for a batch of {x.shape[0]}")
        h, w = self.height * scale, self.width * scale
        if min(self.tops + self.lefts) < 0 or h <= 0 or w <= 0 or \
                max(self.tops) * scale + h > x.shape[-2] or max(self.lefts) * scale + w > x.shape[-1]:
            raise ValueError(f"crop windows of {self.height}x{self.width} at {self.tops}, {self.lefts} "
                             f"leave the {x.shape[-2] // scale}x{x.shape[-1] // scale} map")
        return torch.stack([x[i, ..., t * scale:t * scale + h, l * scale:l * scale + w]
                            for i, (t, l) in enumerate(zip(self.tops, self.lefts))])


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
        setattr(self, classifier_name(stages), nn.Conv2d(c, out_channels, 1))
        for j in range(stages):
            setattr(self, f"syncbn_fc_{j}", nn.BatchNorm2d(c))

    def forward(self, tokens: torch.Tensor, crop: "HeadCrop | None" = None) -> torch.Tensor:
        """Tokens -> [B, out_channels, H, W]; with ``crop``, only one window of the output per image.

        ``crop`` (:class:`HeadCrop`) places a window in the last stage's map
        (half the output resolution) for each image: the last 3x3 stage, the
        1x1 conv and the final upsample run on those windows only, giving the
        output windows ``[2*top : 2*(top+height), 2*left : 2*(left+width)]``.
        That is the costliest part of the head (about 3/4 of its MACs for
        patch 16).  The last stage's BatchNorm then normalises with its running
        statistics, also in training mode (statistics of windows are not the
        whole map's), so cropped training is for fine-tuning a model whose
        statistics are already learnt.  The 1-2 pixels at a window's border are
        not exact (zero padding and upsampling clamp there, as at the image's
        own border).
        """
        x = self.norm(tokens[:, 1:])
        b, _, d = x.shape
        x = x.transpose(1, 2).reshape(b, d, *self.grid)
        for j in range(self.stages):
            bn = getattr(self, f"syncbn_fc_{j}")
            x_conv = getattr(self, f"conv_{j}")(crop.cut(x) if crop is not None and j == self.stages - 1 else x)
            if crop is not None and j == self.stages - 1:
                # running statistics: batch statistics of windows are far from the whole map's
                x_conv = F.batch_norm(x_conv, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
            else:
                x_conv = bn(x_conv)
            x = F.relu(x_conv)
            if j < self.stages - 1:
                x = upsample2x(x)
        return upsample2x(getattr(self, classifier_name(self.stages))(x))

    def last_stage_size(self) -> tuple[int, int]:
        """(height, width) of the last stage's map, where :meth:`forward`'s ``crop`` is given."""
        return self.grid[0] << (self.stages - 1), self.grid[1] << (self.stages - 1)
