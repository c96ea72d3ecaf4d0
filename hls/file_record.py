"""The record of the files the generator wrote into a project folder.

``.edgemoe-generated.json`` in the folder maps each generated file (relative
POSIX path) to the SHA-256 of the bytes written.  Regenerating the folder
(for another board, say: ``bd_zcu102.tcl`` vs ``alveo_link.cfg``) removes
the files the previous run recorded and this run did not write, and nothing
else: not a file the record does not name, not one edited since it was
written, not a path outside the folder.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from edgemoe.files import atomic_write_text

RECORD = ".edgemoe-generated.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _previous(out: Path) -> dict[str, str]:
    """The folder's record; empty when there is none or it cannot be read as one."""
    try:
        data = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}


def _ours(root: Path, rel: str) -> Path | None:
    """``root / rel`` if ``rel`` names a plain file inside ``root`` (no '..', no absolute path, no link)."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or any(part in ("..", "") for part in pure.parts):
        return None
    path = root / pure
    if path.is_symlink() or not path.is_file():
        return None
    if not path.resolve().is_relative_to(root.resolve()):
        return None
    return path


def replace_record(out: Path, written: list[Path]) -> list[str]:
    """Record ``written`` (files under ``out``) and remove the previous run's files not among them.

    Returns the removed files (relative paths).  A recorded file whose bytes
    changed since it was written is left in place: it is someone's now.
    """
    out = Path(out)
    now = {p.relative_to(out).as_posix(): _sha256(p) for p in written}
    removed = []
    for rel, digest in sorted(_previous(out).items()):
        if rel in now or rel == RECORD:
            continue
        path = _ours(out, rel)
        if path is not None and _sha256(path) == digest:
            path.unlink()
            removed.append(rel)
    atomic_write_text(out / RECORD, json.dumps({"files": now}, indent=1, sort_keys=True) + "\n")
    return removed
