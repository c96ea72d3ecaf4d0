"""Default locations: the repository's bitstreams/ folder and the build cache."""
from __future__ import annotations

import os
from pathlib import Path

from edgemoe.paths import cache_dir, repo_root  # the locations every stage shares

__all__ = ["bitstreams_dir", "cache_dir", "repo_root"]


def bitstreams_dir() -> Path:
    """Where overlays and their manifest live: ``$EDGEMOE_BITSTREAMS``, else <repo>/bitstreams, else ./bitstreams."""
    env = os.environ.get("EDGEMOE_BITSTREAMS")
    if env:
        return Path(env)
    root = repo_root()
    if root is not None and (root / "bitstreams").is_dir():
        return root / "bitstreams"
    return Path.cwd() / "bitstreams"
