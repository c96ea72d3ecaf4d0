"""Load M3ViT checkpoints (single file or rank shards) and plain timm ViT weights.

Every loader returns a complete, float32 state dict for ``M3ViT(model_cfg)``
plus human-readable notices (what was unwrapped, ignored, resampled or
synthesised); anything that does not fit (a key, a shape, NaN or inf, a file
that is no checkpoint) raises one :class:`CheckpointError` listing every
offending key.  Files are read with ``weights_only=True``.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from timm.layers import resample_abs_pos_embed

from edgemoe.config import ModelConfig
from edgemoe.golden.file_kind import describe
from edgemoe.golden.float_model import expected_shapes
from edgemoe.golden.synthetic import synthetic_state_dict
from edgemoe.golden.weights import nonfinite

_WRAPPERS = ("state_dict", "model", "module")
_TRAINING_ONLY = ("tam_model", "gate_task_represent")
_EXPERT_MARK = ".mlp.experts."

StateDict = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; ``problems`` holds one entry per offending key.

    The message is one line: the summary and the first :data:`SHOWN` problems.
    """

    SHOWN = 6

    def __init__(self, summary: str, problems: Sequence[str] = ()):
        self.problems = list(problems)
        more = len(self.problems) - self.SHOWN
        listed = "; ".join(self.problems[:self.SHOWN]) + (f" (+{more} more)" if more > 0 else "")
        super().__init__(f"{summary}: {listed}" if listed else summary)


@dataclass
class LoadedCheckpoint:
    """A complete float32 state dict (num_batches_tracked int64), what happened, and the files read."""

    state_dict: StateDict
    notices: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def save_checkpoint(state_dict: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Write ``state_dict`` with torch.save; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict), path)
    return path


# --- reading and normalising raw checkpoints -----------------------------------------

def _read(path: Path) -> object:
    """torch.load with weights_only=True; unreadable files become a CheckpointError naming them."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated zips, disallowed globals: all the file's fault
        kind = describe(path)
        if kind.startswith("truncated/corrupt torch"):
            raise CheckpointError(f"{path}: {kind}") from None
        if kind not in ("torch checkpoint", "pickle (legacy torch format)"):
            raise CheckpointError(f"{path}: not a checkpoint: {kind}") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a loadable weights-only torch checkpoint", [first]) from None


def _check_finite(sd: Mapping[str, torch.Tensor], origin: str) -> None:
    """Raise a CheckpointError naming every tensor that holds NaN or inf."""
    bad = nonfinite(sd)
    if bad:
        raise CheckpointError(f"{origin}: non-finite values in {len(bad)} tensor(s), which cannot be quantised "
                              f"or run", bad)


def _tensors(obj: object, notices: list[str], origin: str) -> StateDict:
    """Unwrap ``{"state_dict"|"model"|"module": ...}``, strip ``module.``, keep tensor entries."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{origin} is not a state dict", [f"top-level object is a {type(obj).__name__}"])
    while not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((w for w in _WRAPPERS if isinstance(obj.get(w), Mapping)), None)
        if inner is None:
            break
        notices.append(f"{origin}: unwrapped the state dict from {inner!r}")
        obj = obj[inner]
    not_named = sorted(repr(k) for k in obj if not isinstance(k, str))
    if not_named:
        raise CheckpointError(f"{origin} is not a state dict", [f"keys must be names, found {', '.join(not_named[:3])}"])
    skipped = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if skipped:
        notices.append(f"{origin}: ignored {len(skipped)} non-tensor entries: {', '.join(skipped)}")
    out = {}
    stripped = 0
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            if k.startswith("module."):
                k, stripped = k[len("module."):], stripped + 1
            out[k] = v
    if stripped:
        notices.append(f"{origin}: stripped the 'module.' prefix from {stripped} keys")
    return out


def _drop_training_only(sd: StateDict) -> tuple[StateDict, list[str]]:
    """Remove ``tam_model*`` / ``gate_task_represent*`` keys; returns (kept, dropped keys)."""
    dropped = [k for k in sd if any(mark in k for mark in _TRAINING_ONLY)]
    return {k: v for k, v in sd.items() if k not in dropped}, dropped


