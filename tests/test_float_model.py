"""The float M3ViT reference: state-dict layout, MoE semantics, taps, synthetic weights."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgemoe.golden.float_model import M3ViT, MoEMlp, expected_shapes
from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict
from edgemoe.loading import load_config


@pytest.fixture(scope="module")
def micro():
    return load_config("m3vit-micro").model


@pytest.fixture(scope="module")
def model(micro):
    return M3ViT.from_state_dict(micro, synthetic_state_dict(micro, seed=0))


@pytest.fixture(scope="module")
def images(micro):
    return synthetic_images(micro, 2, seed=0)


def _design_tiny_shapes() -> dict[str, tuple[int, ...]]:
    """The tiny preset's state dict as M3ViT's own checkpoint of this model names and shapes it."""
    d, out = 192, {}
    out["backbone.cls_token"] = (1, 1, d)
    out["backbone.pos_embed"] = (1, 129, d)
    out["backbone.patch_embed.proj.weight"] = (d, 3, 16, 16)
    out["backbone.patch_embed.proj.bias"] = (d,)
    for i in range(12):
        p = f"backbone.blocks.{i}"
        for n in ("norm1", "norm2"):
            out[f"{p}.{n}.weight"] = out[f"{p}.{n}.bias"] = (d,)
        out[f"{p}.attn.qkv.weight"], out[f"{p}.attn.qkv.bias"] = (3 * d, d), (3 * d,)
        out[f"{p}.attn.proj.weight"], out[f"{p}.attn.proj.bias"] = (d, d), (d,)
        if i % 2 == 0:
            out[f"{p}.mlp.fc1.weight"], out[f"{p}.mlp.fc1.bias"] = (768, d), (768,)
            out[f"{p}.mlp.fc2.weight"], out[f"{p}.mlp.fc2.bias"] = (d, 768), (d,)
        else:
            out[f"{p}.mlp.experts.htoh4.weight"], out[f"{p}.mlp.experts.htoh4.bias"] = (16, 384, d), (16, 384)
            out[f"{p}.mlp.experts.h4toh.weight"], out[f"{p}.mlp.experts.h4toh.bias"] = (16, d, 384), (16, d)
            out[f"{p}.mlp.gate.0.w_gate"] = out[f"{p}.mlp.gate.1.w_gate"] = (d, 16)
    for task, n_out in (("semseg", 7), ("depth", 1)):
        p = f"decoders.{task}"
        out[f"{p}.norm.weight"] = out[f"{p}.norm.bias"] = (d,)
        out[f"{p}.conv_0.weight"] = (256, d, 3, 3)
        for j in (1, 2, 3):
            out[f"{p}.conv_{j}.weight"] = (256, 256, 3, 3)
        out[f"{p}.conv_4.weight"] = (n_out, 256, 1, 1)
        out[f"{p}.conv_4.bias"] = (n_out,)
        for j in range(4):
            out[f"{p}.conv_{j}.bias"] = (256,)
            for b in ("weight", "bias", "running_mean", "running_var"):
                out[f"{p}.syncbn_fc_{j}.{b}"] = (256,)
            out[f"{p}.syncbn_fc_{j}.num_batches_tracked"] = ()
    return out


def test_tiny_state_dict_matches_design():
    cfg = load_config("m3vit-tiny-cityscapes").model
    sd = M3ViT(cfg).state_dict()
    got = {k: tuple(v.shape) for k, v in sd.items()}
    assert got == _design_tiny_shapes()
    assert {k: (v.shape, v.dtype) for k, v in sd.items()} == expected_shapes(cfg)
    assert sd["decoders.depth.syncbn_fc_0.num_batches_tracked"].dtype == torch.int64
    # spot checks of every family
    assert got["backbone.blocks.1.mlp.experts.htoh4.weight"] == (16, 384, 192)
    assert got["backbone.blocks.11.mlp.experts.h4toh.weight"] == (16, 192, 384)
    assert got["backbone.blocks.3.mlp.gate.0.w_gate"] == (192, 16)
    assert got["decoders.semseg.conv_4.weight"] == (7, 256, 1, 1)
    assert got["decoders.depth.conv_4.weight"] == (1, 256, 1, 1)


def test_output_shapes(model, micro, images):
    for task in micro.tasks:
        out = model(images, task.name)
        assert out.shape == (2, task.out_channels, micro.img_height, micro.img_width)
        assert torch.isfinite(out).all()
    assert model(images, 1).shape == (2, 1, micro.img_height, micro.img_width)


def _random_moe(dim=16, hidden=24, experts=5, k=2, tasks=2, seed=1) -> MoEMlp:
    g = torch.Generator().manual_seed(seed)
    moe = MoEMlp(dim, hidden, experts, k, tasks).double()
    with torch.no_grad():
        for p in moe.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    return moe


def _naive_moe(moe: MoEMlp, x: torch.Tensor, task: int) -> torch.Tensor:
    """Per-token loop: softmax over all experts, top-k by logits, scores not renormalised."""
    w1, b1 = moe.experts.htoh4.weight, moe.experts.htoh4.bias
    w2, b2 = moe.experts.h4toh.weight, moe.experts.h4toh.bias
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for n in range(x.shape[1]):
            tok = x[b, n]
            logits = tok @ moe.gate[task].w_gate
            probs = torch.softmax(logits, dim=0)
            order = sorted(range(len(logits)), key=lambda e: (-logits[e].item(), e))
            for e in order[:moe.top_k]:
                h = F.gelu(w1[e] @ tok + b1[e])
                out[b, n] += probs[e] * (w2[e] @ h + b2[e])
    return out


def test_moe_matches_naive_loop():
    moe = _random_moe()
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        for task in (0, 1):
            moe.task = task
            torch.testing.assert_close(moe(x), _naive_moe(moe, x, task), rtol=1e-12, atol=1e-12)


def test_moe_record_and_tie_break():
    moe = _random_moe(dim=4, experts=5, k=2)
    w = torch.tensor([[1.0, 3.0, 2.0, 3.0, 3.0]] * 4, dtype=torch.float64)  # experts 1, 3, 4 tie
    x = torch.ones(1, 3, 4, dtype=torch.float64)                             # logits exactly 4*w[0]
    with torch.no_grad():
        moe.gate[0].w_gate.copy_(w)
        moe.record = {}
        moe(x)
    rec = moe.record
    assert rec["topk_idx"].dtype == torch.int64
    assert rec["topk_idx"].tolist() == [[[1, 3]] * 3]
    torch.testing.assert_close(rec["gate_logits"], (x @ w))
    torch.testing.assert_close(rec["gate_scores"], torch.softmax(x @ w, dim=-1))
    assert rec["gate_scores"].shape == (1, 3, 5) and rec["moe"].shape == (1, 3, 4)


def test_forward_taps_names_shapes(model, micro, images):
    taps = model.forward_taps(images, "semseg")
    b, n, d, p = 2, micro.num_tokens, micro.embed_dim, micro.num_patches
    shapes = {"patch_embed": (b, p, d), "embed": (b, n, d), "backbone": (b, n, d)}
    for i in range(micro.depth):
        q = f"blocks.{i}"
        shapes |= {f"{q}.norm1": (b, n, d), f"{q}.qkv": (b, n, 3 * d), f"{q}.attn": (b, n, d),
                   f"{q}.proj": (b, n, d), f"{q}.resid1": (b, n, d), f"{q}.norm2": (b, n, d), q: (b, n, d)}
        if micro.is_moe(i):
            e, k = micro.num_experts, micro.top_k
            shapes |= {f"{q}.gate_logits": (b, n, e), f"{q}.gate_scores": (b, n, e),
                       f"{q}.topk_idx": (b, n, k), f"{q}.moe": (b, n, d)}
        else:
            shapes |= {f"{q}.fc1": (b, n, micro.mlp_hidden), f"{q}.fc2": (b, n, d)}
    for t in micro.tasks:
        shapes[f"head.{t.name}"] = (b, t.out_channels, micro.img_height, micro.img_width)
    assert {k: tuple(v.shape) for k, v in taps.items()} == shapes
    assert taps["blocks.1.topk_idx"].dtype == torch.int64
    assert all(not v.requires_grad for v in taps.values())

    with torch.no_grad():
        torch.testing.assert_close(taps["backbone"], model.forward_backbone(images, "semseg"), rtol=0, atol=0)
        torch.testing.assert_close(taps["head.semseg"], model(images, "semseg"), rtol=0, atol=0)
    # the taps chain: residual adds, embed, dense MLP
    torch.testing.assert_close(taps["blocks.1.resid1"], taps["blocks.0"] + taps["blocks.1.proj"])
    torch.testing.assert_close(taps["blocks.1"], taps["blocks.1.resid1"] + taps["blocks.1.moe"])
    torch.testing.assert_close(taps["blocks.0"], taps["blocks.0.resid1"] + taps["blocks.0.fc2"])
    bb = model.backbone
    torch.testing.assert_close(taps["embed"][:, 1:], taps["patch_embed"] + bb.pos_embed[:, 1:])
    fc1 = bb.blocks[0].mlp.fc1
    torch.testing.assert_close(taps["blocks.0.fc1"], F.gelu(F.linear(taps["blocks.0.norm2"], fc1.weight, fc1.bias)))
    # hooks are gone afterwards
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_forward_taps_head_selection_and_float64(micro, images):
    model64 = M3ViT.from_state_dict(micro, synthetic_state_dict(micro)).double()
    taps = model64.forward_taps(images.double(), "depth", heads=["depth"])
    assert [k for k in taps if k.startswith("head.")] == ["head.depth"]
    assert taps["backbone"].dtype == torch.float64 and taps["blocks.3.topk_idx"].dtype == torch.int64
    assert not [k for k in model64.forward_taps(images.double(), 0, heads=()) if k.startswith("head.")]


def test_tasks_use_their_own_gates(model, images):
    a = model.forward_taps(images, "semseg", heads=())
    b = model.forward_taps(images, "depth", heads=())
    assert not torch.equal(a["blocks.1.gate_logits"], b["blocks.1.gate_logits"])
    assert not torch.allclose(a["blocks.1.moe"], b["blocks.1.moe"])
    torch.testing.assert_close(a["blocks.0"], b["blocks.0"], rtol=0, atol=0)  # dense block: task-independent


def test_synthetic_state_dict_deterministic(micro):
    a, b, c = synthetic_state_dict(micro, 0), synthetic_state_dict(micro, 0), synthetic_state_dict(micro, 1)
    assert list(a) == list(M3ViT(micro).state_dict())
    assert all(torch.equal(a[k], b[k]) for k in a)
    floats = [k for k in a if a[k].is_floating_point()]
    assert all(a[k].dtype == torch.float32 for k in floats)
    assert all(not torch.equal(a[k], c[k]) for k in floats)
    assert a["decoders.semseg.syncbn_fc_0.num_batches_tracked"].dtype == torch.int64
    assert int(a["decoders.semseg.syncbn_fc_0.num_batches_tracked"]) == 0
    assert all(a[k].abs().min() > 0 or a[k].numel() == 1 for k in floats if k.endswith(".bias"))
    assert (a["decoders.depth.syncbn_fc_2.running_var"] >= 0.5).all()
    M3ViT.from_state_dict(micro, a)  # strict


def test_synthetic_images(micro):
    x = synthetic_images(micro, 3, seed=5)
    assert x.shape == (3, 3, micro.img_height, micro.img_width) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0.05
    assert torch.equal(x, synthetic_images(micro, 3, seed=5))
    assert not torch.equal(x, synthetic_images(micro, 3, seed=6))
    # smooth: neighbouring pixels are close compared with the spread of the image
    assert (x[..., 1:] - x[..., :-1]).abs().mean() < 0.2 * x.std()
