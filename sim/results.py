"""The sim build folder: where the RTL units' figures are written, and how to read them back.

This module alone knows the layout (never in git; the repository ignores
``/build/``)::

    <sim_root()>/                      build/sim, or $EDGEMOE_SIM_BUILD
        .tools/bin/verilator           the Verilator shim (edgemoe.sim.toolchain)
        <digest>/                      one folder per config: the first 12 hex of Config.digest()
            config.yaml                the config the units were generated for
            perf.json                  measured figures: {unit: {simulator: {latency, latency_max, ii, ...}}}
            resources.json             yosys rows: [{unit, lut, ff, dsp, bram (BRAM36), ...}], registry order
            resources.md               the same table in markdown
            <unit>/
                rtl/<top>.v, <top>.il  generated Verilog and its RTLIL twin (+ stamp)
                rtl/unit.json          design latency, ROM bits, port formats or parameters / ports / RAMs
                rtl/synth.json         cached yosys figures: {"key", "family", "resources": {lut, ff, ...}}
                icarus/, verilator/    simulator builds and test runs (run-<tag>/)
            kernel_standin/            the kernel stand-in's Verilog and simulator builds
            kernel_rtl/<rtl digest>/   simulator builds of Vitis-exported kernel RTL

Readers (standard library and PyYAML only; they never generate, simulate or
synthesise, and return empty results for missing or unreadable files):

* :func:`sim_root` -- the root folder above;
* :func:`config_folder` -- ``<root>/<digest>`` of a config (not created);
* :func:`config_folders` -- every ``<digest>`` folder under the root, sorted by name;
* :func:`folder_precision` -- the precision profile name a folder's ``config.yaml`` names;
* :func:`read_perf` -- a folder's ``perf.json``: ``{unit: {simulator: figures}}``
  (figures: ``latency``, ``latency_max``, ``ii``, ``design_latency`` and per-unit
  extras, as the testbenches measured them);
* :func:`load_perf` -- :func:`read_perf` of a config's folder;
* :func:`read_unit_info` -- a unit's ``rtl/unit.json`` (``latency`` = design latency);
* :func:`read_resource_rows` -- a folder's ``resources.json`` rows (dicts with ``unit``);
* :func:`read_synth_resources` -- ``{unit: resources}`` of every ``<unit>/rtl/synth.json``;
* the paths, for naming a figure's source: :func:`perf_json`, :func:`unit_json`,
  :func:`resources_json`, :func:`synth_json`.

Writers (the sim tools): :func:`config_dir` / :func:`unit_dir` (create the
folders, write ``config.yaml``), :func:`record_perf`, :func:`merge_resource_rows`,
with :func:`atomic_write` (:func:`edgemoe.files.atomic_write_text`: readers
never see half a file) and :func:`locked`
(an advisory lock; concurrent test workers share the folder).
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgemoe.files import atomic_write_text as atomic_write  # noqa: F401  (the sim tools import it from here)

#: environment variable overriding the root folder
ENV_ROOT = "EDGEMOE_SIM_BUILD"
PERF_JSON = "perf.json"
RESOURCES_JSON = "resources.json"
RESOURCES_MD = "resources.md"
CONFIG_YAML = "config.yaml"
UNIT_JSON = "unit.json"
SYNTH_JSON = "synth.json"

_REPO = Path(__file__).resolve().parent.parent


# --- the layout -------------------------------------------------------------------------------

def sim_root() -> Path:
    """``$EDGEMOE_SIM_BUILD`` if set, else ``<repository>/build/sim``."""
    env = os.environ.get(ENV_ROOT)
    return Path(env).resolve() if env else _REPO / "build" / "sim"


def config_digest(cfg) -> str:
    """The folder name of a config: the 12-hex prefix of ``cfg.digest()``."""
    return cfg.digest()[:12]


def config_folder(cfg, root: Path | None = None) -> Path:
    """``<root>/<digest>`` of ``cfg`` (a path only: nothing is created)."""
    return (root or sim_root()) / config_digest(cfg)


def rtl_folder(folder: Path, unit: str) -> Path:
    """``<folder>/<unit>/rtl``: a unit's generated Verilog, ``unit.json`` and ``synth.json``."""
    return Path(folder) / unit / "rtl"


def perf_json(folder: Path) -> Path:
    return Path(folder) / PERF_JSON


def resources_json(folder: Path) -> Path:
    return Path(folder) / RESOURCES_JSON


def unit_json(folder: Path, unit: str) -> Path:
    return rtl_folder(folder, unit) / UNIT_JSON


def synth_json(folder: Path, unit: str) -> Path:
    return rtl_folder(folder, unit) / SYNTH_JSON


# --- readers ----------------------------------------------------------------------------------

def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def config_folders(root: Path | None = None) -> list[Path]:
    """Every config folder under ``root`` (default :func:`sim_root`), sorted by name; [] if none."""
    root = root or sim_root()
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


