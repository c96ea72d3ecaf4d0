"""A scene dataset on disk: splits of rendered street scenes, checked before use.

A dataset folder holds one ``<split>.npz`` per split (``images_u8`` [N, H, W, 3]
uint8 RGB, ``labels`` [N, H, W] uint8 class ids, ``depth_m`` [N, H, W]
float16 metres), ``scenes.json`` (the recipe: generator version, seed, size,
counts, and each file's SHA-256) and ``contact_sheet.png``.  Scene ``i`` of
split ``s`` is rendered from the seed ``(seed, SPLITS.index(s), i)``, so the
splits never share a scene and a dataset is reproduced exactly by its recipe.
:func:`load_split` refuses a folder whose files do not match their recipe.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemoe.files import atomic_output, atomic_write_text

from .scenes import CLASSES, DEPTH_COLOURMAP, SKY_DEPTH_M, colour_labels, render_scene

SPLITS = ("train", "val", "test")
GENERATOR_VERSION = 2
"""Bumped whenever :func:`~edgemoe.golden.scenes.render_scene` draws differently for the same seed."""
RECIPE = "scenes.json"
MAX_SCENES = 200_000
"""Upper bound on the scenes of one split (about 20 GB at 128x256)."""


class DatasetError(ValueError):
    """A dataset folder that is missing, incomplete or not what its recipe says."""


@dataclass(frozen=True)
class Split:
    """One split in memory: ``images_u8`` [N, H, W, 3], ``labels`` [N, H, W] uint8, ``depth_m`` [N, H, W] float32."""

    name: str
    images_u8: np.ndarray
    labels: np.ndarray
    depth_m: np.ndarray

    def __len__(self) -> int:
        return len(self.images_u8)

    def images(self, index=slice(None)):
        """Scenes ``index`` (an index array or a slice) as the model's input: float32 torch [B, 3, H, W] in [0, 1]."""
        import torch

        return torch.from_numpy(self.images_u8[index]).permute(0, 3, 1, 2).float() / 255


def scene_seed(seed: int, split: str, index: int) -> tuple[int, int, int]:
    """The seed of scene ``index`` of ``split``: disjoint between splits by construction."""
    return (seed, SPLITS.index(split), index)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def render_split(split: str, n: int, seed: int, height: int, width: int, progress: bool = True) -> Split:
    """Render ``n`` scenes of ``split`` (a progress bar when ``progress``)."""
    from tqdm import tqdm

    images = np.empty((n, height, width, 3), np.uint8)
    labels = np.empty((n, height, width), np.uint8)
    depth = np.empty((n, height, width), np.float32)
    for i in tqdm(range(n), desc=f"scenes {split}", unit="scene", disable=not progress, leave=False):
        s = render_scene(scene_seed(seed, split, i), height, width)
        images[i], labels[i], depth[i] = s.image_u8, s.label, s.depth_m
    return Split(split, images, labels, depth)


