"""Output images: a colourised segmentation (fixed palette) and a colour-mapped depth map, as PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgemoe.golden.scenes import CLASS_COLOURS as CITYSCAPES7_COLORS
from edgemoe.golden.scenes import CLASSES as CITYSCAPES7  # M3ViT's 7 classes: the Cityscapes categories
from edgemoe.golden.scenes import DEPTH_COLOURMAP as DEPTH_CMAP


def palette(num_classes: int) -> np.ndarray:
    """[num_classes, 3] uint8: the Cityscapes colours first, then tab20's for more classes."""
    if num_classes <= len(CITYSCAPES7_COLORS):
        return CITYSCAPES7_COLORS[:num_classes]
    from matplotlib import colormaps

    extra = (np.array(colormaps["tab20"].colors)[:, :3] * 255).round().astype(np.uint8)
    reps = -(-(num_classes - len(CITYSCAPES7_COLORS)) // len(extra))
    return np.concatenate([CITYSCAPES7_COLORS, np.tile(extra, (reps, 1))])[:num_classes]


def class_names(num_classes: int) -> list[str]:
    return list(CITYSCAPES7) if num_classes == len(CITYSCAPES7) else [f"class {i}" for i in range(num_classes)]


def colorize_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[H, W] class indices -> [H, W, 3] uint8."""
    return palette(num_classes)[np.clip(np.asarray(labels), 0, num_classes - 1)]


def colorize_depth(depth: np.ndarray, cmap: str = DEPTH_CMAP) -> tuple[np.ndarray, tuple[float, float]]:
    """[H, W] values -> ([H, W, 3] uint8 with the colour map stretched to this map's range, (min, max))."""
    from matplotlib import colormaps

    d = np.asarray(depth, dtype=np.float64)
    lo, hi = float(np.nanmin(d)), float(np.nanmax(d))
    norm = (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)
    rgb = colormaps[cmap](norm)[..., :3]
    return (rgb * 255).round().astype(np.uint8), (lo, hi)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """[C, H, W] float in [0, 1] -> [H, W, 3] uint8."""
    a = np.asarray(image)
    a = np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a[:3]
    return (np.clip(a.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    from skimage.io import imsave

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, rgb, check_contrast=False)
    return path


def unique_stems(paths: list[str | Path]) -> tuple[list[str], list[str]]:
    """(one distinct output name stem per input file, a line for each input renamed to keep it distinct).

    The stem is the file's own (``a/x.png`` -> ``x``); a later input whose stem
    is taken gets ``x-2``, ``x-3``, ... (the first number not taken by any input).
    """
    own = [Path(p).stem for p in paths]
    taken = set(own)
    stems, notes, used = [], [], set()
    for path, stem in zip(paths, own):
        name, n = stem, 1
        while name in used or (name != stem and name in taken):
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        stems.append(name)
        if name != stem:
            notes.append(f"{path}: its outputs are named {name}_<task>.png ({stem} is taken by another input)")
    return stems, notes


def save_task_maps(result, out_dir: str | Path, stems: list[str]) -> list[Path]:
    """One PNG per image and task: ``<stem>_<task>.png`` (palette for classes, colour map for one channel)."""
    out = Path(out_dir)
    paths = []
    for task, output in result.outputs.items():
        maps = result.map(task)
        for i, stem in enumerate(stems):
            if output.shape[1] > 1:
                rgb = colorize_labels(maps[i], output.shape[1])
            else:
                rgb, _ = colorize_depth(maps[i])
            paths.append(save_png(out / f"{stem}_{task}.png", rgb))
    return paths


def _save_figure(fig, axes, title: str, path: str | Path) -> Path:
    """Axes off, the title on top, the figure written to ``path`` (folders made)."""
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def decoded_outputs(result, depth_encoding: str = ""):
    """``result`` with each one-channel (depth) output in metres when the head's ``depth_encoding`` says how
    (``ln_m``: the natural log of metres, as edgemoe's trained heads output); unchanged otherwise."""
    import dataclasses

    if not depth_encoding:
        return result
    from edgemoe.golden.evaluate import DEPTH_ENCODING, depth_from_output

    if depth_encoding != DEPTH_ENCODING:
        raise ValueError(f"depth_encoding = {depth_encoding!r}: this edgemoe decodes {DEPTH_ENCODING!r}")
    outputs = {t: (depth_from_output(o).astype(np.float32) if o.shape[1] == 1 else o)
               for t, o in result.outputs.items()}
    return dataclasses.replace(result, outputs=outputs)


def scene_figures(result, index: int, labels: np.ndarray, depth_m: np.ndarray) -> dict:
    """mIoU, pixel accuracy, AbsRel and delta1 of image ``index`` of a decoded result against its truth."""
    from edgemoe.golden.metrics import DepthMetrics, SegMetrics

    seg_task = next(t for t, o in result.outputs.items() if o.shape[1] > 1)
    seg = SegMetrics(result.outputs[seg_task].shape[1])
    seg.update(result.map(seg_task)[index], labels)
    dep = DepthMetrics()
    dep.update(result.depth[index], depth_m)
    return {**seg.summary(), **dep.summary()}


def _log_depth_rgb(depth_m: np.ndarray, lo: float, hi: float) -> np.ndarray:
    from matplotlib import colormaps

    d = np.log(np.clip(depth_m, lo, hi) / lo) / np.log(hi / lo)
    return (colormaps[DEPTH_CMAP](d)[..., :3] * 255).round().astype(np.uint8)


def save_truth_comparison(path: str | Path, result, index: int, labels: np.ndarray, depth_m: np.ndarray,
                          title: str = "") -> Path:
    """Input, true and predicted labels; true and predicted depth on one log colour scale (metres)."""
    from matplotlib import cm, colors
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    seg_task = next(t for t, o in result.outputs.items() if o.shape[1] > 1)
    k = result.outputs[seg_task].shape[1]
    pred_depth = result.depth[index]
    lo, hi = 0.5, max(float(np.max(depth_m)), 1.0)
    fig = Figure(figsize=(12.6, 6.0), dpi=120, layout="constrained")
    axes = fig.subplots(2, 3)
    panels = [(axes[0, 0], to_rgb(result.images[index]), "input"),
              (axes[0, 1], colorize_labels(labels, k), "true labels"),
              (axes[0, 2], colorize_labels(result.map(seg_task)[index], k), f"{seg_task} (device)"),
              (axes[1, 1], _log_depth_rgb(depth_m, lo, hi), "true depth"),
              (axes[1, 2], _log_depth_rgb(pred_depth, lo, hi), "depth (device)")]
    for ax, rgb, name in panels:
        ax.imshow(rgb)
        ax.set_title(name, fontsize=9)
    names, pal = class_names(k), palette(k)
    axes[1, 0].legend(handles=[Patch(color=pal[c] / 255, label=names[c]) for c in range(k)], loc="center",
                      fontsize=8, frameon=False, ncol=2)
    fig.colorbar(cm.ScalarMappable(colors.LogNorm(lo, hi), DEPTH_CMAP), ax=axes[1, 1:], shrink=0.8,
                 label="depth (m)")
    return _save_figure(fig, axes.ravel(), title, path)


def save_overview(path: str | Path, result, index: int = 0, title: str = "", depth_unit: str = "") -> Path:
    """Input | each task's map, with a class legend and a depth colour bar (matplotlib, no display needed)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib import cm, colors

    tasks = list(result.outputs)
    fig = Figure(figsize=(4.2 * (1 + len(tasks)), 3.0), dpi=120, layout="constrained")
    axes = fig.subplots(1, 1 + len(tasks))
    axes[0].imshow(to_rgb(result.images[index]))
    axes[0].set_title("input (pixel codes the kernel saw)")
    for ax, task in zip(axes[1:], tasks):
        out = result.outputs[task]
        m = result.map(task)[index]
        if out.shape[1] > 1:
            ax.imshow(colorize_labels(m, out.shape[1]))
            present = sorted(set(np.unique(m).tolist()))
            pal = palette(out.shape[1])
            names = class_names(out.shape[1])
            ax.legend(handles=[Patch(color=pal[c] / 255, label=names[c]) for c in present], fontsize=6,
                      loc="lower right", framealpha=0.7)
        else:
            rgb, (lo, hi) = colorize_depth(m)
            ax.imshow(rgb)
            fig.colorbar(cm.ScalarMappable(colors.Normalize(lo, hi), DEPTH_CMAP), ax=ax, shrink=0.8,
                         label=f"depth ({depth_unit})" if depth_unit else None)
        ax.set_title(task)
    return _save_figure(fig, axes, title, path)
