"""Checkpoint loaders: M3ViT files and rank shards, timm ViT weights, error reporting."""
from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from edgemoe.config import load_config
from edgemoe.golden.checkpoint import CheckpointError, load_m3vit_checkpoint, load_timm_vit, save_checkpoint
from edgemoe.golden.float_model import M3ViT
from edgemoe.golden.synthetic import synthetic_state_dict


@pytest.fixture(scope="module")
def micro():
    return load_config("m3vit-micro").model


@pytest.fixture(scope="module")
def sd(micro):
    return synthetic_state_dict(micro, seed=3)


def _assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_round_trip_module_prefix_and_wrapper(tmp_path, micro, sd):
    wrapped = {"state_dict": {f"module.{k}": v.double() if v.is_floating_point() else v for k, v in sd.items()},
               "epoch": 7}
    path = save_checkpoint(wrapped, tmp_path / "ckpt.pth")
    loaded = load_m3vit_checkpoint(path, micro)
    _assert_same(loaded.state_dict, sd)  # float64 on disk -> float32, num_batches_tracked int64
    assert loaded.files == [path]
    assert any("'state_dict'" in n for n in loaded.notices)
    assert any("module." in n for n in loaded.notices)
    M3ViT.from_state_dict(micro, loaded.state_dict)


def _shard(sd: dict, ranks: int) -> list[dict]:
    shards = [{} for _ in range(ranks)]
    for k, v in sd.items():
        parts = v.chunk(ranks, dim=0) if ".mlp.experts." in k else [v] * ranks
        for s, p in zip(shards, parts):
            s[f"module.{k}"] = p.clone()
    return shards


def test_sharded_directory(tmp_path, micro, sd):
    for rank, shard in enumerate(_shard(sd, 2)):
        save_checkpoint({"model": shard}, tmp_path / f"{rank}.pth")
    loaded = load_m3vit_checkpoint(tmp_path, micro)
    _assert_same(loaded.state_dict, sd)
    assert [f.name for f in loaded.files] == ["0.pth", "1.pth"]
    # a list of files in rank order does the same
    _assert_same(load_m3vit_checkpoint([tmp_path / "0.pth", tmp_path / "1.pth"], micro).state_dict, sd)


def test_shards_numeric_order(tmp_path, micro):
    """Rank 10 sorts after rank 2 (numeric, not lexicographic)."""
    big = load_config("m3vit-micro", ["model.num_experts=11", "model.top_k=2"]).model
    full = synthetic_state_dict(big, seed=4)
    for rank, shard in enumerate(_shard(full, 11)):
        save_checkpoint(shard, tmp_path / f"{rank}.pth")
    _assert_same(load_m3vit_checkpoint(tmp_path, big).state_dict, full)


def test_shards_disagree(tmp_path, micro, sd):
    shards = _shard(sd, 2)
    shards[1]["module.backbone.blocks.0.attn.qkv.bias"] += 1e-3
    shards[1]["module.decoders.depth.conv_4.bias"] += 1e-3
    paths = [save_checkpoint(s, tmp_path / f"{r}.pth") for r, s in enumerate(shards)]
    with pytest.raises(CheckpointError) as err:
        load_m3vit_checkpoint(paths, micro)
    msg = str(err.value)
    assert "backbone.blocks.0.attn.qkv.bias" in msg and "decoders.depth.conv_4.bias" in msg
    assert len(err.value.problems) == 2


def test_training_only_keys_ignored(tmp_path, micro, sd):
    extra = dict(sd)
    extra["tam_model.fc.weight"] = torch.zeros(3, 3)
    extra["tam_model.fc.bias"] = torch.zeros(3)
    extra["backbone.blocks.1.mlp.gate_task_represent.weight"] = torch.zeros(2, 64)
    loaded = load_m3vit_checkpoint(save_checkpoint(extra, tmp_path / "c.pt"), micro)
    _assert_same(loaded.state_dict, sd)
    notes = [n for n in loaded.notices if "training-only" in n]
    assert len(notes) == 1
    assert "3" in notes[0] and "tam_model" in notes[0] and "gate_task_represent" in notes[0]