def _training_prefix(key: str) -> str:
    """The key up to and including its training-only component, e.g. ``backbone.blocks.1.mlp.tam_model``."""
    parts = key.split(".")
    for i, p in enumerate(parts):
        if any(p.startswith(mark) for mark in _TRAINING_ONLY):
            return ".".join(parts[:i + 1]) + "*"
    return key


def _merge_shards(shards: Sequence[StateDict], names: Sequence[str]) -> StateDict:
    """Merge rank shards in rank order: M3ViT's layout and the one with every tensor in every rank.

    ``.mlp.experts.`` tensors are sliced on dim 0: every shard holds a slice of
    every one, each of a shard's slices holds the same number of experts, and
    the slices agree beyond dim 0; they are concatenated in rank order.  Any
    other key may be in any shards (M3ViT saves them in rank 0 only); where it
    is in several, the copies must be equal.
    """
    if len(shards) == 1:
        return dict(shards[0])
    keys = list(dict.fromkeys(k for sd in shards for k in sd))
    expert_keys = [k for k in keys if _EXPERT_MARK in k]
    merged, problems = {}, []
    for name, sd in zip(names, shards):
        counts = Counter(sd[k].shape[0] for k in expert_keys if k in sd and sd[k].ndim)
        usual = counts.most_common(1)[0][0] if counts else None
        problems += [f"{k}: {sd[k].shape[0]} experts in shard {name}, its other expert tensors hold {usual}"
                     for k in expert_keys if k in sd and sd[k].ndim and sd[k].shape[0] != usual]
    for k in keys:
        held = [(n, sd[k]) for n, sd in zip(names, shards) if k in sd]
        if _EXPERT_MARK in k:
            absent = [n for n, sd in zip(names, shards) if k not in sd]
            if absent:
                problems.append(f"{k}: expert slice missing from shard {', '.join(absent)}")
            elif len({p.shape[1:] for _, p in held}) > 1:
                problems.append(f"{k}: expert slices differ beyond dim 0: {[tuple(p.shape) for _, p in held]}")
            else:
                merged[k] = torch.cat([p for _, p in held], dim=0)
            continue
        (first, value), *copies = held
        differ = [n for n, p in copies if p.shape != value.shape or not torch.equal(p, value)]
        if differ:
            problems.append(f"{k}: shard {', '.join(differ)} differs from shard {first}")
        else:
            merged[k] = value
    if problems:
        raise CheckpointError(f"the rank shards do not fit together ({len(problems)} problems)", problems)
    return merged


def _check_against(sd: StateDict, model_cfg: ModelConfig, what: str) -> None:
    """Raise one CheckpointError listing every missing, unexpected and mis-shaped key."""
    expected = expected_shapes(model_cfg)
    problems = [f"missing: {k} {list(shape)}" for k, (shape, _) in expected.items() if k not in sd]
    problems += [f"unexpected: {k} {list(v.shape)}" for k, v in sd.items() if k not in expected]
    problems += [f"shape mismatch: {k} expected {list(expected[k][0])}, got {list(v.shape)}"
                 for k, v in sd.items() if k in expected and v.shape != expected[k][0]]
    if problems:
        raise CheckpointError(f"{what} does not fit the model config ({len(problems)} problems)", problems)


def _as_float32(sd: StateDict) -> StateDict:
    return {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()}


