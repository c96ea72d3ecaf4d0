"""bitstreams/manifest.json: what was built, for which config, and the checksum of every file.

An entry per build (a real ``.bit``/``.hwh``/``.xclbin`` or a simulated
``.simbit``)::

    {"name": "m3vit-micro-1a2b3c4d-sim", "board": "sim", "flow": "sim",
     "config_name": "m3vit-micro", "config_digest": "<sha256>", "config_hash": 305419896,
     "generator_version": "0.1.0", "created": "2025-01-01T00:00:00",
     "overlay": "m3vit-micro-1a2b3c4d.simbit", "regmap": "m3vit-micro-1a2b3c4d.regmap.json",
     "memory": {"board": "zcu102", "flow": "zynq", "memory": "PS DDR", ...,
                "bundles": [{"bundle": "gmem0", "args": ["image"], "banks": [], "target": "S_AXI_HP0_FPD"}, ...]},
     "files": {"m3vit-micro-1a2b3c4d.simbit": {"sha256": "...", "bytes": 812}, ...}}

Paths are relative to the manifest's folder and stay inside it; ``files``
lists the overlay and the register map with every other file of the build.
``memory`` is where the generator placed each m_axi bundle on the config's
board (:func:`edgemoe.hls.memory_map.placement_data`: HBM pseudo-channels on
Alveo, the PS's HP and HPC ports on Zynq); :meth:`Entry.placement` reads it back.
Names and overlays are unique: :func:`read_manifest` refuses a manifest with
two entries for one overlay, or an entry missing a field, naming the file,
the entry's index and the field.  :func:`add_entry` records a build;
:func:`verify_overlay` is what the runtime calls before loading and refuses,
naming the problem, a missing file, a checksum mismatch, an unregistered
overlay, or one built for another config or generator version.
"""
from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edgemoe import __version__
from edgemoe.files import atomic_write_bytes
from edgemoe.hls.shared_files import exclusive, sha256_file

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

    def placement(self) -> dict[str, dict] | None:
        """m_axi argument -> its bundle's placement record (``bundle``, ``banks``, ``target``), as the generator
        placed it; None for an entry registered before placements were recorded."""
        mem = self.data.get("memory")
        if mem is None:
            return None
        return {arg: b for b in mem["bundles"] for arg in b["args"]}

    def regmap(self) -> dict:
        if self.regmap_path is None:
            raise ManifestError(f"manifest entry {self.name!r} names no register map (regmap.json)")
        try:
            return json.loads(self.regmap_path.read_text())
        except (OSError, ValueError) as e:  # ValueError: not UTF-8 or not JSON
            raise ManifestError(f"register map {self.regmap_path} of entry {self.name!r} cannot be read: {e}") from None


def read_manifest(path: str | Path | None = None, must_exist: bool = True) -> dict:
    path = manifest_path(path)
    if not path.is_file():
        if must_exist:
            raise ManifestError(f"{path}: no such file; every overlay is registered there when it is built "
                                f"(edgemoe.host.manifest.add_entry, or `edgemoe register` for a real build)")
        return {"format": FORMAT, "version": VERSION, "entries": []}
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ManifestError(f"{path}: cannot be read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text (byte {e.start}); a manifest is JSON") from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), list):
        raise ManifestError(f"{path}: not an edgemoe bitstream manifest (format {FORMAT!r} with 'entries')")
    if data.get("version") != VERSION:
        raise ManifestError(f"{path}: manifest version {data.get('version')!r}, this edgemoe reads {VERSION}")
    seen: dict[tuple[str, str], int] = {}
    for i, e in enumerate(data["entries"]):
        _check_entry(path, i, e)
        for key in ("name", "overlay"):
            first = seen.setdefault((key, e[key]), i)
            if first != i:
                raise ManifestError(f"{path}: entries[{first}] and entries[{i}] both have {key} {e[key]!r}; "
                                    f"each build is registered once (remove one of them)")
    return data


_SHA256 = re.compile(r"[0-9a-f]{64}")
#: every entry's required fields: name -> what it holds
_FIELDS = {"name": "the build's name", "flow": f"one of {', '.join(FLOWS)}", "overlay": "the overlay file",
           "config_digest": "the config's digest", "generator_version": "the edgemoe version that generated it",
           "files": "file -> {sha256, bytes}"}


