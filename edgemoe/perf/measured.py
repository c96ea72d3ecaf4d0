"""What the RTL units of ``sim/`` measured, as the models read it: unit latencies and yosys figures.

The models never read the sim build folder themselves.  The caller reads it
once (:meth:`SimResults.read`, through the readers of ``edgemoe.sim.results``,
which alone knows the folder's layout) and passes the :class:`SimResults` into
:func:`edgemoe.perf.cycles.estimate`, :func:`edgemoe.perf.resources.yosys_comparison`,
the exploration and the report.  Without it the models use their default unit
latencies and show no yosys figures.

:func:`calibration` picks, for one config, the latency and II of each RTL unit
(exp, reciprocal, rsqrt, GELU): the figures measured in RTL simulation for this
config, then for any config of the same precision profile (unit latencies
depend on the types, not on the model size), then the generated units' design
latency, and last other profiles' figures (each says which it is).
:func:`yosys_figures` gives this config's own yosys figures per unit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

#: the RTL units whose latency calibrates the cycle model
RTL_UNITS = ("exp", "recip", "rsqrt", "gelu")


@dataclass(frozen=True)
class SimFolder:
    """One config folder of the sim build (named by the first 12 hex of the config digest)."""

    path: Path
    precision: str | None                     # the precision profile its config.yaml names
    perf: dict = field(default_factory=dict)  # perf.json: {unit: {simulator: figures}}
    perf_source: str = ""
    unit_info: dict = field(default_factory=dict)     # {RTL unit: rtl/unit.json} of the generated units
    unit_sources: dict = field(default_factory=dict)  # {RTL unit: path of its unit.json}
    resource_rows: list = field(default_factory=list)  # resources.json rows (dicts with "unit")
    resources_source: str = ""
    synth: dict = field(default_factory=dict)          # {unit: synth.json resources}
    synth_sources: dict = field(default_factory=dict)  # {unit: path of its synth.json}

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class SimResults:
    """Every config folder of the sim build, and the RTL units' plans the unit models need.

    ``layernorm_plan``: ``cfg -> plan`` of the LayerNorm RTL unit (its row slots,
    dividers and depths: ``edgemoe.sim.formats.layernorm_plan``), for
    :func:`edgemoe.perf.resources.rtl_unit_models`.
    """

    root: Path
    folders: tuple[SimFolder, ...] = ()
    layernorm_plan: Callable | None = None

    @classmethod
    def read(cls, reader, root: Path | None = None, layernorm_plan: Callable | None = None) -> "SimResults":
        """Read every config folder under ``root`` (default ``reader.sim_root()``) through ``reader``.

        ``reader`` is the module ``edgemoe.sim.results`` (its ``sim_root``,
        ``config_folders``, ``folder_precision``, ``read_perf``, ``read_unit_info``,
        ``read_resource_rows``, ``read_synth_resources`` and the path functions
        naming each figure's source); the caller passes it in, so the models do
        not depend on ``sim/``.  Missing or unreadable files read as empty.
        """
        root = Path(root) if root is not None else reader.sim_root()
        folders = []
        for d in reader.config_folders(root):
            info = {u: i for u in RTL_UNITS if (i := reader.read_unit_info(d, u)) is not None}
            synth = reader.read_synth_resources(d)
            folders.append(SimFolder(
                path=d, precision=reader.folder_precision(d),
                perf=reader.read_perf(d), perf_source=str(reader.perf_json(d)),
                unit_info=info, unit_sources={u: str(reader.unit_json(d, u)) for u in info},
                resource_rows=reader.read_resource_rows(d), resources_source=str(reader.resources_json(d)),
                synth=synth, synth_sources={u: str(reader.synth_json(d, u)) for u in synth}))
        return cls(root, tuple(folders), layernorm_plan)

    def folder(self, cfg) -> SimFolder | None:
        """The folder of ``cfg`` itself, if the sim tools wrote one."""
        name = cfg.digest()[:12]
        return next((f for f in self.folders if f.name == name), None)


def _how(f: SimFolder, digest: str, same: list) -> str:
    if f.name == digest:
        return "this config"
    return f"same profile, {f.name}" if f in same else f"profile {f.precision}, {f.name}"


def calibration(cfg, measured: SimResults | None) -> dict[str, dict]:
    """Measured latency / II of the RTL units for ``cfg``'s precision: ``{unit: {latency, ii, source, how}}``.

    The order of preference is the module docstring's; {} without ``measured``.
    """
    if measured is None:
        return {}
    digest = cfg.digest()[:12]
    folders = sorted(measured.folders, key=lambda f: (f.name != digest, f.name))
    same = [f for f in folders if f.name == digest or f.precision == cfg.precision.name]
    # unit latencies depend on the unit's types; other profiles' figures come last (said so in "how")
    folders = same + [f for f in folders if f not in same]
    out: dict[str, dict] = {}
    # measured figures first (cocotb perf.json), then the generated units' design latency
    for f in folders:
        how = _how(f, digest, same)
        for unit, sims in f.perf.items():
            if unit not in RTL_UNITS or unit in out or not isinstance(sims, dict):
                continue
            figs = [s for s in sims.values() if isinstance(s, dict)]
            lat = [x for s in figs if isinstance(x := s.get("latency_max", s.get("latency")), (int, float))]
            ii = [x for s in figs if isinstance(x := s.get("ii"), (int, float))]
            if lat:
                out[unit] = {"latency": int(max(lat)), "ii": float(max(ii)) if ii else 1.0,
                             "source": f.perf_source, "how": f"measured in RTL simulation ({how})"}
    for f in folders:
        how = _how(f, digest, same)
        for unit in RTL_UNITS:
            info = f.unit_info.get(unit)
            if unit in out or info is None:
                continue
            if isinstance(info.get("latency"), (int, float)):
                out[unit] = {"latency": int(info["latency"]), "ii": 1.0, "source": f.unit_sources[unit],
                             "how": f"design latency of the generated RTL unit ({how})"}
    return out


#: keys of the sim tools' resource rows (``bram`` counts BRAM36 blocks)
_YOSYS_KEYS = {"dsp": ("dsp",), "lut": ("lut",), "ff": ("ff",), "bram36": ("bram",)}


def _pick_figures(d: dict) -> dict:
    out = {}
    for key, names in _YOSYS_KEYS.items():
        for nm in names:
            if nm in d and isinstance(d[nm], (int, float)):
                out[key] = d[nm]
                break
    return out


def yosys_figures(cfg, measured: SimResults | None) -> dict[str, dict]:
    """{unit: {dsp, lut, ff, bram36, source}} from the RTL units' yosys runs of ``cfg``, if any.

    The rows of the config folder's ``resources.json``, then each unit's cached
    ``synth.json`` for units not in it.  Only this config's own folder counts:
    the units depend on the model's sizes, the precision and the hardware
    parameters alike.
    """
    f = measured.folder(cfg) if measured is not None else None
    if f is None:
        return {}
    found: dict[str, dict] = {}
    for row in f.resource_rows:
        if isinstance(row, dict) and "unit" in row:
            figs = _pick_figures(row)
            if figs:
                found[str(row["unit"])] = {**figs, "source": f.resources_source}
    for unit, res in f.synth.items():
        if unit not in found and isinstance(res, dict) and _pick_figures(res):
            found[unit] = {**_pick_figures(res), "source": f.synth_sources[unit]}
    return found
