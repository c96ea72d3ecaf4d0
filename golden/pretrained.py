"""Checkpoints shipped with edgemoe: where they are, what they were trained on, and a check that they are intact.

Each shipped checkpoint lies in ``golden/checkpoints/`` in M3ViT's format
(float16 tensors) beside its recipe ``<name>.pth.json``, written by
``edgemoe train``: the config digest, the data recipe, the command, the
steps, the wall time, the validation figures, the depth head's encoding and
the checkpoint's SHA-256; ``edgemoe adjust`` adds its step
(``logit_adjustment``: the offsets and the validation mIoU before and after).  :func:`shipped_checkpoint` returns one only after
its bytes match that SHA-256 and its config matches the model asked for.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"

#: config name -> checkpoint file in CHECKPOINT_DIR
SHIPPED: dict[str, str] = {"m3vit-tiny-cityscapes": "m3vit-tiny-scenes.pth"}


class ShippedCheckpointError(ValueError):
    """A shipped checkpoint that is missing, altered or for another model."""


@dataclass(frozen=True)
class ShippedCheckpoint:
    """A verified shipped checkpoint: its ``path`` and its training ``recipe``."""

    path: Path
    recipe: dict

    @property
    def depth_encoding(self) -> str:
        return self.recipe.get("depth_encoding", "")

    def describe(self) -> str:
        r, v = self.recipe, self.recipe.get("val", {})
        runs = lineage(r)
        figures = f"; validation mIoU {100 * v['miou']:.1f}%, AbsRel {v['abs_rel']:.3f}" if v else ""
        adj = r.get("logit_adjustment")
        if isinstance(adj, dict) and "val_miou_after" in adj:
            figures = (f"; validation AbsRel {v['abs_rel']:.3f}" if v else "") + \
                (f"; output biases re-tuned on {adj.get('val_scenes', '?')} validation scenes, "
                 f"mIoU {100 * adj['val_miou_before']:.1f}% -> {100 * adj['val_miou_after']:.1f}%")
        steps = " + ".join(str(x["steps"]) for x in runs)
        minutes = " + ".join(f"{x['wall_s'] / 60:.0f}" for x in runs)
        how = f"{steps} steps, {minutes} min" if len(runs) == 1 else f"{steps} steps in {len(runs)} runs, {minutes} min"
        return (f"{self.path.name}: trained by edgemoe on {r['data']['train_scenes']} generated street scenes, "
                f"{how} on {r.get('threads', '?')} CPU threads{figures}")


def lineage(recipe: dict) -> list[dict]:
    """The training runs that made a checkpoint, first run first: a fine-tuning run's recipe
    holds the recipe of the checkpoint it started from (``init.recipe``)."""
    runs = [recipe]
    while isinstance(runs[-1].get("init"), dict) and isinstance(runs[-1]["init"].get("recipe"), dict) \
            and len(runs) < 64:
        runs.append(runs[-1]["init"]["recipe"])
    return runs[::-1]


def checkpoint_recipe(path: str | Path) -> dict | None:
    """The training recipe ``<checkpoint>.json`` beside a checkpoint file, checked against the file's SHA-256;
    None when the checkpoint has no recipe (not trained by edgemoe)."""
    path = Path(path)
    recipe_path = path.with_name(path.name + ".json")
    if not path.is_file() or not recipe_path.is_file():
        return None
    try:
        recipe = json.loads(recipe_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShippedCheckpointError(f"{recipe_path}: not a JSON training recipe ({e})") from None
    if not isinstance(recipe, dict):
        raise ShippedCheckpointError(f"{recipe_path}: not a JSON training recipe (a {type(recipe).__name__})")
    from .dataset import sha256_file

    digest = sha256_file(path)
    if digest != recipe.get("sha256"):
        raise ShippedCheckpointError(f"{path}: SHA-256 {digest[:16]}… differs from its recipe's "
                                     f"{str(recipe.get('sha256'))[:16]}…: the file was altered or truncated")
    return recipe


def shipped_checkpoint(cfg) -> ShippedCheckpoint | None:
    """The verified shipped checkpoint for ``cfg`` (by config name and its model's shape), or None if there is none."""
    name = SHIPPED.get(cfg.name)
    if name is None:
        return None
    from edgemoe.loading import load_config

    if load_config(cfg.name).model != cfg.model:
        return None  # the preset's name with another model shape (--set model.*): no shipped weights fit
    path = CHECKPOINT_DIR / name
    recipe = checkpoint_recipe(path)
    if recipe is None:
        raise ShippedCheckpointError(f"{path}: the shipped checkpoint or its recipe is missing from this installation")
    return ShippedCheckpoint(path, recipe)
