"""The float M3ViT reference (torch), built from timm's ViT pieces.

Layout and state-dict keys follow M3ViT's own checkpoints: a timm
ViT backbone without final norm whose MoE blocks replace the MLP by
:class:`MoEMlp` (FMoE parameter names, one gate per task), and one
:class:`~edgemoe.golden.heads.UpHead` per task.  Input images are
``[B, in_chans, H, W]`` in [0, 1] (no mean/std normalisation).

:meth:`M3ViT.forward_taps` returns the named intermediate tensors ("taps")
shared with the fixed-point model.
"""
from __future__ import annotations

from functools import partial
from typing import Iterable, Mapping

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from edgemoe.config import ModelConfig
from edgemoe.golden.heads import UpHead
from edgemoe.golden.numerics.topk import topk


class _ExpertLinear(nn.Module):
    """Stacked per-expert linear layers (FMoELinear): weight [E, out, in], bias [E, out]."""

    def __init__(self, num_experts: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_experts, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_experts, out_features))
        bound = in_features ** -0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)


class _Experts(nn.Module):
    """The experts of one MoE block: ``htoh4`` (dim -> hidden), ``h4toh`` (hidden -> dim)."""

    def __init__(self, num_experts: int, dim: int, hidden: int):
        super().__init__()
        self.htoh4 = _ExpertLinear(num_experts, dim, hidden)
        self.h4toh = _ExpertLinear(num_experts, hidden, dim)


class _TaskGate(nn.Module):
    """One task's gate: ``w_gate [dim, E]`` (logits = x @ w_gate; no bias, no noise)."""

    def __init__(self, dim: int, num_experts: int):
        super().__init__()
        self.w_gate = nn.Parameter(torch.empty(dim, num_experts))
        nn.init.normal_(self.w_gate, std=dim ** -0.5)


class MoEMlp(nn.Module):
    """Multi-gate top-k mixture of expert MLPs (inference semantics of M3ViT).

    For tokens x [..., dim] and the active task t (:attr:`task`, set by the
    parent model): ``logits = x @ gate[t].w_gate`` [..., E]; ``probs =
    softmax(logits)`` over all E experts; the top-k experts are chosen on the
    logits (ties -> lower expert index); their probabilities are the scores
    (not renormalised); ``out = sum_k score_k * (h4toh_k(GELU(htoh4_k(x))))``
    with both expert biases inside the scored sum, summed in top-k order.

    When :attr:`record` is a dict, forward stores ``gate_logits``,
    ``gate_scores`` (probs), ``topk_idx`` (int64) and ``moe`` (output) in it.
    """

    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int, num_tasks: int):
        super().__init__()
        self.num_experts = num_experts
        self.top_k = top_k
        self.experts = _Experts(num_experts, dim, hidden)
        self.gate = nn.ModuleList(_TaskGate(dim, num_experts) for _ in range(num_tasks))
        self.act = nn.GELU()
        self.task = 0
        self.record: dict[str, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., dim] -> [..., dim]."""
        lead, dim = x.shape[:-1], x.shape[-1]
        tokens = x.reshape(-1, dim)
        logits = tokens @ self.gate[self.task].w_gate
        probs = torch.softmax(logits, dim=-1)
        idx = topk(logits, self.top_k)                      # [T, k]
        scores = torch.gather(probs, -1, idx)               # [T, k]
        flat_idx, flat_scores = idx.reshape(-1), scores.reshape(-1)
        routed = tokens.new_zeros(flat_idx.numel(), dim)    # one row per (token, slot)
        w1, b1 = self.experts.htoh4.weight, self.experts.htoh4.bias
        w2, b2 = self.experts.h4toh.weight, self.experts.h4toh.bias
        for e in range(self.num_experts):
            slots = torch.nonzero(flat_idx == e).squeeze(1)
            if slots.numel() == 0:
                continue
            h = self.act(F.linear(tokens[slots // self.top_k], w1[e], b1[e]))
            routed[slots] = (flat_scores[slots, None] * F.linear(h, w2[e], b2[e])).to(routed.dtype)
        out = routed.reshape(-1, self.top_k, dim).sum(dim=1).reshape(*lead, dim)
        if self.record is not None:
            self.record.update(gate_logits=logits.reshape(*lead, -1), gate_scores=probs.reshape(*lead, -1),
                               topk_idx=idx.reshape(*lead, -1), moe=out)
        return out


def _moe_layer(model_cfg: ModelConfig):
    """An ``mlp_layer`` factory for timm's Block that builds :class:`MoEMlp` (ignores timm's MLP kwargs)."""

    def build(in_features: int, **_timm_kwargs) -> MoEMlp:
        return MoEMlp(in_features, model_cfg.expert_hidden, model_cfg.num_experts, model_cfg.top_k,
                      len(model_cfg.tasks))

    return build


class _Backbone(nn.Module):
    """Patch embedding, cls token, position embedding and the blocks (no final norm)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, d))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.patch_embed = PatchEmbed(img_size=(cfg.img_height, cfg.img_width), patch_size=cfg.patch_size,
                                      in_chans=cfg.in_chans, embed_dim=d)
        norm = partial(nn.LayerNorm, eps=cfg.ln_eps)
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=norm,
                  **({"mlp_layer": _moe_layer(cfg)} if cfg.is_moe(i) else {}))
            for i in range(cfg.depth))


