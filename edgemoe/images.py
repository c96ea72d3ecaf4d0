"""Reading images into the model's input format: float [B, 3, H, W] in [0, 1]."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class ImageError(ValueError):
    """An image that cannot be read or converted; names the file."""


def to_model_input(array: np.ndarray, height: int, width: int, source: str = "image") -> torch.Tensor:
    """One HxW(xC) image (uint8 or float in [0, 1]) -> float32 [3, height, width].

    Grey images are repeated to three channels, alpha is dropped; the image
    is centre-cropped to the target aspect ratio, then resized (antialiased).
    """
    from skimage.transform import resize

    a = np.asarray(array)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ImageError(f"{source}: expected an HxW, HxWx3 or HxWx4 image, got shape {a.shape}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]
    if a.dtype == np.uint8:
        a = a.astype(np.float64) / 255.0
    elif np.issubdtype(a.dtype, np.floating):
        if a.size and (np.nanmin(a) < 0 or np.nanmax(a) > 1 or np.isnan(a).any()):
            raise ImageError(f"{source}: float images must hold values in [0, 1]")
    else:
        raise ImageError(f"{source}: pixel type {a.dtype} not supported (uint8 or float in [0, 1])")
    h, w = a.shape[:2]
    target = width / height
    if w / h > target:  # too wide: crop columns
        keep = max(1, round(h * target))
        x0 = (w - keep) // 2
        a = a[:, x0:x0 + keep]
    elif w / h < target:
        keep = max(1, round(w / target))
        y0 = (h - keep) // 2
        a = a[y0:y0 + keep]
    if a.shape[:2] != (height, width):
        a = resize(a, (height, width), anti_aliasing=True, preserve_range=True)
    return torch.from_numpy(np.clip(a, 0.0, 1.0).transpose(2, 0, 1).astype(np.float32))


def load_images(paths: list[str | Path], height: int, width: int) -> torch.Tensor:
    """Image files (PNG, JPEG, ... or .npy arrays) -> float32 [B, 3, height, width]."""
    from skimage.io import imread

    out = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        try:
            array = np.load(path) if path.suffix == ".npy" else imread(path)
        except Exception as e:  # any decoder failure is the file's fault
            raise ImageError(f"{path}: cannot read image ({e})") from None
        out.append(to_model_input(array, height, width, str(path)))
    return torch.stack(out)
