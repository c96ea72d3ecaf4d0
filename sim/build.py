"""Verilog generation of the RTL units, cached in the sim build folder.

:func:`generate` writes a unit's Verilog, its RTLIL twin and ``unit.json``
into ``<config folder>/<unit>/rtl/`` (the layout is :mod:`edgemoe.sim.results`'s).
Generation is cached: a unit's Verilog is regenerated only when the stamp
(hash of the generator sources, the golden numerics and the Amaranth
version) or the config changes.  Concurrent pytest workers are serialised by
a lock file per unit.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .results import atomic_write, config_digest, locked, unit_dir

SIM_DIR = Path(__file__).resolve().parent
REPO = SIM_DIR.parent
GOLDEN_NUMERICS = REPO / "golden" / "numerics"
#: the generator sources: the registry, the units, and the shared formats
GENERATOR_SOURCES = (SIM_DIR, SIM_DIR / "units")
#: other files the units' designs read numbers from (the kernel plan: the compute tile's k_max,
#: the attention schedule's length)
PLAN_SOURCES = (REPO / "hls" / "plan.py",)


def source_stamp() -> str:
    """Hash of everything the generated Verilog depends on besides the config."""
    import amaranth

    h = hashlib.sha256(amaranth.__version__.encode())
    files = ([f for d in GENERATOR_SOURCES for f in sorted(d.glob("*.py"))] + sorted(GOLDEN_NUMERICS.glob("*.py"))
             + list(PLAN_SOURCES))
    for f in files:
        h.update(str(f.relative_to(REPO)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _emit(text: str, name: str, suffix: str, out_dir: Path | str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}{suffix}"
    atomic_write(path, text)
    return path


def emit_verilog(elaboratable, name: str, ports=None, out_dir: Path | str = ".") -> Path:
    """Write ``elaboratable`` as Verilog module ``name`` to ``out_dir/<name>.v``; return the path.

    ``ports`` may be omitted for :class:`amaranth.lib.wiring.Component` (its
    signature gives the ports).  Source locations are not emitted, so the
    text depends only on the design.
    """
    from amaranth.back import verilog

    text = verilog.convert(elaboratable, name=name, ports=ports, emit_src=False, strip_internal_attrs=True)
    return _emit(text, name, ".v", out_dir)


def emit_rtlil(elaboratable, name: str, ports=None, out_dir: Path | str = ".") -> Path:
    """Write ``elaboratable`` as RTLIL (Yosys' own netlist text) to ``out_dir/<name>.il``.

    The same design as :func:`emit_verilog`'s (Amaranth emits the Verilog by
    passing this RTLIL through Yosys).  Synthesis reads it: Debian's Yosys 0.23
    parses the Verilog of a large ROM (one ``initial`` assignment per entry)
    in quadratic time, minutes for the naive GELU table, the RTLIL in seconds.
    """
    from amaranth.back import rtlil

    text = rtlil.convert(elaboratable, name=name, ports=ports, emit_src=False)
    return _emit(text, name, ".il", out_dir)


def generate(unit: str, cfg, root: Path | None = None, force: bool = False) -> Path:
    """The Verilog of registered ``unit`` for ``cfg`` (generated unless cached); returns its path.

    Any unit of :func:`edgemoe.sim.units.registry.all_units`.  Next to it: ``<top>.il``
    (the same design as RTLIL, for synthesis) and ``unit.json`` (the design latency,
    ROM bits, and what the unit's spec adds: port formats for a stream unit,
    parameters / ports / RAM bits for a multi-field unit).
    """
    from .units.registry import get_unit

    spec = get_unit(unit)
    rtl = unit_dir(cfg, unit, root) / "rtl"

    def make():
        component = spec.make(cfg)
        emit_verilog(component, spec.top, out_dir=rtl)
        emit_rtlil(component, spec.top, out_dir=rtl)
        info = {"unit": unit, "top": spec.top, "config": cfg.name, "digest": config_digest(cfg),
                "precision": cfg.precision.name, "latency": component.latency,
                "rom_bits": sum(d * w for d, w in component.roms.values()),
                "roms": {k: list(v) for k, v in component.roms.items()}, **spec.describe(cfg, component)}
        atomic_write(rtl / "unit.json", json.dumps(info, indent=2) + "\n")

    return cached_output(rtl / f"{spec.top}.v", source_stamp(), make, force)


def cached_output(path: Path, stamp: str, make, force: bool = False) -> Path:
    """``path``, made by ``make()`` unless it exists from sources with the same ``stamp``.

    The stamp file and a lock live beside ``path`` (one generator per folder at a time).
    """
    stamp_file = path.parent / "stamp"
    with locked(path.parent / ".lock"):
        if not force and path.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp:
            return path
        make()
        atomic_write(stamp_file, stamp)
    return path


def unit_info(unit: str, cfg, root: Path | None = None) -> dict:
    """``unit.json`` of a generated unit (generating it if needed)."""
    path = generate(unit, cfg, root)
    return json.loads((path.parent / "unit.json").read_text())
