"""Checkpoint loaders: M3ViT files and rank shards, timm ViT weights, error reporting."""
from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from edgemoe.golden.checkpoint import CheckpointError, load_m3vit_checkpoint, load_timm_vit, save_checkpoint
from edgemoe.golden.float_model import M3ViT
from edgemoe.golden.synthetic import synthetic_state_dict
from edgemoe.loading import load_config


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
    """M3ViT's layout: rank 0 holds every tensor (with its own expert slice), ranks > 0 only their expert slices."""
    shards = [{} for _ in range(ranks)]
    for k, v in sd.items():
        if ".mlp.experts." in k:
            for s, p in zip(shards, v.chunk(ranks, dim=0)):
                s[f"module.{k}"] = p.clone()
        else:
            shards[0][f"module.{k}"] = v.clone()
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


def test_shards_with_every_tensor_in_every_rank(tmp_path, micro, sd):
    """Shards that repeat the non-expert tensors load when the copies are equal."""
    shards = _shard(sd, 2)
    shards[1].update({k: v.clone() for k, v in shards[0].items() if ".mlp.experts." not in k})
    paths = [save_checkpoint(s, tmp_path / f"{r}.pth") for r, s in enumerate(shards)]
    _assert_same(load_m3vit_checkpoint(paths, micro).state_dict, sd)


def test_shards_disagree(tmp_path, micro, sd):
    shards = _shard(sd, 2)
    for key in ("module.backbone.blocks.0.attn.qkv.bias", "module.decoders.depth.conv_4.bias"):
        shards[1][key] = shards[0][key] + 1e-3
    shards[1]["module.backbone.blocks.0.norm1.weight"] = shards[0]["module.backbone.blocks.0.norm1.weight"].clone()
    paths = [save_checkpoint(s, tmp_path / f"{r}.pth") for r, s in enumerate(shards)]
    with pytest.raises(CheckpointError) as err:
        load_m3vit_checkpoint(paths, micro)
    msg = str(err.value)
    assert "backbone.blocks.0.attn.qkv.bias" in msg and "decoders.depth.conv_4.bias" in msg
    assert len(err.value.problems) == 2  # the equal copy of norm1.weight is fine


def test_shards_missing_expert_slice(tmp_path, micro, sd):
    shards = _shard(sd, 2)
    del shards[1]["module.backbone.blocks.1.mlp.experts.h4toh.bias"]
    paths = [save_checkpoint(s, tmp_path / f"{r}.pth") for r, s in enumerate(shards)]
    with pytest.raises(CheckpointError) as err:
        load_m3vit_checkpoint(paths, micro)
    assert err.value.problems == ["backbone.blocks.1.mlp.experts.h4toh.bias: expert slice missing from shard 1.pth"]


def test_shards_inconsistent_expert_shapes(tmp_path, micro, sd):
    """Expert slices must agree beyond dim 0, and every expert tensor of a shard holds the same experts."""
    shards = _shard(sd, 2)
    w = "module.backbone.blocks.1.mlp.experts.htoh4.weight"
    shards[1][w] = shards[1][w][:, :, :32].clone()
    b = "module.backbone.blocks.3.mlp.experts.htoh4.bias"
    both = torch.cat([shards[0][b], shards[1][b]])
    shards[0][b], shards[1][b] = both[:3].clone(), both[3:].clone()  # 3 + 1 experts: the total still fits
    paths = [save_checkpoint(s, tmp_path / f"{r}.pth") for r, s in enumerate(shards)]
    with pytest.raises(CheckpointError) as err:
        load_m3vit_checkpoint(paths, micro)
    msg = str(err.value)
    assert "backbone.blocks.1.mlp.experts.htoh4.weight: expert slices differ beyond dim 0" in msg
    assert "backbone.blocks.3.mlp.experts.htoh4.bias" in msg and "3 experts in shard 0.pth" in msg
    assert len(err.value.problems) == 3  # the bias is off in both shards


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
    problems = "\n".join(err.value.problems)
    for key in ("backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed.proj.weight",
                "backbone.blocks.0.attn.qkv.weight", "backbone.blocks.3.norm1.weight", "backbone.blocks.2.mlp.fc2.bias"):
        assert key in problems
    assert "expected [192, 64], got [288, 96]" in problems
    msg = str(err.value)  # one line: the summary and the first problems
    assert "\n" not in msg and "backbone.cls_token" in msg and f"(+{len(err.value.problems) - 6} more)" in msg


