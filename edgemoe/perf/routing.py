"""MoE routing for the models: tokens per expert in every MoE block (uniform, skewed, golden, given).

A :class:`Routing` is what :func:`edgemoe.perf.cycles.estimate` costs the
experts by: exact counts of some inputs (from the golden model's gating) or an
expected distribution (uniform, Zipf-like), per MoE block and image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Routing:
    """Tokens per expert in every MoE block: ``counts[i]`` is [images, experts] for the i-th MoE block.

    ``expected`` marks a distribution (expected tokens per expert, possibly
    fractional) rather than one input's exact counts; an expert is then active
    with probability ``1 - exp(-count)`` (Poisson).
    """

    counts: tuple
    expected: bool
    source: str

    @property
    def images(self) -> int:
        return int(self.counts[0].shape[0]) if self.counts else 1

    def active_experts(self) -> list[float]:
        """Mean active experts per image, per MoE block."""
        out = []
        for c in self.counts:
            act = (1 - np.exp(-c)) if self.expected else (c > 0)
            out.append(float(np.mean(np.sum(act, axis=1))))
        return out


def uniform_routing(cfg) -> Routing:
    """Every expert gets ``N * top_k / E`` tokens (expected)."""
    m = cfg.model
    c = np.full((1, m.num_experts), m.num_tokens * m.top_k / m.num_experts)
    return Routing(tuple(c.copy() for _ in m.moe_blocks), True, "uniform (expected N*k/E tokens per expert)")


def skewed_routing(cfg, alpha: float = 1.0) -> Routing:
    """Zipf-like expected tokens: expert of rank r gets a share ~ 1/(r+1)^alpha, at most N each."""
    m = cfg.model
    total = m.num_tokens * m.top_k
    w = 1.0 / np.arange(1, m.num_experts + 1) ** alpha
    c = np.zeros(m.num_experts)
    free = np.ones(m.num_experts, bool)
    left = float(total)
    for _ in range(m.num_experts):  # water-fill under the cap of N tokens per expert
        share = left * w * free / np.sum(w * free)
        c = np.where(free, np.minimum(c + share, m.num_tokens), c)
        left = total - c.sum()
        free = c < m.num_tokens - 1e-9
        if left <= 1e-9 or not free.any():
            break
    return Routing(tuple(c[None, :].copy() for _ in m.moe_blocks), True, f"skewed (Zipf alpha={alpha:g})")


def routing_from_golden(cfg, images=2, task: str | int = 0, seed: int = 0, state_dict=None) -> Routing:
    """Exact tokens per expert of ``images`` (a tensor, or a count of synthetic images) from the golden model."""
    import torch

    from edgemoe.golden.fixed_model import FixedM3ViT
    from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict

    m = cfg.model
    sd = state_dict if state_dict is not None else synthetic_state_dict(m, seed=seed)
    if isinstance(images, int):
        imgs = synthetic_images(m, images, seed=seed)
        what = f"{images} synthetic image(s), seed {seed}"
    else:
        imgs = images
        what = f"{len(images)} image(s)"
    with torch.no_grad():
        res = FixedM3ViT(cfg, sd).forward(imgs, task, keep_taps=True)
    counts = tuple(res.taps[f"blocks.{b}.expert_counts"].to(torch.float64).numpy() for b in m.moe_blocks)
    name = m.task_names[m.task_index(task)]
    return Routing(counts, False, f"golden gating of {what}, task {name}"
                   + ("" if state_dict is not None else f" (synthetic weights seed {seed})"))


def as_routing(cfg, routing) -> Routing:
    """Normalise what :func:`estimate` accepts: None (uniform), a Routing, or counts per MoE block
    (a list in ``moe_blocks`` order or a dict {block: counts}; each [E] or [images, E])."""
    m = cfg.model
    if routing is None:
        return uniform_routing(cfg)
    if isinstance(routing, Routing):
        rt = routing
    else:
        if isinstance(routing, dict):
            seq = [routing[b] for b in m.moe_blocks]
        else:
            seq = list(routing)
            if len(seq) == m.num_experts and len(m.moe_blocks) != m.num_experts and np.ndim(seq[0]) == 0:
                seq = [seq] * len(m.moe_blocks)  # one distribution for every block
        arrs = []
        for c in seq:
            a = np.asarray(c, dtype=np.float64)
            arrs.append(a[None, :] if a.ndim == 1 else a)
        expected = any(not np.allclose(a, np.round(a)) for a in arrs)
        rt = Routing(tuple(arrs), expected, "given counts" + (" (expected)" if expected else ""))
    if len(rt.counts) != len(m.moe_blocks):
        raise ValueError(f"routing: {len(rt.counts)} MoE blocks given, the model has {len(m.moe_blocks)}")
    for c in rt.counts:
        if c.shape[-1] != m.num_experts:
            raise ValueError(f"routing: {c.shape[-1]} experts per block given, the model has {m.num_experts}")
    return rt
