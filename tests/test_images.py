"""Image files into the model input: every mode and bit depth alike, one-line errors, and a word on what was done."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from edgemoe.images import ImageError, load_images, to_model_input

MODES = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}


def write_png(path, a: np.ndarray) -> None:
    """A plain PNG of ``a`` ([H, W] or [H, W, C], uint8 or uint16) at its own bit depth (Pillow writes no 16-bit colour)."""
    a = a[..., None] if a.ndim == 2 else a
    h, w, c = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    rows = a.astype(">u2" if depth == 16 else "u1").reshape(h, -1).view(np.uint8).reshape(h, -1)
    data = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, depth, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data))
                     + chunk(b"IEND", b""))


def _grey_scene(h=32, w=64) -> np.ndarray:
    """A smooth grey ramp in [0, 1] (no aliasing when cropped or resized)."""
    y, x = np.mgrid[0:h, 0:w]
    return (0.1 + 0.8 * (x / (w - 1)) * (0.5 + 0.5 * y / (h - 1)))


def _encode(scene: np.ndarray, channels: int, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    grey = np.round(scene * top).astype(np.uint16 if bits == 16 else np.uint8)
    alpha = np.full_like(grey, top // 3)  # transparency must not change the pixels
    planes = {1: [grey], 2: [grey, alpha], 3: [grey] * 3, 4: [grey] * 3 + [alpha]}[channels]
    return planes[0] if channels == 1 else np.stack(planes, axis=-1)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_every_mode_and_depth_gives_the_same_input(tmp_path, channels, bits):
    scene = _grey_scene()
    path = tmp_path / f"{MODES[channels]}{bits}.png"
    write_png(path, _encode(scene, channels, bits))
    notes = []
    x = load_images([path], 32, 64, pixel_bits=8, log=notes.append)
    assert x.shape == (1, 3, 32, 64)
    assert np.abs(x[0].numpy() - scene[None]).max() <= 1 / 255 + 1e-6
    text = " ".join(notes)
    assert ("alpha dropped" in text) == (channels in (2, 4))
    assert ("16-bit" in text and "8 bits" in text) == (bits == 16), text  # a reduction is always said
    assert len(notes) <= 1


def test_sixteen_bits_are_kept_when_the_kernel_takes_them(tmp_path):
    path = tmp_path / "grey16.png"
    a = np.arange(32 * 64, dtype=np.uint16).reshape(32, 64) * 31
    write_png(path, a)
    notes = []
    x = load_images([path], 32, 64, pixel_bits=16, log=notes.append)
    assert np.array_equal(np.round(x[0, 0].numpy().astype(np.float64) * 65535), a)
    assert notes == []


def test_crop_and_resize_are_said_once_with_the_sizes(tmp_path):
    from skimage.io import imsave

    path = tmp_path / "a.png"
    imsave(path, np.zeros((480, 640, 3), np.uint8), check_contrast=False)
    notes = []
    assert load_images([path], 32, 64, pixel_bits=8, log=notes.append).shape == (1, 3, 32, 64)
    assert notes == [f"image {path}: 640x480 centre-cropped to 640x320, resized to 64x32"]
    exact = tmp_path / "b.png"
    imsave(exact, np.zeros((32, 64, 3), np.uint8), check_contrast=False)
    notes.clear()
    load_images([exact], 32, 64, pixel_bits=8, log=notes.append)
    assert notes == []  # nothing done, nothing said


@pytest.mark.parametrize("make,message", [
    (lambda p: p.mkdir(), "is a directory, not an image file"),
    (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    (lambda p: p.write_text("hello, this is text\n"), "not an image (PNG, JPEG, TIFF, BMP, GIF, WebP or a .npy array)"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20), "damaged PNG file"),
])
def test_unreadable_files_are_one_line_errors_naming_the_problem(tmp_path, make, message):
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(ImageError) as e:
        load_images([path], 32, 64)
    text = str(e.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert "\n" not in text and "pip install" not in text and "no such file" not in text


def test_a_missing_file_is_no_such_file(tmp_path):
    with pytest.raises(ImageError, match=r"absent\.png: no such file"):
        load_images([tmp_path / "absent.png"], 32, 64)


def test_a_npy_array_is_read_by_content_and_checked(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.full((32, 64, 3), 0.5, np.float32))
    assert float(load_images([path], 32, 64)[0].mean()) == pytest.approx(0.5)
    np.save(path, np.full((32, 64, 3), 7, np.int32))
    with pytest.raises(ImageError, match=r"pixel type int32 not supported \(8- or 16-bit unsigned"):
        load_images([path], 32, 64)


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 10), (10, 0, 3)])
def test_an_empty_array_is_an_error(shape):
    with pytest.raises(ImageError, match=r"image: empty image \(\d+x\d+\)"):
        to_model_input(np.zeros(shape, np.uint8), 32, 64)
