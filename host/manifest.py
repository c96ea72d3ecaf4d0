"""bitstreams/manifest.json: what was built, for which config, and the checksum of every file.

An entry per build (a real ``.bit``/``.hwh``/``.xclbin`` or a simulated
``.simbit``)::

    {"name": "m3vit-micro-1a2b3c4d-sim", "board": "sim", "flow": "sim",
     "config_name": "m3vit-micro", "config_digest": "<sha256>", "config_hash": 305419896,
     "generator_version": "0.1.0", "created": "2025-01-01T00:00:00",
     "overlay": "m3vit-micro-1a2b3c4d.simbit", "regmap": "m3vit-micro-1a2b3c4d.regmap.json",
     "files": {"m3vit-micro-1a2b3c4d.simbit": {"sha256": "...", "bytes": 812}, ...}}

Paths are relative to the manifest's folder.  :func:`add_entry` records a
build; :func:`verify_overlay` is what the runtime calls before loading and
refuses, naming the problem, a missing file, a checksum mismatch, an
unregistered overlay, or one built for another config or generator version.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgemoe import __version__

from .errors import ManifestError

MANIFEST_NAME = "manifest.json"
FORMAT = "edgemoe-manifest"
VERSION = 1
FLOWS = ("zynq", "alveo", "sim")


def default_dir() -> Path:
    """The repository's bitstreams/ folder (``$EDGEMOE_BITSTREAMS`` overrides; else ./bitstreams)."""
    from .paths import bitstreams_dir

    return bitstreams_dir()


def manifest_path(where: str | Path | None = None) -> Path:
    """``where`` may be the manifest file itself or its folder (default: :func:`default_dir`)."""
    p = Path(where) if where is not None else default_dir()
    return p if p.suffix == ".json" else p / MANIFEST_NAME


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Entry:
    """One build in the manifest, with absolute paths resolved."""

    data: dict
    root: Path

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def flow(self) -> str:
        return self.data["flow"]

    @property
    def overlay(self) -> Path:
        return self.root / self.data["overlay"]

    @property
    def regmap_path(self) -> Path | None:
        return self.root / self.data["regmap"] if self.data.get("regmap") else None

    def regmap(self) -> dict:
        if self.regmap_path is None:
            raise ManifestError(f"manifest entry {self.name!r} names no register map (regmap.json)")
        try:
            return json.loads(self.regmap_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ManifestError(f"register map {self.regmap_path} of entry {self.name!r} cannot be read: {e}") from None


def read_manifest(path: str | Path | None = None, must_exist: bool = True) -> dict:
    path = manifest_path(path)
    if not path.is_file():
        if must_exist:
            raise ManifestError(f"{path}: no such file; every overlay is registered there when it is built "
                                f"(edgemoe.host.manifest.add_entry, or `edgemoe register` for a real build)")
        return {"format": FORMAT, "version": VERSION, "entries": []}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), list):
        raise ManifestError(f"{path}: not an edgemoe bitstream manifest (format {FORMAT!r} with 'entries')")
    if data.get("version") != VERSION:
        raise ManifestError(f"{path}: manifest version {data.get('version')!r}, this edgemoe reads {VERSION}")
    return data


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``<manifest>.lock`` while an entry is added (parallel builds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        try:
            import fcntl
            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        yield


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).resolve(), root.resolve())).as_posix()
    except ValueError:  # pragma: no cover - another drive on Windows
        raise ManifestError(f"{path}: must be inside {root} to be registered in its manifest") from None