class M3ViT(nn.Module):
    """Multi-task MoE ViT: ``backbone`` (timm blocks) + ``decoders`` (one UpHead per task)."""

    def __init__(self, model_cfg: ModelConfig):
        super().__init__()
        self.cfg = model_cfg
        self.backbone = _Backbone(model_cfg)
        self.decoders = nn.ModuleDict({t.name: UpHead(model_cfg, t.out_channels) for t in model_cfg.tasks})
        self.task = 0
        self._taps: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_state_dict(cls, model_cfg: ModelConfig, state_dict: Mapping[str, torch.Tensor]) -> "M3ViT":
        """A model with ``state_dict`` loaded strictly, in eval mode."""
        model = cls(model_cfg)
        model.load_state_dict(state_dict, strict=True)
        return model.eval()

    def moe_mlps(self) -> dict[int, MoEMlp]:
        """Block index -> its MoEMlp."""
        return {i: b.mlp for i, b in enumerate(self.backbone.blocks) if isinstance(b.mlp, MoEMlp)}

    def set_task(self, task: str | int) -> int:
        """Select the task (name or index) whose gates every MoE block uses; returns its index."""
        self.task = self.cfg.task_index(task)
        for mlp in self.moe_mlps().values():
            mlp.task = self.task
        return self.task

    def forward_backbone(self, images: torch.Tensor, task: str | int) -> torch.Tensor:
        """images [B, C, H, W] in [0, 1] -> tokens [B, num_tokens, D] (cls first), gated for ``task``."""
        self.set_task(task)
        bb = self.backbone
        x = bb.patch_embed(images)
        x = torch.cat([bb.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + bb.pos_embed
        if self._taps is not None:
            self._taps["embed"] = x.detach()
        for blk in bb.blocks:
            x = blk(x)
        return x

    def forward(self, images: torch.Tensor, task: str | int) -> torch.Tensor:
        """images [B, C, H, W] -> the task head's output [B, out_channels, H, W]."""
        tokens = self.forward_backbone(images, task)
        return self.decoders[self.cfg.task_names[self.task]](tokens)

    @torch.no_grad()
    def forward_taps(self, images: torch.Tensor, task: str | int,
                     heads: str | Iterable[str | int] = "all") -> dict[str, torch.Tensor]:
        """Every named intermediate tensor of one eval-mode pass, detached, in the compute dtype.

        Names: ``patch_embed`` [B,P,D], ``embed`` [B,N,D]; per block i:
        ``blocks.{i}.norm1``, ``.qkv`` [B,N,3D], ``.attn`` (input of proj),
        ``.proj``, ``.resid1`` (input of norm2), ``.norm2``; dense blocks
        ``.fc1`` [B,N,hidden] (after GELU), ``.fc2``; MoE blocks
        ``.gate_logits`` / ``.gate_scores`` [B,N,E], ``.topk_idx`` [B,N,k]
        int64, ``.moe``; ``blocks.{i}`` (block output); ``backbone``; and
        ``head.{name}`` [B,out,H,W] for each task in ``heads`` ("all" or a
        name/index or a list of them).  Every head runs on this pass's backbone tokens
        (gated for ``task``).
        """
        names = self.cfg.task_names
        if heads == "all":
            head_names = names
        else:
            heads = (heads,) if isinstance(heads, (str, int)) else heads
            head_names = tuple(names[self.cfg.task_index(h)] for h in heads)
        taps: dict[str, torch.Tensor] = {}

        def out_hook(name):
            return lambda _m, _inp, out: taps.__setitem__(name, out.detach())

        def in_hook(name):
            return lambda _m, inp: taps.__setitem__(name, inp[0].detach())

        bb = self.backbone
        handles = [bb.patch_embed.register_forward_hook(out_hook("patch_embed"))]
        moe = self.moe_mlps()
        for i, blk in enumerate(bb.blocks):
            p = f"blocks.{i}"
            handles += [blk.norm1.register_forward_hook(out_hook(f"{p}.norm1")),
                        blk.attn.qkv.register_forward_hook(out_hook(f"{p}.qkv")),
                        blk.attn.proj.register_forward_pre_hook(in_hook(f"{p}.attn")),
                        blk.attn.proj.register_forward_hook(out_hook(f"{p}.proj")),
                        blk.norm2.register_forward_pre_hook(in_hook(f"{p}.resid1")),
                        blk.norm2.register_forward_hook(out_hook(f"{p}.norm2")),
                        blk.register_forward_hook(out_hook(p))]
            if i in moe:
                moe[i].record = {}
            else:
                handles += [blk.mlp.act.register_forward_hook(out_hook(f"{p}.fc1")),
                            blk.mlp.fc2.register_forward_hook(out_hook(f"{p}.fc2"))]
        was_training = self.training
        self.eval()
        self._taps = taps
        try:
            tokens = self.forward_backbone(images, task)
            taps["backbone"] = tokens.detach()
            for i, mlp in moe.items():
                taps.update({f"blocks.{i}.{k}": v.detach() for k, v in mlp.record.items()})
            for name in head_names:
                taps[f"head.{name}"] = self.decoders[name](tokens).detach()
        finally:
            self._taps = None
            for mlp in moe.values():
                mlp.record = None
            for h in handles:
                h.remove()
            self.train(was_training)
        return taps


def expected_shapes(model_cfg: ModelConfig) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Key -> (shape, dtype) of ``M3ViT(model_cfg).state_dict()``, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = M3ViT(model_cfg)
    return {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
