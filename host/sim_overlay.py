"""Building a simulated overlay: generate and compile the kernel for a config, write its ``.simbit``
(:mod:`edgemoe.host.simbit`), library and register map into bitstreams/, and register them in the manifest."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from edgemoe.files import atomic_write_bytes

from .errors import OverlayMismatchError
from .simbit import library_problem, load_simbit, simbit_data


def overlay_name(cfg) -> str:
    return f"{cfg.file_label()}-{cfg.digest()[:8]}"


def _write_if_changed(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (a new inode: a library already loaded from it stays valid) unless equal."""
    if path.is_file() and path.read_bytes() == data:
        return
    atomic_write_bytes(path, data)


def _reuse_problem(entry) -> str | None:
    """Why a registered (and verified) simulated overlay cannot be reused as it is."""
    try:
        return library_problem(load_simbit(entry.overlay))
    except OverlayMismatchError as e:
        return str(e)


def build_sim_overlay(cfg, out_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                      project_dir: str | Path | None = None, reuse: bool = True, log=None):
    """Generate and compile the kernel for ``cfg`` and register it as a simulated overlay.

    Writes ``<name>.simbit``, ``<name>.csim.so`` and ``<name>.regmap.json`` to
    ``out_dir`` (default bitstreams/) and adds their manifest entry; returns the
    :class:`~edgemoe.host.manifest.Entry`.  ``project_dir``: an already
    generated HLS project to compile (else the sources generated for ``cfg``,
    from memory; ``cache_dir`` defaults to <cache>/csim-cache).  With
    ``reuse``, a registered overlay that verifies is returned as is (one whose
    files changed since registration is an error naming the file; one whose
    library does not match its build record is rebuilt, and ``log`` says why).
    """
    from edgemoe.hls.csim import compile_library, compile_sources
    from edgemoe.hls.interface import config_hash32, register_map_json
    from edgemoe.hls.project import CSIM_SOURCES, kernel_sources

    from . import manifest
    from .paths import cache_dir as default_cache

    log = log or (lambda _: None)
    out = Path(out_dir) if out_dir is not None else manifest.default_dir()
    out.mkdir(parents=True, exist_ok=True)
    if reuse:
        entry = manifest.find_overlay(cfg, "sim", out)
        problem = None if entry is None else _reuse_problem(entry)
        if entry is not None and problem is None:
            log(f"simulated overlay: {entry.overlay} (registered in {manifest.manifest_path(out)})")
            return entry
        if problem is not None:
            log(f"simulated overlay {entry.overlay}: {problem}; rebuilding it")
    cache = Path(cache_dir) if cache_dir is not None else default_cache() / "csim-cache"
    t0 = time.perf_counter()
    if project_dir is None:
        res = compile_sources(kernel_sources(cfg), CSIM_SOURCES, cache / "lib", config_hash32(cfg))
    else:
        res = compile_library(Path(project_dir), CSIM_SOURCES, cache / "lib", config_hash32(cfg))
    if res.notice:
        log(res.notice)
    name = overlay_name(cfg)
    lib, regmap, simbit = out / f"{name}.csim.so", out / f"{name}.regmap.json", out / f"{name}.simbit"
    library = res.library.read_bytes()
    if hashlib.sha256(library).hexdigest() != res.sha256:
        raise OverlayMismatchError(f"{res.library}: changed since it was verified against its build record "
                                   f"(another process is writing the cache?); run again")
    _write_if_changed(lib, library)
    _write_if_changed(regmap, register_map_json(cfg).encode())
    _write_if_changed(simbit, (json.dumps(simbit_data(cfg, lib.name, regmap.name, res.sha256), indent=1)
                               + "\n").encode())
    entry = manifest.add_entry(cfg, simbit, [lib], board="sim", flow="sim", name=f"{name}-sim", regmap=regmap,
                               manifest=out)
    how = "cached library" if res.cached else f"g++ {res.seconds:.1f} s"
    log(f"simulated overlay: {simbit} ({how}; {time.perf_counter() - t0:.1f} s), "
        f"registered in {manifest.manifest_path(out)}")
    return entry
