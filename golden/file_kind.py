"""What a weights-like file holds, judged from its first bytes: names it when it does not load.

torch checkpoints and ``.npz`` archives are both zip files; the first member
tells them apart even when the archive is cut short (the zip directory sits at
the end of the file, the first member's name at its start).
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path

_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_PROTOCOL = b"\x80"
_HEAD_BYTES = 4096


def _first_zip_member(head: bytes) -> str:
    """Name of the first member from a zip local file header ('' when the header is cut short)."""
    if len(head) < 30:
        return ""
    name_len = struct.unpack_from("<H", head, 26)[0]
    return head[30:30 + name_len].decode("utf-8", "replace")


def _zip_kind(path: Path, head: bytes) -> str:
    member = _first_zip_member(head)
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        intact = True
    except (OSError, zipfile.BadZipFile):
        names, intact = [member], False
    if any(n.endswith(".npy") for n in names):
        return ".npz archive of NumPy arrays" if intact else "truncated/corrupt .npz archive"
    if any(n.endswith("data.pkl") for n in names):
        return "torch checkpoint" if intact else "truncated/corrupt torch checkpoint (zip archive)"
    return "zip archive without a torch checkpoint or NumPy arrays" if intact else "truncated/corrupt zip archive"


def describe(path: str | Path) -> str:
    """A short description of the file's content, e.g. ``truncated/corrupt .npz archive``.

    Kinds: empty file, (truncated/corrupt) .npz archive, torch checkpoint, other
    zip archive, NumPy .npy array, pickle (legacy torch format), text file,
    unrecognised binary data.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    if not head:
        return "empty file"
    if head.startswith(_ZIP_MAGIC):
        return _zip_kind(path, head)
    if head.startswith(_NPY_MAGIC):
        return "NumPy .npy array"
    if head.startswith(_PICKLE_PROTOCOL):
        return "pickle (legacy torch format)"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "text file"
        except UnicodeDecodeError as e:
            if e.start >= len(head) - 3:  # a multi-byte character cut by the read size
                return "text file"
    return "unrecognised binary data"
