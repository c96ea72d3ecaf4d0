"""Reading images into the model's input format: float [B, 3, H, W] in [0, 1].

Grey, grey+alpha, RGB and RGBA images at 8 or 16 bits per sample (or float
in [0, 1]) are all taken alike: grey is repeated to three channels, alpha is
dropped, and the image is centre-cropped to the model's aspect ratio and
resized (antialiased).  What was done to an image (and any precision lost on
the way to the kernel's pixel codes) is said in one line through ``log``;
an image taken as it is says nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

#: the file formats read, by the bytes they start with
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
              b"BM": "BMP", b"GIF87a": "GIF", b"GIF89a": "GIF", b"\x93NUMPY": ".npy"}
FORMATS = "PNG, JPEG, TIFF, BMP, GIF, WebP or a .npy array"
MODES = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}
SAMPLE_BITS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}


class ImageError(ValueError):
    """An image that cannot be read or converted; names the file."""


def file_format(head: bytes) -> str | None:
    """The format of a file starting with ``head`` (its first 16 bytes), or None when not one we read."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for sig, fmt in SIGNATURES.items() if head.startswith(sig)), None)


def _png_sample_bits(head: bytes) -> int | None:
    """Bits per sample a PNG file stores (its IHDR bit depth), from its first 32 bytes."""
    return head[24] if len(head) > 24 and head[12:16] == b"IHDR" else None


def read_image(path: str | Path) -> tuple[np.ndarray, int | None]:
    """One image file -> (its array as decoded, the file's bits per sample when more than the array holds).

    Decoders that deliver fewer bits than the file holds (Pillow reads 16-bit
    colour PNGs as 8 bits) are reported through the second value.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file")
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as e:
        raise ImageError(f"{path}: cannot open ({e.strerror})") from None
    if not head:
        raise ImageError(f"{path}: empty file (0 bytes)")
    fmt = file_format(head)
    try:
        if fmt == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            import imageio.v3 as iio

            array = iio.imread(path)
    except Exception as e:  # any decoder failure is the file's fault
        if fmt is None:
            raise ImageError(f"{path}: not an image ({FORMATS})") from None
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ImageError(f"{path}: damaged {fmt} file ({reason})") from None
    array = np.asarray(array)
    file_bits = _png_sample_bits(head) if fmt == "PNG" else None
    held = SAMPLE_BITS.get(array.dtype)
    return array, file_bits if file_bits and held and file_bits > held else None


def _fit(a: np.ndarray, height: int, width: int) -> tuple[np.ndarray, list[str]]:
    """Centre-crop ``a`` ([h, w, 3] float) to width:height and resize it; what was done, with the sizes."""
    from skimage.transform import resize

    h, w = a.shape[:2]
    said = []
    target = width / height
    if w / h > target:  # too wide: crop columns
        keep = max(1, round(h * target))
        x0 = (w - keep) // 2
        a = a[:, x0:x0 + keep]
    elif w / h < target:
        keep = max(1, round(w / target))
        y0 = (h - keep) // 2
        a = a[y0:y0 + keep]
    if a.shape[:2] != (h, w):
        said.append(f"centre-cropped to {a.shape[1]}x{a.shape[0]}")
    if a.shape[:2] != (height, width):
        a = resize(a, (height, width), anti_aliasing=True, preserve_range=True)
        said.append(f"resized to {width}x{height}")
    return a, said


def to_model_input(array: np.ndarray, height: int, width: int, source: str = "image",
                   pixel_bits: int | None = None, log: Callable[[str], None] | None = None,
                   file_bits: int | None = None) -> torch.Tensor:
    """One HxW(xC) image -> float32 [3, height, width] in [0, 1].

    ``array``: C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA); uint8,
    uint16 or float in [0, 1].  ``pixel_bits``: bits of the kernel's pixel
    codes (a reduction from more bits is said); ``file_bits``: bits per sample
    the file held when the decoder delivered fewer; ``log``: gets one line
    describing what was done, when anything was.
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in MODES:
        raise ImageError(f"{source}: expected an HxW grey, HxWx2 grey+alpha, HxWx3 RGB or HxWx4 RGBA image, "
                         f"got shape {np.shape(array)}")
    h, w, channels = a.shape
    if h == 0 or w == 0:
        raise ImageError(f"{source}: empty image ({w}x{h})")
    bits = SAMPLE_BITS.get(a.dtype)
    if bits:
        a = a.astype(np.float64) / ((1 << bits) - 1)
    elif np.issubdtype(a.dtype, np.floating):
        if np.isnan(a).any() or a.min() < 0 or a.max() > 1:
            raise ImageError(f"{source}: float images must hold values in [0, 1]")
    else:
        raise ImageError(f"{source}: pixel type {a.dtype} not supported (8- or 16-bit unsigned integers, "
                         f"or float in [0, 1])")
    said = []
    if channels in (2, 4):
        said.append("alpha dropped")
    if file_bits and bits:
        said.append(f"read as {bits} bits per sample (the decoder's limit)")
    if bits and pixel_bits and bits > pixel_bits:
        said.append(f"reduced to {pixel_bits} bits per sample (the kernel's pixel codes)")
    a = np.repeat(a[..., :1], 3, axis=-1) if channels <= 2 else a[..., :3]
    a, fitted = _fit(a, height, width)
    if log and (said or fitted):
        kind = f"{MODES[channels]} {file_bits or bits}-bit" if bits else f"{MODES[channels]} float"
        mode = f" {kind}, {', '.join(said)}" + (";" if fitted else "") if said else ""
        log(f"{source}: {w}x{h}{mode}" + (" " + ", ".join(fitted) if fitted else ""))
    return torch.from_numpy(np.clip(a, 0.0, 1.0).transpose(2, 0, 1).astype(np.float32))


def load_images(paths: list[str | Path], height: int, width: int, pixel_bits: int | None = None,
                log: Callable[[str], None] | None = None) -> torch.Tensor:
    """Image files (see :data:`FORMATS`; .npy arrays known by their content) -> float32 [B, 3, height, width].

    ``pixel_bits`` and ``log``: as :func:`to_model_input`, one line per image that was changed.
    """
    out = []
    for path in paths:
        array, file_bits = read_image(path)
        out.append(to_model_input(array, height, width, f"image {path}", pixel_bits, log, file_bits))
    return torch.stack(out)