def test_timm_unknown_key(micro):
    src = dict(_timm_vit(micro, (micro.img_height, micro.img_width)).state_dict())
    src["blocks.0.ls1.gamma"] = torch.ones(64)
    del src["blocks.2.attn.proj.bias"]
    with pytest.raises(CheckpointError) as err:
        load_timm_vit(src, micro)
    assert "blocks.0.ls1.gamma" in str(err.value) and "backbone.blocks.2.attn.proj.bias" in str(err.value)


# --- values: NaN / inf, and what a file that is no checkpoint holds ---------------------------------


def test_nonfinite_tensors_are_named(tmp_path, micro, sd):
    """NaN / inf anywhere (backbone or task heads, one file or rank shards) is an error naming each tensor."""
    bad = dict(sd)
    bad["decoders.semseg.conv_4.bias"] = torch.full_like(sd["decoders.semseg.conv_4.bias"], float("nan"))
    bad["backbone.blocks.2.norm1.weight"] = sd["backbone.blocks.2.norm1.weight"].clone()
    bad["backbone.blocks.2.norm1.weight"][5] = float("-inf")
    bad["backbone.cls_token"] = sd["backbone.cls_token"].double()
    bad["backbone.cls_token"][0, 0, 0] = 1e300  # finite in float64, inf in float32
    with pytest.raises(CheckpointError) as err:
        load_m3vit_checkpoint(save_checkpoint(bad, tmp_path / "nan.pth"), micro)
    msg = str(err.value)
    assert "\n" not in msg and "nan.pth: non-finite values in 3 tensor(s)" in msg
    assert "backbone.cls_token: 1 inf of 64 values" in msg
    assert "decoders.semseg.conv_4.bias: 7 NaN of 7 values" in msg
    assert "backbone.blocks.2.norm1.weight: 1 inf of 64 values" in msg
    shards = _shard(sd, 2)
    shards[1]["module.backbone.blocks.3.mlp.experts.h4toh.weight"][0, 0, 0] = float("inf")
    for rank, shard in enumerate(shards):
        save_checkpoint(shard, tmp_path / "shards" / f"{rank}.pth")
    with pytest.raises(CheckpointError, match=r"shards: non-finite .*experts\.h4toh\.weight: 1 inf of 32768"):
        load_m3vit_checkpoint(tmp_path / "shards", micro)


def test_timm_nonfinite_tensors_are_named(tmp_path, micro):
    src = dict(_timm_vit(micro, (micro.img_height, micro.img_width)).state_dict())
    src["blocks.0.attn.qkv.weight"] = src["blocks.0.attn.qkv.weight"].clone()
    src["blocks.0.attn.qkv.weight"][3, :2] = float("nan")
    src["head.weight"] = torch.full_like(src["head.weight"], float("nan"))  # ignored: not loaded, not checked
    with pytest.raises(CheckpointError) as err:
        load_timm_vit(save_checkpoint(src, tmp_path / "vit.pth"), micro)
    assert str(err.value).endswith("vit.pth: non-finite values in 1 tensor(s), which cannot be quantised or run: "
                                   "blocks.0.attn.qkv.weight: 2 NaN of 12288 values")


def _truncated(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


@pytest.mark.parametrize("make,says", [
    (lambda p, sd: _truncated(_npz(p, sd)), "not a checkpoint: truncated/corrupt .npz archive"),
    (lambda p, sd: _npz(p, sd), "not a checkpoint: .npz archive of NumPy arrays"),
    (lambda p, sd: _truncated(save_checkpoint(sd, p)), "truncated/corrupt torch checkpoint (zip archive)"),
    (lambda p, sd: _write(p, b""), "not a checkpoint: empty file"),
    (lambda p, sd: _write(p, b"model: m3vit\n"), "not a checkpoint: text file"),
    (lambda p, sd: _write(p, bytes(range(256)) * 4), "not a checkpoint: unrecognised binary data"),
], ids=["truncated-npz", "npz", "truncated-torch", "empty", "text", "binary"])
def test_what_a_file_that_is_no_checkpoint_holds(tmp_path, micro, sd, make, says):
    path = make(tmp_path / "weights.bin", sd)
    for load in (load_m3vit_checkpoint, load_timm_vit):
        with pytest.raises(CheckpointError) as err:
            load(path, micro)
        assert str(err.value) == f"{path}: {says}"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _npz(path, sd):
    import numpy as np

    with open(path, "wb") as f:
        np.savez(f, **{k: v.numpy() for k, v in sd.items()})
    return path


def test_a_mapping_with_non_name_keys_is_not_a_state_dict(tmp_path, micro):
    path = tmp_path / "ints.pth"
    torch.save({1: torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="keys must be names, found 1"):
        load_m3vit_checkpoint(path, micro)
