"""Verilog generation and the build folder of the RTL units.

Layout (never in git; the repository ignores ``/build/``)::

    build/sim/<config digest, 12 hex>/
        config.yaml                 the config the units were generated for
        perf.json                   measured latency / II per unit and simulator
        <unit>/
            rtl/<top>.v             generated Verilog (+ <top>.il RTLIL twin, stamp, unit.json,
                                    synth.json: cached yosys figures)
            icarus/  verilator/     simulator builds and test runs

``EDGEMOE_SIM_BUILD`` overrides the root (default ``<repo>/build/sim``).
Generation is cached: a unit's Verilog is regenerated only when the stamp
(hash of the generator sources, the golden numerics and the Amaranth
version) or the config changes.  Concurrent pytest workers are serialised by
a lock file per unit.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SIM_DIR = Path(__file__).resolve().parent
REPO = SIM_DIR.parent
GOLDEN_NUMERICS = REPO / "golden" / "numerics"


def build_root() -> Path:
    env = os.environ.get("EDGEMOE_SIM_BUILD")
    return Path(env).resolve() if env else REPO / "build" / "sim"


def config_digest(cfg) -> str:
    """The 12-hex prefix of the config's SHA-256 (``Config.digest``)."""
    return cfg.digest()[:12]


def config_dir(cfg, root: Path | None = None) -> Path:
    d = (root or build_root()) / config_digest(cfg)
    d.mkdir(parents=True, exist_ok=True)
    cy = d / "config.yaml"
    text = cfg.to_yaml()
    if not cy.is_file() or cy.read_text() != text:
        atomic_write(cy, text)
    return d


def unit_dir(cfg, unit: str, root: Path | None = None) -> Path:
    d = config_dir(cfg, root) / unit
    d.mkdir(parents=True, exist_ok=True)
    return d


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def source_stamp() -> str:
    """Hash of everything the generated Verilog depends on besides the config."""
    import amaranth

    h = hashlib.sha256(amaranth.__version__.encode())
    for f in sorted(SIM_DIR.glob("*.py")) + sorted(GOLDEN_NUMERICS.glob("*.py")):
        h.update(f.name.encode())
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

    Any unit of :func:`edgemoe.sim.units.all_units` (stream and attention /
    routing units).  Next to it: ``<top>.il`` (the same design as RTLIL, for
    synthesis) and ``unit.json`` (the design latency, ROM bits, and what the
    unit's spec adds: port formats for a stream unit, parameters / ports /
    RAM bits for an attention unit).
    """
    from .units import get_unit

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
