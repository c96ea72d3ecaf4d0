"""Logit adjustment: re-tune a trained segmentation head's per-class output biases on held-out scenes.

Class-balanced cross-entropy (``edgemoe train --class-balance``) multiplies a
rare class's loss by a weight w_c > 1.  That teaches the rare features, but it
also acts like a prior log(w_c) added to the class's logit: the trained head
over-predicts the rare classes (a human pixel predicted for every 4 true ones
is typical), which costs IoU.  After training, one offset per class, added to
the bias of the head's last layer (the 1x1 conv ``decoders.<task>.conv_S.bias``),
moves the decision boundaries back.  :func:`tune_offsets` chooses the offsets
that maximise mIoU on the validation split by a coordinate search over stored
logits; the test split is never looked at.  Only those C numbers change: the
backbone, the depth head and the fixed-point path are untouched, and the
checkpoint keeps M3ViT's format.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .dataset import Split
from .evaluate import task_roles
from .heads import classifier_name
from .metrics import SegMetrics

SEARCH_STEPS = (1.0, 0.5, 0.25, 0.125)
"""The offset steps of the coordinate search (logit units), coarse to fine."""

MAX_SWEEPS = 4
"""Sweeps over the classes per step size at most (a sweep that improves nothing ends the step)."""


class AdjustError(ValueError):
    """A split, model or checkpoint the adjustment cannot use; the message names it."""


@dataclass(frozen=True)
class Adjustment:
    """The offsets found (logit units, one per class) and the validation figures before and after."""

    task: str
    bias_key: str
    offsets: tuple[float, ...]
    miou_before: float
    miou_after: float
    iou_before: tuple[float, ...]
    iou_after: tuple[float, ...]
    scenes: int

    def as_dict(self) -> dict:
        return {"task": self.task, "bias_key": self.bias_key, "offsets": list(self.offsets),
                "val_miou_before": self.miou_before, "val_miou_after": self.miou_after,
                "val_iou_before": list(self.iou_before), "val_iou_after": list(self.iou_after),
                "val_scenes": self.scenes}


def bias_key(model_cfg) -> tuple[str, str]:
    """(segmentation task, state-dict key of its head's last bias [C])."""
    seg_task, _ = task_roles(model_cfg)
    return seg_task, f"decoders.{seg_task}.{classifier_name(model_cfg.upsample_stages)}.bias"


@torch.no_grad()
def segmentation_logits(model_cfg, state_dict, split: Split, batch: int = 8, progress: bool = True) -> np.ndarray:
    """The float model's segmentation logits on every scene of ``split``: float32 [N, C, H, W]."""
    from tqdm import tqdm

    from .float_model import M3ViT

    seg_task, _ = task_roles(model_cfg)
    model = M3ViT.from_state_dict(model_cfg, state_dict)
    out = []
    with tqdm(total=len(split), desc="logits", unit="scene", disable=not progress, leave=False) as bar:
        for start in range(0, len(split), batch):
            images = split.images(slice(start, start + batch))
            out.append(model(images, seg_task).numpy())
            bar.update(len(images))
    return np.concatenate(out)


def segmentation_summary(logits: np.ndarray, labels: np.ndarray, offsets: np.ndarray, chunk: int = 16) -> dict:
    """:class:`SegMetrics` summary of argmax(logits + offsets) against ``labels`` [N, H, W]."""
    seg = SegMetrics(logits.shape[1])
    shift = np.asarray(offsets, np.float32)[None, :, None, None]
    for start in range(0, len(logits), chunk):
        seg.update((logits[start:start + chunk] + shift).argmax(1), labels[start:start + chunk])
    return seg.summary()


def tune_offsets(logits: np.ndarray, labels: np.ndarray, steps=SEARCH_STEPS, max_sweeps: int = MAX_SWEEPS,
                 progress: bool = True) -> tuple[np.ndarray, dict, dict]:
    """Per-class offsets maximising the mIoU of argmax(logits + offsets): (offsets [C], summary before, after).

    Coordinate search from zero: for each step size, sweep the classes trying
    +-step on each and keep a change that raises mIoU, until a sweep changes
    nothing (or ``max_sweeps``).  Deterministic; offsets are multiples of the
    finest step.  A constant added to every class changes no argmax, so the
    result is shifted to mean zero.
    """
    from tqdm import tqdm

    if logits.ndim != 4 or labels.shape != (logits.shape[0],) + logits.shape[2:]:
        raise AdjustError(f"logits {logits.shape} and labels {labels.shape}: want [N, C, H, W] and [N, H, W]")
    classes = logits.shape[1]
    offsets = np.zeros(classes, np.float64)
    before = segmentation_summary(logits, labels, offsets)
    best = before
    trials = len(steps) * max_sweeps * classes * 2
    with tqdm(total=trials, desc="offsets", unit="trial", disable=not progress, leave=False) as bar:
        for step in steps:
            for _ in range(max_sweeps):
                changed = False
                for c in range(classes):
                    for sign in (1.0, -1.0):
                        trial = offsets.copy()
                        trial[c] += sign * step
                        summary = segmentation_summary(logits, labels, trial)
                        bar.update(1)
                        if summary["miou"] > best["miou"] + 1e-6:
                            offsets, best, changed = trial, summary, True
                            break
                if not changed:
                    break
    return offsets - offsets.mean(), before, best


def adjust_state_dict(model_cfg, state_dict, split: Split, dtype: torch.dtype = torch.float32,
                      progress: bool = True) -> tuple[dict, Adjustment]:
    """``state_dict`` with its segmentation head's last bias re-tuned on ``split`` (a validation split).

    ``dtype``: what the checkpoint will store (:func:`storage_dtype`); the new
    bias is rounded to it, and the figures "after" are those of the rounded bias.
    """
    task, key = bias_key(model_cfg)
    if key not in state_dict:
        raise AdjustError(f"the checkpoint has no {key}: not an M3ViT with a {task} head")
    if len(split) == 0:
        raise AdjustError(f"split {split.name!r} has no scenes: the offsets need held-out scenes to tune on")
    logits = segmentation_logits(model_cfg, state_dict, split, progress=progress)
    offsets, before, _ = tune_offsets(logits, split.labels, progress=progress)
    old = state_dict[key].float()
    new = (old + torch.as_tensor(offsets, dtype=torch.float32)).to(dtype).float()
    applied = (new - old).numpy()
    after = segmentation_summary(logits, split.labels, applied)
    out = dict(state_dict)
    out[key] = new.to(state_dict[key].dtype)
    adj = Adjustment(task, key, tuple(float(o) for o in applied), before["miou"], after["miou"],
                     tuple(before["iou"]), tuple(after["iou"]), len(split))
    return out, adj


def storage_dtype(state_dict) -> torch.dtype:
    """float16 when every float tensor of ``state_dict`` is exactly a float16 value, else float32 (lossless)."""
    for v in state_dict.values():
        if v.is_floating_point() and not torch.equal(v.float(), v.half().float()):
            return torch.float32
    return torch.float16