def add_entry(cfg, overlay: str | Path, files: list[str | Path] = (), board: str | None = None,
              flow: str | None = None, name: str | None = None, regmap: str | Path | None = None,
              manifest: str | Path | None = None) -> Entry:
    """Register a build: checksums of ``overlay`` and ``files`` (all inside the manifest's folder).

    ``flow`` defaults from the overlay's suffix (.bit -> zynq, .xclbin -> alveo,
    .simbit -> sim); ``board`` from the config (``sim`` for simulated overlays).
    An entry with the same name or overlay is replaced.
    """
    from edgemoe.hls.interface import config_hash32

    path = manifest_path(manifest)
    root = path.parent
    overlay = Path(overlay)
    suffix_flow = {".bit": "zynq", ".xclbin": "alveo", ".simbit": "sim"}.get(overlay.suffix)
    flow = flow or suffix_flow
    if flow not in FLOWS:
        raise ManifestError(f"flow = {flow!r}: must be one of {', '.join(FLOWS)} (or give an overlay named "
                            f"*.bit, *.xclbin or *.simbit)")
    board = board or ("sim" if flow == "sim" else cfg.hardware.board)
    all_files = [overlay] + [Path(f) for f in files] + ([Path(regmap)] if regmap else [])
    if flow == "zynq" and not any(f.suffix == ".hwh" for f in all_files):
        hwh = overlay.with_suffix(".hwh")
        all_files.append(hwh)  # pynq.Overlay needs it next to the .bit
    recorded = {}
    for f in all_files:
        if not f.is_file():
            raise ManifestError(f"{f}: no such file (cannot register build {name or overlay.stem!r})")
        recorded[_relative(f, root)] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    entry = {"name": name or overlay.stem, "board": board, "flow": flow, "config_name": cfg.name,
             "config_digest": cfg.digest(), "config_hash": config_hash32(cfg), "generator_version": __version__,
             "created": datetime.datetime.now().isoformat(timespec="seconds"),
             "overlay": _relative(overlay, root), "regmap": _relative(Path(regmap), root) if regmap else None,
             "files": recorded}
    with _locked(path):
        data = read_manifest(path, must_exist=False)
        data["entries"] = [e for e in data["entries"]
                           if e.get("name") != entry["name"] and e.get("overlay") != entry["overlay"]]
        data["entries"].append(entry)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    return Entry(entry, root)


def find_entry(overlay: str | Path, manifest: str | Path | None = None) -> Entry:
    """The manifest entry of ``overlay`` (the manifest defaults to the one next to the overlay)."""
    overlay = Path(overlay)
    path = manifest_path(manifest if manifest is not None else overlay.resolve().parent)
    data = read_manifest(path)
    rel = _relative(overlay, path.parent)
    for e in data["entries"]:
        if e.get("overlay") == rel:
            return Entry(e, path.parent)
    known = ", ".join(e.get("overlay", "?") for e in data["entries"]) or "none"
    raise ManifestError(f"{overlay}: not registered in {path} (registered overlays: {known}); register a build "
                        f"with edgemoe.host.manifest.add_entry or `edgemoe register`")


def check_config(entry: Entry, cfg) -> None:
    """Refuse an entry built for another config or by another generator version."""
    d = entry.data
    if d.get("config_digest") != cfg.digest():
        raise ManifestError(f"overlay {entry.overlay.name} (manifest entry {entry.name!r}) was built for config "
                            f"{d.get('config_name')!r} (digest {str(d.get('config_digest'))[:12]}), but the runtime "
                            f"config is {cfg.name!r} (digest {cfg.digest()[:12]}); use the matching --config or "
                            f"build an overlay for this one")
    if d.get("generator_version") != __version__:
        raise ManifestError(f"overlay {entry.overlay.name} (manifest entry {entry.name!r}) was generated by edgemoe "
                            f"{d.get('generator_version')}, this is edgemoe {__version__}: its register map and weight "
                            f"layout may differ; rebuild it")


def verify_overlay(overlay: str | Path, cfg, manifest: str | Path | None = None) -> Entry:
    """Everything the runtime checks before loading ``overlay`` for ``cfg``; returns its entry."""
    overlay = Path(overlay)
    if not overlay.is_file():
        raise ManifestError(f"overlay {overlay}: no such file (build it, or pass the path of a built overlay)")
    entry = find_entry(overlay, manifest)
    for rel, info in entry.data.get("files", {}).items():
        f = entry.root / rel
        if not f.is_file():
            raise ManifestError(f"{f}: missing (listed in manifest entry {entry.name!r}; copy every file of the "
                                f"build next to the overlay)")
        got = sha256_file(f)
        if got != info.get("sha256"):
            raise ManifestError(f"{f}: SHA-256 {got[:12]}... differs from manifest entry {entry.name!r} "
                                f"({str(info.get('sha256'))[:12]}...): the file changed or is corrupted since the "
                                f"build was registered")
    check_config(entry, cfg)
    return entry


def find_overlay(cfg, flow: str, manifest: str | Path | None = None) -> Entry | None:
    """The newest registered overlay of ``flow`` built for ``cfg`` by this edgemoe, whose files all verify."""
    path = manifest_path(manifest)
    data = read_manifest(path, must_exist=False)
    for e in reversed(data["entries"]):
        if e.get("flow") != flow or e.get("config_digest") != cfg.digest() or e.get("generator_version") != __version__:
            continue
        entry = Entry(e, path.parent)
        try:
            verify_overlay(entry.overlay, cfg, path)
        except ManifestError:
            continue
        return entry
    return None