def _check_entry(path: Path, i: int, e) -> None:
    """Refuse a malformed ``entries[i]`` of the manifest ``path``, naming the field."""
    where = f"{path}: entries[{i}]"
    if not isinstance(e, dict):
        raise ManifestError(f"{where} is a {type(e).__name__}, not an object with {', '.join(map(repr, _FIELDS))}")
    for name, what in _FIELDS.items():
        want = dict if name == "files" else str
        if not isinstance(e.get(name), want) or not e[name]:
            got = "missing" if name not in e else f"{e[name]!r}"
            raise ManifestError(f"{where}: {name!r} is {got}; it must be {what}")
    if e["flow"] not in FLOWS:
        raise ManifestError(f"{where}: 'flow' is {e['flow']!r}; it must be one of {', '.join(FLOWS)}")
    mem = e.get("memory")
    if mem is not None and not (isinstance(mem, dict) and isinstance(mem.get("bundles"), list) and all(
            isinstance(b, dict) and isinstance(b.get("args"), list) and isinstance(b.get("target"), str)
            and isinstance(b.get("banks"), list) for b in mem["bundles"])):
        raise ManifestError(f"{where}: 'memory' is {mem!r}; it must be the generator's placement "
                            f"({{\"bundles\": [{{\"bundle\", \"args\", \"banks\", \"target\"}}, ...], ...}}) or absent")
    if e.get("regmap") is not None and not isinstance(e["regmap"], str):
        raise ManifestError(f"{where}: 'regmap' is {e['regmap']!r}; it must be a file name or null")
    for rel, info in e["files"].items():
        if not isinstance(info, dict) or not _SHA256.fullmatch(str(info.get("sha256"))):
            raise ManifestError(f"{where}: 'files'[{rel!r}] is {info!r}; it must be {{\"sha256\": <64 hex digits>, "
                                f"\"bytes\": <size>}}")
    named = {"overlay": e["overlay"], "regmap": e.get("regmap")}
    for rel in (*named.values(), *e["files"]):
        if rel is not None and (PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts):
            raise ManifestError(f"{where}: file {rel!r} is outside the manifest's folder; paths are relative to it")
    for name, rel in named.items():
        if rel is not None and rel not in e["files"]:
            raise ManifestError(f"{where}: its {name} {rel!r} is not listed in 'files', so it cannot be verified")


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX separators); it must be inside ``root``."""
    try:
        rel = Path(os.path.relpath(Path(path).resolve(), root.resolve())).as_posix()
    except ValueError:  # pragma: no cover - another drive on Windows
        rel = ".."
    if rel == ".." or rel.startswith("../"):
        raise ManifestError(f"{path}: must be inside {root} to be registered in its manifest")
    return rel


def add_entry(cfg, overlay: str | Path, files: list[str | Path] = (), board: str | None = None,
              flow: str | None = None, name: str | None = None, regmap: str | Path | None = None,
              manifest: str | Path | None = None) -> Entry:
    """Register a build: checksums of ``overlay`` and ``files`` (all inside the manifest's folder).

    ``flow`` defaults from the overlay's suffix (.bit -> zynq, .xclbin -> alveo,
    .simbit -> sim); ``board`` from the config (``sim`` for simulated overlays).
    An entry with the same name or overlay is replaced.
    """
    from edgemoe.hls.interface import config_hash32
    from edgemoe.hls.memory_map import placement_data

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
             "memory": placement_data(cfg), "files": recorded}
    with exclusive(path.with_name(path.name + ".lock")):
        data = read_manifest(path, must_exist=False)
        data["entries"] = [e for e in data["entries"]
                           if e["name"] != entry["name"] and e["overlay"] != entry["overlay"]]
        data["entries"].append(entry)
        atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())
    return Entry(entry, root)


def find_entry(overlay: str | Path, manifest: str | Path | None = None) -> Entry:
    """The manifest entry of ``overlay`` (the manifest defaults to the one next to the overlay)."""
    overlay = Path(overlay)
    path = manifest_path(manifest if manifest is not None else overlay.resolve().parent)
    data = read_manifest(path)
    rel = _relative(overlay, path.parent)
    for e in data["entries"]:
        if e["overlay"] == rel:
            return Entry(e, path.parent)
    known = ", ".join(e["overlay"] for e in data["entries"]) or "none"
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


def verify_entry(entry: Entry, cfg) -> Entry:
    """Every file of ``entry`` against its recorded SHA-256, then its config; returns the entry."""
    for rel, info in entry.data["files"].items():
        f = entry.root / rel
        if not f.is_file():
            raise ManifestError(f"{f}: missing (listed in manifest entry {entry.name!r}; copy every file of the "
                                f"build next to the overlay)")
        got = sha256_file(f)
        if got != info["sha256"]:
            raise ManifestError(f"{f}: SHA-256 {got[:12]}... differs from manifest entry {entry.name!r} "
                                f"({info['sha256'][:12]}...): the file changed or is corrupted since the build was "
                                f"registered; rebuild or register the build again, or remove the entry from "
                                f"{entry.root / MANIFEST_NAME}")
    check_config(entry, cfg)
    return entry


def verify_overlay(overlay: str | Path, cfg, manifest: str | Path | None = None) -> Entry:
    """Everything the runtime checks before loading ``overlay`` for ``cfg``; returns its entry."""
    overlay = Path(overlay)
    if not overlay.is_file():
        raise ManifestError(f"overlay {overlay}: no such file (build it, or pass the path of a built overlay)")
    return verify_entry(find_entry(overlay, manifest), cfg)


def find_overlay(cfg, flow: str, manifest: str | Path | None = None) -> Entry | None:
    """The newest registered overlay of ``flow`` built for ``cfg`` by this edgemoe, verified (None if none is
    registered).  A registered one whose files changed since is an error naming the file, not skipped."""
    path = manifest_path(manifest)
    data = read_manifest(path, must_exist=False)
    for e in reversed(data["entries"]):
        if e["flow"] == flow and e["config_digest"] == cfg.digest() and e["generator_version"] == __version__:
            return verify_entry(Entry(e, path.parent), cfg)
    return None