def _shard_files(source: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            ranked = sorted((int(p.stem), p) for p in path.glob("*.pth") if p.stem.isdigit())
            if not ranked:
                raise CheckpointError(f"no rank shards in {path}: expected files named 0.pth, 1.pth, ...")
            ranks = [r for r, _ in ranked]
            if ranks != list(range(len(ranks))):
                raise CheckpointError(f"rank shards in {path} are not contiguous: found ranks {ranks}")
            return [p for _, p in ranked]
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file or shard directory")
        return [path]
    files = [Path(p) for p in source]
    if not files:
        raise CheckpointError("empty list of checkpoint files: give at least one file")
    return files


# --- public loaders --------------------------------------------------------------------

def load_m3vit_checkpoint(source: str | Path | Iterable[str | Path], model_cfg: ModelConfig) -> LoadedCheckpoint:
    """Load an M3ViT checkpoint for ``model_cfg``.

    ``source``: one .pth/.pt file, a directory of rank shards ``{rank}.pth``,
    or a list of shard files in rank order.  Top-level wrappers
    (``state_dict``/``model``/``module``) and a ``module.`` key prefix are
    removed; training-only keys (``tam_model*``, ``gate_task_represent*``) are
    dropped with a notice; shards are merged (``.mlp.experts.`` slices
    concatenated on dim 0; the other keys from rank 0, as M3ViT saves them, or
    from any shard, equal wherever repeated: see :func:`_merge_shards`).  Every
    float tensor must be finite in float32.  Gate keys are
    ``...mlp.gate.{t}.w_gate`` with t the task index in config order.
    """
    files = _shard_files(source)
    notices: list[str] = []
    shards, dropped = [], {}
    for f in files:
        sd, gone = _drop_training_only(_tensors(_read(f), notices, f.name))
        shards.append(sd)
        dropped.update(dict.fromkeys(gone))
    if dropped:
        prefixes = sorted(dict.fromkeys(_training_prefix(k) for k in dropped))
        notices.append(f"ignored {len(dropped)} training-only keys: {', '.join(prefixes)}")
    if len(files) > 1:
        notices.append(f"merged {len(files)} rank shards (experts concatenated on dim 0)")
    sd = _merge_shards(shards, [f.name for f in files])
    _check_against(sd, model_cfg, "checkpoint")
    sd = _as_float32(sd)
    _check_finite(sd, f"checkpoint {files[0] if len(files) == 1 else files[0].parent}")
    return LoadedCheckpoint({k: sd[k] for k in expected_shapes(model_cfg)}, notices, files)


_TIMM_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_TIMM_DENSE = ("norm1.", "norm2.", "attn.qkv.", "attn.proj.")
_TIMM_IGNORED = ("norm.", "fc_norm.", "head.")


def load_timm_vit(state_dict_or_path: Mapping[str, torch.Tensor] | str | Path, model_cfg: ModelConfig,
                  src_grid: tuple[int, int] | None = None) -> LoadedCheckpoint:
    """Map a plain timm VisionTransformer state dict onto M3ViT's backbone.

    Copied: cls token, position embedding (bicubic-resampled from
    ``src_grid`` to the config's grid when they differ; ``src_grid`` defaults
    to the config's grid if the token count matches, else a square grid),
    patch embedding, every block's norms and attention, and the MLP of dense
    blocks.  Skipped with a notice: the MLP of MoE blocks, blocks beyond the
    config's depth, the final norm / fc_norm / classifier head.  MoE experts,
    gates and decoders come from ``synthetic_state_dict(model_cfg, seed=0)``.
    Unknown keys, missing backbone keys and shape mismatches raise one
    :class:`CheckpointError`.
    """
    notices: list[str] = []
    files: list[Path] = []
    if isinstance(state_dict_or_path, (str, Path)):
        files = [Path(state_dict_or_path)]
        raw = _read(files[0])
    else:
        raw = state_dict_or_path
    src = _tensors(raw, notices, files[0].name if files else "timm state dict")
    expected = expected_shapes(model_cfg)
    mapped: StateDict = {}
    unknown, ignored, moe_skipped, deep_skipped = [], [], set(), set()
    for k, v in src.items():
        m = _TIMM_BLOCK.fullmatch(k)
        if k in ("cls_token", "pos_embed") or k.startswith("patch_embed.proj."):
            mapped[f"backbone.{k}"] = v
        elif k.startswith(_TIMM_IGNORED):
            ignored.append(k)
        elif m is None:
            unknown.append(k)
        elif int(m[1]) >= model_cfg.depth:
            deep_skipped.add(int(m[1]))
        elif m[2].startswith(_TIMM_DENSE) or (m[2].startswith("mlp.") and not model_cfg.is_moe(int(m[1]))):
            mapped[f"backbone.{k}"] = v
        elif m[2].startswith("mlp."):
            moe_skipped.add(int(m[1]))
        else:
            unknown.append(k)
    if moe_skipped:
        notices.append(f"skipped timm MLP weights of MoE blocks {sorted(moe_skipped)} (experts are not in a dense ViT)")
    if deep_skipped:
        notices.append(f"skipped timm blocks {sorted(deep_skipped)} (config depth {model_cfg.depth})")
    if ignored:
        notices.append(f"ignored final norm / classifier keys: {', '.join(ignored)}")
    pos = mapped.get("backbone.pos_embed")
    if pos is not None and pos.ndim == 3 and pos.shape[-1] == model_cfg.embed_dim:
        mapped["backbone.pos_embed"] = _resample_pos_embed(pos, model_cfg, src_grid, notices)

    unknown += [k[len("backbone."):] for k in mapped if k not in expected]
    problems = [f"unexpected: {k} {list(src[k].shape)}" for k in unknown]
    problems += [f"missing: {k} {list(shape)}" for k, (shape, _) in expected.items()
                 if k.startswith("backbone.") and _timm_provides(k, model_cfg) and k not in mapped]
    problems += [f"shape mismatch: {k} expected {list(expected[k][0])}, got {list(v.shape)}"
                 for k, v in mapped.items() if k in expected and v.shape != expected[k][0]]
    if problems:
        raise CheckpointError(f"timm state dict does not fit the model config ({len(problems)} problems)", problems)

    synthetic = synthetic_state_dict(model_cfg, seed=0)
    filled = [k for k in expected if k not in mapped]
    groups = list(dict.fromkeys(_group(k) for k in filled))
    if groups:
        notices.append(f"filled {len(filled)} keys from synthetic weights (seed 0): {', '.join(groups)}")
    sd = _as_float32(mapped)
    _check_finite({k[len("backbone."):]: v for k, v in sd.items()},
                  f"timm state dict {files[0]}" if files else "timm state dict")
    return LoadedCheckpoint({k: sd[k] if k in sd else synthetic[k] for k in expected}, notices, files)


def _timm_provides(key: str, model_cfg: ModelConfig) -> bool:
    """Whether a dense timm ViT carries this M3ViT backbone key."""
    m = re.fullmatch(r"backbone\.blocks\.(\d+)\.mlp\..+", key)
    return m is None or not model_cfg.is_moe(int(m[1]))


def _group(key: str) -> str:
    """A short group name for a synthesised key: ``MoE experts``, ``MoE gates``, ``decoders.<task>``."""
    if _EXPERT_MARK in key:
        return "MoE experts"
    if ".mlp.gate." in key:
        return "MoE gates"
    if key.startswith("decoders."):
        return ".".join(key.split(".")[:2])
    return key


def _resample_pos_embed(pos: torch.Tensor, model_cfg: ModelConfig, src_grid: tuple[int, int] | None,
                        notices: list[str]) -> torch.Tensor:
    """pos [1, 1 + gh*gw, D] on ``src_grid`` -> [1, num_tokens, D] on the config's grid."""
    n_patch = pos.shape[1] - 1
    grid = model_cfg.grid
    if src_grid is None:
        side = round(n_patch ** 0.5)
        if n_patch == model_cfg.num_patches:
            src_grid = grid
        elif side * side == n_patch:
            src_grid = (side, side)
        else:
            raise CheckpointError("cannot infer the timm position-embedding grid",
                                  [f"pos_embed has {n_patch} patch positions (not square, config grid {grid}); "
                                   f"pass src_grid"])
    if src_grid[0] * src_grid[1] != n_patch:
        raise CheckpointError("src_grid does not match pos_embed",
                              [f"pos_embed has {n_patch} patch positions, src_grid {tuple(src_grid)}"])
    if tuple(src_grid) == tuple(grid):
        return pos
    notices.append(f"resampled pos_embed from grid {tuple(src_grid)} to {grid} (bicubic)")
    return resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(src_grid), num_prefix_tokens=1)