def _check_count(field: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_SCENES:
        raise DatasetError(f"{field} = {value!r}: must be an integer in 0..{MAX_SCENES}")
    return int(value)


def write_dataset(out_dir: str | Path, counts: dict[str, int], seed: int = 0, height: int = 128, width: int = 256,
                  progress: bool = True) -> Path:
    """Render every split of ``counts`` (split -> number of scenes) into ``out_dir``; returns the recipe's path.

    Files are written under temporary names and renamed into place, the
    recipe last, so an interrupted run never leaves a folder that loads.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out}: exists and is not a folder")
    unknown = set(counts) - set(SPLITS)
    if unknown:
        raise DatasetError(f"splits {sorted(unknown)}: unknown; allowed: {', '.join(SPLITS)}")
    for name, n in counts.items():
        _check_count(f"{name} scenes", n)
    for field, value, lo, hi in (("height", height, 16, 1024), ("width", width, 16, 2048)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise DatasetError(f"{field} = {value!r}: must be an integer in {lo}..{hi}")
    out.mkdir(parents=True, exist_ok=True)
    recipe_path = out / RECIPE
    recipe_path.unlink(missing_ok=True)
    files = {}
    for name in SPLITS:
        if name not in counts:
            continue
        split = render_split(name, counts[name], seed, height, width, progress)
        path = out / f"{name}.npz"
        with atomic_output(path, suffix=".tmp.npz") as tmp:
            np.savez_compressed(tmp, images_u8=split.images_u8, labels=split.labels,
                                depth_m=split.depth_m.astype(np.float16))
        files[name] = {"file": path.name, "scenes": counts[name], "sha256": sha256_file(path)}
        if name == "test" or (name == "train" and "test" not in counts):
            save_contact_sheet(out / "contact_sheet.png", split)
    recipe = {"generator_version": GENERATOR_VERSION, "seed": int(seed), "height": height, "width": width,
              "classes": list(CLASSES), "depth_unit": "m", "sky_depth_m": SKY_DEPTH_M, "splits": files}
    atomic_write_text(recipe_path, json.dumps(recipe, indent=2) + "\n")
    return recipe_path


def read_recipe(data_dir: str | Path) -> dict:
    """The recipe of a dataset folder, checked for shape (not yet the files' checksums)."""
    path = Path(data_dir) / RECIPE
    if not Path(data_dir).is_dir():
        raise DatasetError(f"--data {data_dir}: no such folder (make one with `edgemoe data scenes --out {data_dir}`)")
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing; {data_dir} is not a scene dataset (or its writing was interrupted)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not a JSON recipe ({e})") from None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("splits"), dict):
        raise DatasetError(f"{path}: no 'splits' table")
    if recipe.get("generator_version") != GENERATOR_VERSION:
        raise DatasetError(f"{path}: generator_version {recipe.get('generator_version')!r}, this edgemoe renders "
                           f"version {GENERATOR_VERSION}: render the dataset again")
    if list(recipe.get("classes", [])) != list(CLASSES):
        raise DatasetError(f"{path}: classes {recipe.get('classes')!r}, expected {list(CLASSES)}")
    return recipe


def load_split(data_dir: str | Path, split: str, limit: int | None = None) -> Split:
    """Split ``split`` of the dataset in ``data_dir`` (its first ``limit`` scenes), after checking its SHA-256."""
    if split not in SPLITS:
        raise DatasetError(f"split = {split!r}: allowed: {', '.join(SPLITS)}")
    recipe = read_recipe(data_dir)
    entry = recipe["splits"].get(split)
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise DatasetError(f"{Path(data_dir) / RECIPE}: no '{split}' split "
                           f"(it has {', '.join(recipe['splits']) or 'none'})")
    path = Path(data_dir) / entry["file"]
    if path.name != entry["file"] or path.name.startswith("."):
        raise DatasetError(f"{Path(data_dir) / RECIPE}: split file {entry['file']!r} must be a plain file name")
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    if sha256_file(path) != entry.get("sha256"):
        raise DatasetError(f"{path}: SHA-256 differs from the recipe's (changed or truncated): render it again")
    with np.load(path, allow_pickle=False) as z:
        try:
            images, labels, depth = z["images_u8"], z["labels"], z["depth_m"]
        except KeyError as e:
            raise DatasetError(f"{path}: no array {e}") from None
    n, h, w = len(images), recipe["height"], recipe["width"]
    if images.shape != (n, h, w, 3) or labels.shape != (n, h, w) or depth.shape != (n, h, w):
        raise DatasetError(f"{path}: shapes {images.shape}, {labels.shape}, {depth.shape} do not match "
                           f"{n} scenes of {h}x{w}")
    if limit is not None:
        images, labels, depth = images[:limit], labels[:limit], depth[:limit]
    return Split(split, images, labels, depth.astype(np.float32))


def contact_sheet(split: Split, count: int = 6) -> np.ndarray:
    """Up to ``count`` scenes as rows of (image, labels, depth): an RGB uint8 mosaic with 2-pixel gutters."""
    rows = []
    for i in range(min(count, len(split))):
        d = np.log(np.clip(split.depth_m[i], 0.5, SKY_DEPTH_M) / 0.5) / np.log(SKY_DEPTH_M / 0.5)
        from matplotlib import colormaps

        depth_rgb = (colormaps[DEPTH_COLOURMAP](d)[..., :3] * 255).round().astype(np.uint8)
        gutter = np.full((split.images_u8.shape[1], 2, 3), 255, np.uint8)
        rows.append(np.concatenate([split.images_u8[i], gutter, colour_labels(split.labels[i]), gutter, depth_rgb], 1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], 0) if rows else np.zeros((1, 1, 3), np.uint8)


def save_contact_sheet(path: str | Path, split: Split, count: int = 6) -> Path:
    """:func:`contact_sheet` with a class legend, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .scenes import CLASS_COLOURS

    mosaic = contact_sheet(split, count)
    zoom = -(-768 // mosaic.shape[1])  # small scenes are enlarged so the legend fits
    mosaic = mosaic.repeat(zoom, 0).repeat(zoom, 1)
    h, w = mosaic.shape[:2]
    band_in = 0.7  # legend and caption below the mosaic, inches
    fig = plt.figure(figsize=(w / 100, h / 100 + band_in), dpi=100)
    fig_h = h / 100 + band_in
    ax = fig.add_axes([0, band_in / fig_h, 1, 1 - band_in / fig_h])
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    handles = [Patch(color=CLASS_COLOURS[k] / 255, label=c) for k, c in enumerate(CLASSES)]
    fig.legend(handles=handles, loc="lower center", ncol=len(CLASSES), fontsize=8, frameon=False)
    fig.text(0.5, 0.4 / fig_h, f"image | labels | depth (log scale, bright = far, {0.5:g}..{SKY_DEPTH_M:g} m)",
             ha="center", va="bottom", fontsize=8)
    path = Path(path)
    with atomic_output(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path
