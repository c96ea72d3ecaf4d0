"""Output images: a colourised segmentation (fixed palette) and a colour-mapped depth map, as PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: M3ViT's 7-class Cityscapes (the Cityscapes categories) and their Cityscapes colours
CITYSCAPES7 = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
CITYSCAPES7_COLORS = np.array([(128, 64, 128), (70, 70, 70), (250, 170, 30), (107, 142, 35), (70, 130, 180),
                               (220, 20, 60), (0, 0, 142)], dtype=np.uint8)
DEPTH_CMAP = "magma"


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


def save_overview(path: str | Path, result, index: int = 0, title: str = "") -> Path:
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
            fig.colorbar(cm.ScalarMappable(colors.Normalize(lo, hi), DEPTH_CMAP), ax=ax, shrink=0.8)
        ax.set_title(task)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
