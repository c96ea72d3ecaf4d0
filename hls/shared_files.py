"""Files that several edgemoe processes share: exclusive locks and SHA-256 checksums.

The build cache, a project folder and the bitstream manifest are written by
parallel runs (sweeps, CI jobs on one build server).  :func:`exclusive`
holds an advisory POSIX ``flock`` on a lock file or on a folder itself for
the duration of a ``with`` block (the lock goes with the process, so a
crashed run never leaves a stale one behind; without ``fcntl`` the block
runs unlocked).  Writers replace shared files with
:func:`edgemoe.files.atomic_write_bytes` (a temporary file renamed into place):
a reader sees the old file or the new one, never half of one, and a library
already loaded from the old file stays valid.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path


class Busy(RuntimeError):
    """Another process holds the lock (raised only when not waiting); the message is the locked path."""


@contextlib.contextmanager
def exclusive(path: str | Path, wait: bool = True):
    """Hold an exclusive lock on ``path``: an existing folder, or a lock file (created if missing).

    ``wait=False`` raises :class:`Busy` at once when another process holds it.
    """
    path = Path(path)
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise Busy(str(path)) from None
        yield
    finally:
        os.close(fd)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
