"""The C simulation of an earlier revision of edgemoe, timed beside today's.

``csim_at(rev, config, overrides, images, task, seed)`` extracts the
revision's tree with ``git archive`` into a temporary folder, lays its
packages out as its own ``pyproject.toml`` maps them (``edgemoe.hls`` ->
``hls/`` ...) and, in a child Python whose path puts that tree first, builds
and times its C simulation on the same synthetic weights and images.  It
returns the child's figures (compile and csim seconds, SHA-256 of the output
words), so a benchmark can print the old kernel's speed beside the new one
and check that both compute the same words.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_REV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")

# what the child runs: the revision's own modules, the same inputs as the benchmark
_CHILD = r"""
import hashlib, json, sys, time
import numpy as np, torch
from edgemoe.loading import load_config
from edgemoe.golden.fixed_model import FixedM3ViT
from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict
from edgemoe.hls.project import HLSProject
a = json.loads(sys.argv[1])
torch.set_grad_enabled(False)
cfg = load_config(a["config"], a["set"])
sd = synthetic_state_dict(cfg.model, seed=a["seed"])
images = synthetic_images(cfg.model, a["images"], seed=a["seed"])
proj = HLSProject(cfg, FixedM3ViT(cfg, sd).weights, cache_dir=a["cache"])
t0 = time.perf_counter(); proj.compile(); compile_s = time.perf_counter() - t0
proj.predict(images[:1], a["task"])
t0 = time.perf_counter(); tokens = proj.predict(images, a["task"]); csim_s = time.perf_counter() - t0
import edgemoe.hls.project as where
print(json.dumps({"compile_s": compile_s, "csim_s": csim_s, "module": where.__file__,
                  "sha256": hashlib.sha256(np.ascontiguousarray(tokens).tobytes()).hexdigest()}))
"""


class BaselineError(RuntimeError):
    """The revision cannot be found, extracted or run."""


def resolve(rev: str) -> str:
    """The full commit id of ``rev`` (a commit id, tag or branch of this repository)."""
    if not isinstance(rev, str) or not _REV.match(rev) or ".." in rev:
        raise BaselineError(f"--baseline {rev!r}: must be a commit id, tag or branch name of this repository")
    r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BaselineError(f"--baseline {rev!r}: no such commit in {REPO} (a shallow clone lacks history: "
                            f"git fetch --unshallow)")
    return r.stdout.strip()


def _lay_out(tree: Path, root: Path) -> None:
    """Mirror the tree's package-dir map under ``root`` (symlinks), so ``import edgemoe`` finds the old code."""
    meta = tomllib.loads((tree / "pyproject.toml").read_text())
    dirs = meta.get("tool", {}).get("setuptools", {}).get("package-dir", {"edgemoe": "edgemoe"})
    for pkg in sorted(dirs, key=lambda p: p.count(".")):
        src = (tree / dirs[pkg]).resolve()
        if tree.resolve() not in src.parents and src != tree.resolve():
            raise BaselineError(f"the revision's package-dir maps {pkg} outside its tree")
        dst = root.joinpath(*pkg.split("."))
        if pkg == "edgemoe":
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.mkdir()
            for item in src.iterdir():
                (dst / item.name).symlink_to(item)
        elif not dst.exists():
            dst.symlink_to(src)


def csim_at(rev: str, config: str, overrides: list[str], images: int, task, seed: int) -> dict:
    """Compile and time revision ``rev``'s C simulation on the benchmark's inputs (see the module docstring)."""
    commit = resolve(rev)
    with tempfile.TemporaryDirectory(prefix="edgemoe-baseline-") as tmp:
        tree, root = Path(tmp) / "tree", Path(tmp) / "pkgroot"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit],
                                 capture_output=True)
        if archive.returncode != 0:
            raise BaselineError(f"git archive {commit[:12]} failed: {archive.stderr.decode(errors='replace')}")
        tar_path = Path(tmp) / "tree.tar"
        tar_path.write_bytes(archive.stdout)
        with tarfile.open(tar_path) as tar:
            tar.extractall(tree, filter="data")
        _lay_out(tree, root)
        env = {**os.environ, "PYTHONPATH": str(root)}
        arg = json.dumps({"config": config, "set": overrides, "images": images, "task": task, "seed": seed,
                          "cache": str(Path(tmp) / "cache")})
        r = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True, text=True, env=env,
                           cwd=tmp)
        if r.returncode != 0:
            tail = "\n".join(r.stderr.strip().splitlines()[-5:])
            raise BaselineError(f"the C simulation of {commit[:12]} did not run:\n{tail}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        if not out["module"].startswith(str(root)):
            raise BaselineError(f"the child imported {out['module']}, not the revision's code")
        out["commit"] = commit
        return out