def test_all_problems_in_one_error(tmp_path, micro, sd):
    bad = dict(sd)
    bad["backbone.blocks.0.attn.qkv.weight"] = torch.zeros(10, 64)
    bad["backbone.blocks.1.mlp.experts.htoh4.weight"] = torch.zeros(3, 128, 64)
    del bad["decoders.semseg.conv_2.bias"]
    bad["backbone.blocks.0.ls1.gamma"] = torch.ones(64)
    with pytest.raises(CheckpointError) as err:
        load_m3vit_checkpoint(save_checkpoint(bad, tmp_path / "bad.pth"), micro)
    msg = str(err.value)
    for key in ("backbone.blocks.0.attn.qkv.weight", "backbone.blocks.1.mlp.experts.htoh4.weight",
                "decoders.semseg.conv_2.bias", "backbone.blocks.0.ls1.gamma"):
        assert key in msg
    assert "[192, 64]" in msg and "[10, 64]" in msg  # expected vs got
    assert len(err.value.problems) == 4


def _timm_vit(micro, img_size, embed_dim=64) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=img_size, patch_size=16, embed_dim=embed_dim, depth=4, num_heads=4,
                             num_classes=10, qkv_bias=True)


def test_timm_same_grid(tmp_path, micro):
    vit = _timm_vit(micro, (micro.img_height, micro.img_width))
    src = vit.state_dict()
    loaded = load_timm_vit(save_checkpoint(src, tmp_path / "vit.pth"), micro)
    sd = loaded.state_dict
    M3ViT.from_state_dict(micro, sd)
    for k in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight",
              "blocks.2.mlp.fc2.bias", "blocks.1.attn.qkv.weight", "blocks.3.norm2.bias"):
        assert torch.equal(sd[f"backbone.{k}"], src[k]), k
    synth = synthetic_state_dict(micro, seed=0)
    assert torch.equal(sd["backbone.blocks.1.mlp.experts.htoh4.weight"], synth["backbone.blocks.1.mlp.experts.htoh4.weight"])
    assert torch.equal(sd["decoders.semseg.conv_0.weight"], synth["decoders.semseg.conv_0.weight"])
    notes = " | ".join(loaded.notices)
    assert "MoE blocks [1, 3]" in notes and "head.weight" in notes and "norm.weight" in notes
    assert "MoE experts" in notes and "MoE gates" in notes and "decoders.semseg" in notes
    assert "resampled" not in notes


def test_timm_resamples_pos_embed(micro):
    from timm.layers import resample_abs_pos_embed

    vit = _timm_vit(micro, 64)  # 4x4 grid -> config's 2x4
    src = vit.state_dict()
    loaded = load_timm_vit(src, micro)
    pos = loaded.state_dict["backbone.pos_embed"]
    assert pos.shape == (1, micro.num_tokens, micro.embed_dim)
    torch.testing.assert_close(pos, resample_abs_pos_embed(src["pos_embed"], new_size=list(micro.grid),
                                                           old_size=[4, 4], num_prefix_tokens=1))
    assert torch.equal(pos[:, 0], src["pos_embed"][:, 0])  # cls position kept
    assert any("resampled pos_embed" in n for n in loaded.notices)
    assert torch.equal(loaded.state_dict["backbone.blocks.2.mlp.fc1.weight"], src["blocks.2.mlp.fc1.weight"])


def test_timm_embed_dim_mismatch(micro):
    src = _timm_vit(micro, (micro.img_height, micro.img_width), embed_dim=96).state_dict()
    with pytest.raises(CheckpointError) as err:
        load_timm_vit(src, micro)
    msg = str(err.value)
    for key in ("backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed.proj.weight",
                "backbone.blocks.0.attn.qkv.weight", "backbone.blocks.3.norm1.weight", "backbone.blocks.2.mlp.fc2.bias"):
        assert key in msg
    assert "expected [192, 64], got [288, 96]" in msg


def test_timm_unknown_key(micro):
    src = dict(_timm_vit(micro, (micro.img_height, micro.img_width)).state_dict())
    src["blocks.0.ls1.gamma"] = torch.ones(64)
    del src["blocks.2.attn.proj.bias"]
    with pytest.raises(CheckpointError) as err:
        load_timm_vit(src, micro)
    assert "blocks.0.ls1.gamma" in str(err.value) and "backbone.blocks.2.attn.proj.bias" in str(err.value)
