"""Default locations: the repository's bitstreams/ folder and the build cache."""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path | None:
    """The source checkout edgemoe runs from (an editable install), or None."""
    import edgemoe

    root = Path(edgemoe.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def bitstreams_dir() -> Path:
    """Where overlays and their manifest live: ``$EDGEMOE_BITSTREAMS``, else <repo>/bitstreams, else ./bitstreams."""
    env = os.environ.get("EDGEMOE_BITSTREAMS")
    if env:
        return Path(env)
    root = repo_root()
    if root is not None and (root / "bitstreams").is_dir():
        return root / "bitstreams"
    return Path.cwd() / "bitstreams"


def cache_dir() -> Path:
    """Compiled csim libraries and packed-weight caches: ``$EDGEMOE_CACHE``, else <repo>/build, else ./build."""
    env = os.environ.get("EDGEMOE_CACHE")
    if env:
        return Path(env)
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "build"
