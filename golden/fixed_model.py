"""The bit-accurate model: the whole backbone forward pass on raw fixed-point words.

It computes exactly what the accelerator computes, in the hardware's layer
order, and keeps a named *tap* after every step (:func:`tap_schedule`); csim,
RTL and the board are compared against these taps word for word.  The task
heads run in float on the host, as they do on the board.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .attention import attention
from .moe import moe, route
from .numerics.approx import gelu
from .numerics.fixed import FixedType, add, align, to_float
from .numerics.layernorm import layernorm
from .numerics.matmul import linear
from .weights import QuantizedWeights, query_fold, quantize_weights

#: Tap-name suffix -> precision-profile field of its raw words (None: integer data).
TAP_CLASSES: dict[str, str | None] = {
    "pixels": "pixel", "patch_embed": "act", "embed": "act",
    "norm1": "act", "qkv": "qkv", "scores": "attn_score", "softmax_max": "attn_score",
    "softmax_inv": "softmax_inv", "attn": "act", "proj": "act", "resid1": "act", "norm2": "act",
    "fc1": "act", "fc2": "act",
    "gate_logits": "gate_logit", "gate_scores": "gate_score", "topk_idx": None, "topk_score": "gate_score",
    "expert_counts": None, "moe": "act", "out": "act",
}


def pixel_codes(images: torch.Tensor, pixel: FixedType) -> torch.Tensor:
    """Pixel words as a camera delivers them: ``b``-bit codes of ``ufixed<b,0>``.

    Float images in [0, 1] become ``round(x * (2**b - 1))`` (ties up, clamped);
    uint8/int images are taken as codes already.  The word means
    ``code / 2**b``; the missing factor ``2**b / (2**b - 1)`` is folded into
    the patch-embedding weights (:func:`edgemoe.golden.weights.pixel_fold`).
    """
    top = (1 << pixel.bits) - 1
    if images.is_floating_point():
        codes = torch.floor(images.to(torch.float64) * top + 0.5)
        return codes.clamp(0, top).to(torch.int64)
    codes = images.to(torch.int64)
    if int(codes.min()) < 0 or int(codes.max()) > top:
        raise ValueError(f"images: integer pixel codes must be in 0..{top} for {pixel}")
    return codes


def tap_schedule(model_cfg) -> list[str]:
    """Every tap in the order the hardware produces it (a tap's index is its debug id)."""
    names = ["pixels", "patch_embed", "embed"]
    for i in range(model_cfg.depth):
        pre = f"blocks.{i}."
        names += [pre + s for s in ("norm1", "qkv", "scores", "softmax_max", "softmax_inv", "attn",
                                    "proj", "resid1", "norm2")]
        if model_cfg.is_moe(i):
            names += [pre + s for s in ("gate_logits", "gate_scores", "topk_idx", "topk_score",
                                        "expert_counts", "moe")]
        else:
            names += [pre + "fc1", pre + "fc2"]
        names.append(pre + "out")
    return names


def tap_shapes(model_cfg) -> dict[str, tuple[int, ...]]:
    """Shape of every tap for one image (the batch axis left out), in schedule order."""
    m = model_cfg
    n, d = m.num_tokens, m.embed_dim
    by_step = {"pixels": (m.in_chans, m.img_height, m.img_width), "patch_embed": (m.num_patches, d),
               "qkv": (n, 3 * d), "scores": (m.num_heads, n, n), "softmax_max": (m.num_heads, n),
               "softmax_inv": (m.num_heads, n), "fc1": (n, m.mlp_hidden), "gate_logits": (n, m.num_experts),
               "gate_scores": (n, m.num_experts), "topk_idx": (n, m.top_k), "topk_score": (n, m.top_k),
               "expert_counts": (m.num_experts,)}
    return {name: by_step.get(name.rsplit(".", 1)[-1], (n, d)) for name in tap_schedule(m)}


def tap_type(name: str, p) -> FixedType | None:
    """Type of a tap's raw words under profile ``p`` (None for indices and counts)."""
    cls = TAP_CLASSES[name.rsplit(".", 1)[-1]]
    return None if cls is None else getattr(p, cls)


@dataclass
class FixedResult:
    """Output of :meth:`FixedM3ViT.forward`: raw tokens and the taps."""

    tokens: torch.Tensor                      # [B, N, D] raw act words
    taps: dict[str, torch.Tensor] = field(default_factory=dict)
    task: int = 0


class FixedM3ViT:
    """Bit-accurate M3ViT backbone plus float task heads.

    ``cfg`` is an :class:`edgemoe.config.Config`; ``state_dict`` a float M3ViT
    state dict (backbone quantised here, decoders kept for the heads).
    """

    def __init__(self, cfg, state_dict: dict[str, torch.Tensor]):
        self.cfg = cfg
        self.weights: QuantizedWeights = quantize_weights(cfg, state_dict)
        self._decoder_state = {k: v for k, v in state_dict.items() if k.startswith("decoders.")}
        self._heads: dict[str, torch.nn.Module] = {}

    @classmethod
    def from_quantized(cls, cfg, weights: QuantizedWeights) -> "FixedM3ViT":
        """A backbone-only model from already quantised weights (no heads)."""
        self = cls.__new__(cls)
        self.cfg, self.weights, self._decoder_state, self._heads = cfg, weights, {}, {}
        return self

    # --- inputs -----------------------------------------------------------------
    def quantize_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] -> raw pixel words (see :func:`pixel_codes`)."""
        m = self.cfg.model
        expected = (m.in_chans, m.img_height, m.img_width)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"images: expected shape [B, {', '.join(map(str, expected))}], got {list(images.shape)}")
        return pixel_codes(images, self.cfg.precision.pixel)

    # --- the forward pass ---------------------------------------------------------
    def forward(self, images: torch.Tensor, task: str | int = 0, keep_taps: bool = True) -> FixedResult:
        """Run the backbone on float images or raw pixel words (int64) for ``task``."""
        cfg, p, w = self.cfg, self.cfg.precision, self.weights
        m = cfg.model
        t = m.task_index(task)
        taps: dict[str, torch.Tensor] = {}

        def tap(name: str, value: torch.Tensor) -> torch.Tensor:
            if keep_taps:
                taps[name] = value
            return value

        pixels = self.quantize_images(images)
        tap("pixels", pixels)
        b = pixels.shape[0]
        gh, gw = m.grid
        ps = m.patch_size
        patches = (pixels.reshape(b, m.in_chans, gh, ps, gw, ps).permute(0, 2, 4, 1, 3, 5)
                   .reshape(b, gh * gw, m.patch_dim))
        x = tap("patch_embed", linear(
            patches, p.pixel, w.raw("backbone.patch_embed.proj.weight").reshape(m.embed_dim, -1), p.patch_weight,
            w.raw("backbone.patch_embed.proj.bias"), p.bias, p.act, "patch_embed"))
        frac = max(p.act.frac_bits, p.embed.frac_bits)
        cls = align(w.raw("backbone.cls_token"), p.embed.frac_bits, frac).expand(b, 1, m.embed_dim)
        x = torch.cat([cls, align(x, p.act.frac_bits, frac)], dim=1)
        x = tap("embed", add(x, frac, w.raw("backbone.pos_embed"), p.embed.frac_bits, p.act, "embed"))

        af = p.act.frac_bits
        for i in range(m.depth):
            pre = f"blocks.{i}."
            key = f"backbone.{pre}"
            h = tap(pre + "norm1", layernorm(x, w.raw(key + "norm1.weight"), w.raw(key + "norm1.bias"),
                                             m.ln_eps, p, pre + "norm1"))
            qkv = tap(pre + "qkv", linear(h, p.act, w.raw(key + "attn.qkv.weight"), p.weight,
                                          w.raw(key + "attn.qkv.bias"), p.attn_bias, p.qkv, pre + "qkv"))
            attn_taps: dict = {}
            a = attention(qkv, m.num_heads, cfg.hardware.attn_parallel, p, attn_taps, pre)
            for s in ("scores", "softmax_max", "softmax_inv"):
                tap(pre + s, attn_taps[pre + s])
            tap(pre + "attn", a)
            a = tap(pre + "proj", linear(a, p.act, w.raw(key + "attn.proj.weight"), p.weight,
                                         w.raw(key + "attn.proj.bias"), p.attn_bias, p.act, pre + "proj"))
            x = tap(pre + "resid1", add(x, af, a, af, p.act, pre + "resid1"))
            h = tap(pre + "norm2", layernorm(x, w.raw(key + "norm2.weight"), w.raw(key + "norm2.bias"),
                                             m.ln_eps, p, pre + "norm2"))
            if m.is_moe(i):
                r = route(h, w.raw(key + f"mlp.gate.{t}.w_gate"), m.top_k, p, pre)
                tap(pre + "gate_logits", r.logits)
                tap(pre + "gate_scores", r.scores)
                tap(pre + "topk_idx", r.experts)
                tap(pre + "topk_score", r.weights)
                tap(pre + "expert_counts", r.counts(m.num_experts))
                y = tap(pre + "moe", moe(h, r, *(w.raw(key + f"mlp.experts.{n}.{s}")
                                                 for n in ("htoh4", "h4toh") for s in ("weight", "bias")), p, pre))
            else:
                h = linear(h, p.act, w.raw(key + "mlp.fc1.weight"), p.weight, w.raw(key + "mlp.fc1.bias"),
                           p.bias, p.act, pre + "fc1")
                h = tap(pre + "fc1", gelu(h, p.act, p.gelu_table, p.gelu_step_log2, p.gelu_range))
                y = tap(pre + "fc2", linear(h, p.act, w.raw(key + "mlp.fc2.weight"), p.weight,
                                            w.raw(key + "mlp.fc2.bias"), p.bias, p.act, pre + "fc2"))
            x = tap(pre + "out", add(x, af, y, af, p.act, pre + "out"))
        return FixedResult(x, taps, t)

    __call__ = forward

    # --- float views and heads -------------------------------------------------------
    def tap_to_float(self, name: str, raw: torch.Tensor) -> torch.Tensor:
        """Real values of a tap (float64); qkv's query columns are un-folded."""
        t = tap_type(name, self.cfg.precision)
        if t is None:
            return raw
        x = to_float(raw, t)
        if name.endswith(".qkv"):
            fold = query_fold(self.cfg.model)
            if fold != 1.0:
                x = x.clone()
                x[..., :self.cfg.model.embed_dim] /= fold
        return x

    def head(self, task: str | int) -> torch.nn.Module:
        """The float head of ``task`` (M3ViT UpHead), built from the state dict's decoders."""
        from .heads import UpHead

        m = self.cfg.model
        name = m.task_names[m.task_index(task)]
        if name not in self._heads:
            spec = m.tasks[m.task_index(task)]
            head = UpHead(m, spec.out_channels)
            prefix = f"decoders.{name}."
            head.load_state_dict({k[len(prefix):]: v for k, v in self._decoder_state.items()
                                  if k.startswith(prefix)})
            self._heads[name] = head.eval()
        return self._heads[name]

    @torch.no_grad()
    def run_head(self, tokens: torch.Tensor, task: str | int) -> torch.Tensor:
        """Float head output [B, C, H, W] from raw backbone tokens."""
        x = to_float(tokens, self.cfg.precision.act).to(torch.float32)
        return self.head(task)(x)