_PRECISION_CACHE: dict[tuple, str | None] = {}


def folder_precision(folder: Path) -> str | None:
    """The precision profile name (``precision.name``) of a config folder's ``config.yaml``;
    None when it is missing or unreadable.  Cached by the file's mtime."""
    cy = Path(folder) / CONFIG_YAML
    try:
        key = (str(cy), cy.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _PRECISION_CACHE:
        try:
            import yaml
            _PRECISION_CACHE[key] = ((yaml.safe_load(cy.read_text()) or {}).get("precision") or {}).get("name")
        except Exception:  # noqa: BLE001 - foreign or partial file
            _PRECISION_CACHE[key] = None
    return _PRECISION_CACHE[key]


def read_perf(folder: Path) -> dict[str, dict[str, dict]]:
    """A config folder's ``perf.json``: ``{unit: {simulator: figures}}`` ({} if missing or unreadable).

    ``figures`` as the testbench and the runner recorded them: ``latency`` (min over
    the words of a full-rate run), ``latency_max``, ``ii``, ``design_latency`` (the
    generated unit's), ``simulator``, ``unit``, ``precision``, ``config``, and extras per unit.
    """
    data = _read_json(perf_json(folder))
    return data if isinstance(data, dict) else {}


def load_perf(cfg, root: Path | None = None) -> dict[str, dict[str, dict]]:
    """:func:`read_perf` of ``cfg``'s folder: measured figures per unit and simulator ({} if nothing ran)."""
    return read_perf(config_folder(cfg, root))


def read_unit_info(folder: Path, unit: str) -> dict | None:
    """A generated unit's ``rtl/unit.json`` (``top``, ``latency`` = design latency, ``rom_bits``,
    ``roms``, and port formats or ``params`` / ``ports`` / ``ram_bits``); None if not generated."""
    data = _read_json(unit_json(folder, unit))
    return data if isinstance(data, dict) else None


def read_resource_rows(folder: Path) -> list[dict]:
    """A config folder's ``resources.json``: the resource table rows (dicts with ``unit``, ``lut``,
    ``ff``, ``dsp``, ``bram`` in BRAM36 blocks, ``lutram``, ``srl``, ``carry``, ...); [] if none."""
    data = _read_json(resources_json(folder))
    if not isinstance(data, list):
        return []
    return [r for r in data if isinstance(r, dict) and "unit" in r]


def read_synth_resources(folder: Path) -> dict[str, dict]:
    """``{unit: resources}`` from every ``<unit>/rtl/synth.json`` of a config folder (cached yosys
    figures of the units synthesised so far, same keys as a resource row), in unit-name order."""
    out = {}
    for f in sorted(Path(folder).glob(f"*/rtl/{SYNTH_JSON}")):
        res = (_read_json(f) or {}).get("resources")
        if isinstance(res, dict):
            out[f.parent.parent.name] = res
    return out


# --- writers ----------------------------------------------------------------------------------

@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def config_dir(cfg, root: Path | None = None) -> Path:
    """:func:`config_folder`, created, with the config's ``config.yaml`` (rewritten if it differs)."""
    d = config_folder(cfg, root)
    d.mkdir(parents=True, exist_ok=True)
    cy = d / CONFIG_YAML
    text = cfg.to_yaml()
    if not cy.is_file() or cy.read_text() != text:
        atomic_write(cy, text)
    return d


def unit_dir(cfg, unit: str, root: Path | None = None) -> Path:
    """``<config folder>/<unit>``, created."""
    d = config_dir(cfg, root) / unit
    d.mkdir(parents=True, exist_ok=True)
    return d


def record_perf(cfg, unit: str, simulator: str, figures: dict, root: Path | None = None) -> Path:
    """Store ``figures`` as ``perf.json[unit][simulator]`` of ``cfg``'s folder; returns the file."""
    path = perf_json(config_dir(cfg, root))
    with locked(path.with_name(".perf.lock")):
        data = _read_json(path) if path.is_file() else {}
        data = data if isinstance(data, dict) else {}
        data.setdefault(unit, {})[simulator] = figures
        atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def merge_resource_rows(path: Path, rows: list[dict]) -> list[dict]:
    """Write ``rows`` into a ``resources.json``, keeping other units' earlier rows.

    The file is a list of resource table rows (one config), in registry order;
    :func:`read_resource_rows` reads it back.  Returns the merged rows.
    """
    from .units.registry import all_units

    order = {u: i for i, u in enumerate(all_units())}
    with locked(path.with_suffix(".lock")):
        old = _read_json(path) if path.is_file() else []
        by_unit = {r["unit"]: r for r in (old if isinstance(old, list) else []) if isinstance(r, dict) and "unit" in r}
        by_unit.update({r["unit"]: r for r in rows})
        merged = sorted(by_unit.values(), key=lambda r: (order.get(r["unit"], len(order)), r["unit"]))
        atomic_write(path, json.dumps(merged, indent=2) + "\n")
    return merged
