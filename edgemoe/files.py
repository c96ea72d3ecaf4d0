"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every writer puts its bytes into a temporary file beside the destination (the
same folder, so the same file system) and renames it over the destination
with :func:`os.replace`.  The temporary's name carries the process id and a
random part, so concurrent writers of one file never share a temporary; it is
removed when the write fails.  Locking, where a caller needs it, stays with
the caller.

Any layer may import this module: it imports nothing of edgemoe.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_path(path: str | Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden name beside ``path``: ``.<name>.<pid>.<random><suffix>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


@contextmanager
def atomic_output(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path to write ``path``'s new contents to; renamed over ``path`` when the block ends.

    For writers that want a file name (``torch.save``, ``np.savez``,
    ``savefig``).  If the block raises, the temporary is removed and ``path``
    is left as it was.  ``suffix`` ends the temporary's name, for writers that
    go by it (``np.savez`` appends ``.npz`` to a name without it; matplotlib
    picks the image format from it).
    """
    path = Path(path)
    tmp = temporary_path(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone already after the rename


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding=encoding)
