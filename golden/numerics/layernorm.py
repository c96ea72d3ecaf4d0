"""LayerNorm on raw words (two passes over the row, our own rsqrt).

    mean = floor(sum(x) / D)                    exact integer division, act fraction bits
    c    = cast(x - mean) to ln_centered
    var  = floor(sum(c * c) / D)                2 * ln_centered.frac_bits fraction bits
    r    = rsqrt(var + eps) to ln_inv_std      eps rounded to var's fraction bits
    n    = cast(c * r) to ln_norm
    y    = cast(n * gamma + beta) to act
"""
from __future__ import annotations

import torch

from .approx import rsqrt
from .fixed import align, quantize


def eps_raw(eps: float, p) -> int:
    """LayerNorm epsilon as a raw word with the variance's fraction bits (RND)."""
    frac = 2 * p.ln_centered.frac_bits
    return int(round(eps * 2 ** frac))


def layernorm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float, p,
              tag: str | None = None) -> torch.Tensor:
    """LayerNorm over the last axis; ``x`` raw ``p.act``, gamma/beta raw ``p.ln_gamma``/``p.ln_beta``."""
    d = x.shape[-1]
    mean = torch.div(x.sum(dim=-1, keepdim=True), d, rounding_mode="floor")
    c = quantize(x - mean, p.act.frac_bits, p.ln_centered, tag and f"{tag}.centered")
    cf = p.ln_centered.frac_bits
    var = torch.div((c * c).sum(dim=-1, keepdim=True), d, rounding_mode="floor")
    r = rsqrt(var + eps_raw(eps, p), 2 * cf, p.ln_inv_std, p.table_frac_bits, p.rsqrt_table_bits)
    n = quantize(c * r, cf + p.ln_inv_std.frac_bits, p.ln_norm, tag and f"{tag}.norm")
    nf, gf, bf = p.ln_norm.frac_bits, p.ln_gamma.frac_bits, p.ln_beta.frac_bits
    frac = max(nf + gf, bf)
    acc = align(n * gamma, nf + gf, frac) + align(beta, bf, frac)
    return quantize(acc, frac, p.act, tag)
