"""Default locations every stage shares: the source checkout and the build cache.

The generator (compiled C simulation libraries) and the host (packed-weight
caches, simulated overlays) both keep their caches under :func:`cache_dir`;
it lives here so neither imports the other for it.
"""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path | None:
    """The source checkout edgemoe runs from (an editable install), or None."""
    import edgemoe

    root = Path(edgemoe.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def cache_dir() -> Path:
    """Compiled csim libraries and packed-weight caches: ``$EDGEMOE_CACHE``, else <repo>/build, else ./build."""
    env = os.environ.get("EDGEMOE_CACHE")
    if env:
        return Path(env)
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "build"
