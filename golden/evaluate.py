"""Task metrics of one model on a scene split, for the float model, the fixed-point model or any predictor.

A *predictor* maps a batch of images ``[B, 3, H, W]`` (float32 in [0, 1])
to the outputs of every task head, ``{task: [B, C, H, W] float}``.
:func:`evaluate` runs one over a split and returns mIoU, pixel accuracy,
per-class IoU (segmentation task) and AbsRel, RMSE, delta1 (depth task,
decoded with :func:`depth_from_output`).
:func:`float_predictor` and :func:`fixed_predictor` build the golden ones;
the host runtime provides the device's (``Accelerator.infer``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from edgemoe.config import ConfigError

from .dataset import Split
from .metrics import DepthMetrics, SegMetrics

Predictor = Callable[[torch.Tensor], dict[str, np.ndarray]]

DEPTH_ENCODING = "ln_m"
"""What a trained depth head outputs: the natural log of the depth in metres."""


def depth_from_output(output: np.ndarray | torch.Tensor):
    """Depth head output (:data:`DEPTH_ENCODING`) -> depth in metres."""
    if isinstance(output, torch.Tensor):
        return torch.exp(output.clamp(-10, 10))
    return np.exp(np.clip(output, -10, 10))


def task_roles(model_cfg) -> tuple[str, str]:
    """(segmentation task, depth task): the multi-channel task and the one-channel task of the config."""
    seg = [t.name for t in model_cfg.tasks if t.out_channels > 1]
    dep = [t.name for t in model_cfg.tasks if t.out_channels == 1]
    if len(seg) != 1 or len(dep) != 1:
        raise ConfigError("model.tasks", [t.name for t in model_cfg.tasks], "training and evaluation need exactly "
                          "one segmentation task (out_channels > 1) and one depth task (out_channels = 1)")
    return seg[0], dep[0]


def float_predictor(cfg, state_dict) -> Predictor:
    """The float M3ViT (eval mode) as a predictor."""
    from .float_model import M3ViT

    model = M3ViT.from_state_dict(cfg.model, state_dict)

    @torch.no_grad()
    def predict(images: torch.Tensor) -> dict[str, np.ndarray]:
        return {t: model(images, t).numpy() for t in cfg.model.task_names}
    return predict


def fixed_predictor(cfg, state_dict, tokens_out: dict | None = None) -> Predictor:
    """The bit-accurate backbone of ``cfg.precision`` with the float heads, as a predictor.

    With ``tokens_out`` (a dict), each call appends the raw backbone words
    ``[B, N, D]`` of every task to ``tokens_out[task]`` (for device equality checks).
    """
    from .fixed_model import FixedM3ViT

    model = FixedM3ViT(cfg, state_dict)

    def predict(images: torch.Tensor) -> dict[str, np.ndarray]:
        out = {}
        for t in cfg.model.task_names:
            tokens = model.forward(images, t, keep_taps=False).tokens
            if tokens_out is not None:
                tokens_out.setdefault(t, []).append(tokens.numpy())
            out[t] = model.run_head(tokens, t).numpy()
        return out
    return predict


def evaluate(model_cfg, predict: Predictor, split: Split, limit: int | None = None, batch: int = 8,
             desc: str = "eval", progress: bool = True) -> dict:
    """Metrics of ``predict`` (a model of ``model_cfg``) on the first ``limit`` scenes of ``split`` (all by default).

    Returns ``miou``, ``pixel_acc``, ``iou`` (list per class), ``abs_rel``,
    ``rmse_m``, ``delta1``, ``abs_rel_by_class`` (list per true class) and
    ``scenes``.
    """
    from tqdm import tqdm

    seg_task, depth_task = task_roles(model_cfg)
    classes = next(t.out_channels for t in model_cfg.tasks if t.name == seg_task)
    n = len(split) if limit is None else min(limit, len(split))
    seg, dep = SegMetrics(classes), DepthMetrics(classes)
    with tqdm(total=n, desc=desc, unit="scene", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch):
            index = np.arange(start, min(start + batch, n))
            out = predict(split.images(index))
            seg.update(out[seg_task].argmax(1), split.labels[index])
            dep.update(depth_from_output(out[depth_task][:, 0]), split.depth_m[index], split.labels[index])
            bar.update(len(index))
    return {**seg.summary(), **dep.summary(), "scenes": n}


def format_table(rows: dict[str, dict], class_names) -> str:
    """A text table: one row per evaluated model (name -> :func:`evaluate` result)."""
    head = f"{'model':<22} {'scenes':>6} {'mIoU %':>7} {'pixel %':>8} {'AbsRel':>7} {'RMSE m':>7} {'d<1.25 %':>9}  " \
        + " ".join(f"{c[:6]:>6}" for c in class_names)
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        ious = " ".join("   n/a" if not np.isfinite(v) else f"{100 * v:6.1f}" for v in r["iou"])
        lines.append(f"{name:<22} {r['scenes']:>6} {100 * r['miou']:7.2f} {100 * r['pixel_acc']:8.2f} "
                     f"{r['abs_rel']:7.4f} {r['rmse_m']:7.2f} {100 * r['delta1']:9.2f}  {ious}")
    lines.append("(per-class columns: IoU %)")
    by_class = {name: r["abs_rel_by_class"] for name, r in rows.items() if "abs_rel_by_class" in r}
    if by_class:
        # where the depth error is: AbsRel over each true class's pixels
        lines += ["", f"{'depth AbsRel by class':<22} " + " ".join(f"{c[:6]:>6}" for c in class_names)]
        for name, v in by_class.items():
            lines.append(f"{name:<22} " + " ".join("   n/a" if not np.isfinite(x) else f"{x:6.3f}" for x in v))
    return "\n".join(lines)
