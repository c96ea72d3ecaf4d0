"""Resource estimates of the RTL units: Yosys ``synth_xilinx -family xcup`` + ``stat``.

    edgemoe sim resources --config m3vit-tiny-cityscapes [--set precision.profile=w16a16]
    edgemoe sim resources --config m3vit-tiny-cityscapes --profiles w16a32,w16a16 --out table.md

prints a markdown table (LUT, FF, DSP48E2, BRAM36 per unit and config) of
every RTL unit (``--units`` to choose) and the ratio of the naive
dense-table GELU to the GELU unit; :func:`write_tables` stores each config's
rows in its build folder (``resources.json``, ``resources.md``: see
:mod:`edgemoe.sim.results`), where the resource model reads them.  Figures are
Yosys 0.23's out-of-context mapping for UltraScale+ (``-flatten -noiopad``),
not Vivado's: good for comparing units and configs, not a timing-closed
utilisation.  Per-unit results are cached in the unit's build folder
(``rtl/synth.json``, keyed by the design's hash).

Columns: ``lut`` = LUT1..LUT6 cells; ``ff`` = FDRE/FDSE/FDCE/FDPE;
``dsp`` = DSP48E2; ``bram`` = RAMB36E2 + RAMB18E2 / 2 (in 36 Kb blocks);
``lutram`` = distributed-RAM cells; ``srl`` = SRL16E/SRLC32E shift registers;
``carry`` = CARRY4/CARRY8 chains.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .build import generate
from .results import (RESOURCES_JSON, RESOURCES_MD, SYNTH_JSON, atomic_write, config_dir, load_perf, locked,
                      merge_resource_rows)
from .toolchain import require

FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE")
LUT_CELLS = tuple(f"LUT{i}" for i in range(1, 7))
SRL_CELLS = ("SRL16E", "SRLC32E", "SRLC16E")
CARRY_CELLS = ("CARRY4", "CARRY8")
_STAT_CELL = re.compile(r"^\s+([A-Za-z_$][\w$]*)\s+(\d+)\s*$")
#: the columns of the table, in order
COLUMNS = ("lut", "ff", "dsp", "bram", "lutram", "srl", "carry")


class SynthesisError(RuntimeError):
    pass


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts from Yosys ``stat`` output (the last module's ``Number of cells`` list)."""
    cells: dict[str, int] = {}
    in_cells = False
    for line in text.splitlines():
        if "Number of cells" in line:
            cells = {}
            in_cells = True
            continue
        if in_cells:
            m = _STAT_CELL.match(line)
            if m:
                cells[m.group(1)] = int(m.group(2))
            elif line.strip():
                in_cells = False
    return cells


def summarise(cells: dict[str, int]) -> dict:
    """The table columns from cell counts (see module doc)."""
    return {
        "lut": sum(cells.get(c, 0) for c in LUT_CELLS),
        "ff": sum(cells.get(c, 0) for c in FF_CELLS),
        "dsp": cells.get("DSP48E2", 0) + cells.get("DSP48E1", 0),
        "bram": cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2,
        "lutram": sum(n for c, n in cells.items() if re.match(r"^RAM\d+(X\d+)?[SDMQ]\d*$", c)),
        "srl": sum(cells.get(c, 0) for c in SRL_CELLS),
        "carry": sum(cells.get(c, 0) for c in CARRY_CELLS),
        "cells": dict(sorted(cells.items())),
    }


def synth_report(verilog_path: Path | str, top: str, family: str = "xcup", log: Path | None = None,
                 use_rtlil_twin: bool = True) -> dict:
    """Synthesise one design with ``synth_xilinx -family <family>``; return its resource columns.

    ``verilog_path`` may be Verilog (``.v``) or RTLIL (``.il``); for a ``.v``
    with an ``.il`` of the same stem beside it (as :func:`edgemoe.sim.build.generate`
    writes), the RTLIL is read (same design, parsed in seconds rather than
    minutes by Yosys 0.23 when the design holds a large ROM).
    """
    yosys = require("yosys")
    path = Path(verilog_path)
    twin = path.with_suffix(".il")
    if path.suffix == ".v" and use_rtlil_twin and twin.is_file():
        path = twin
    reader = "read_rtlil" if path.suffix == ".il" else "read_verilog"
    with tempfile.TemporaryDirectory() as tmp:
        stat_file = Path(tmp) / "stat.txt"
        script = (f"{reader} {path}; synth_xilinx -family {family} -flatten -noiopad -top {top}; "
                  f"tee -q -o {stat_file} stat")
        r = subprocess.run([yosys, "-q", "-l", str(log or Path(tmp) / "yosys.log"), "-p", script],
                           capture_output=True, text=True)
        if r.returncode != 0 or not stat_file.is_file():
            raise SynthesisError(f"yosys failed on {path} (top {top}):\n{(r.stdout + r.stderr)[-3000:]}")
        cells = parse_stat(stat_file.read_text())
    if not cells:
        raise SynthesisError(f"yosys stat of {top} listed no cells")
    return summarise(cells)


def unit_resources(unit: str, cfg, family: str = "xcup", root: Path | None = None) -> dict:
    """Resource columns of registered ``unit`` for ``cfg`` (cached in ``rtl/synth.json``)."""
    vpath = generate(unit, cfg, root)
    info = json.loads((vpath.parent / "unit.json").read_text())
    src = vpath.with_suffix(".il") if vpath.with_suffix(".il").is_file() else vpath
    key = hashlib.sha256(src.read_bytes() + family.encode()).hexdigest()[:16]
    cache = vpath.parent / SYNTH_JSON
    with locked(vpath.parent / ".synth.lock"):
        if cache.is_file():
            data = json.loads(cache.read_text())
            if data.get("key") == key:
                return data["resources"]
        res = synth_report(vpath, info["top"], family, log=vpath.parent / "yosys.log")
        atomic_write(cache, json.dumps({"key": key, "family": family, "resources": res}, indent=2) + "\n")
    return res


def resource_table(units: list[str], configs: list, family: str = "xcup", jobs: int = 2,
                   root: Path | None = None) -> list[dict]:
    """One row per (config, unit): formats (stream units) or parameters (multi-field units),
    latency (measured when a run recorded it, else the design's) and resource columns."""
    from .units.registry import STREAM_UNITS, get_unit, unit_formats

    tasks = [(cfg, u) for cfg in configs for u in units]
    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        results = list(pool.map(lambda t: unit_resources(t[1], t[0], family, root), tasks))
    rows = []
    for (cfg, u), res in zip(tasks, results):
        info = json.loads((generate(u, cfg, root).parent / "unit.json").read_text())
        perf = load_perf(cfg, root).get(u, {})
        measured = next((p for p in perf.values() if "latency" in p), {})
        spec = get_unit(u)
        kind = unit_formats(spec, cfg) if u in STREAM_UNITS else {"params": info["params"], "ram_bits": info["ram_bits"]}
        rows.append({"config": cfg.name, "profile": cfg.precision.name, "digest": cfg.digest()[:12],
                     "unit": u, "golden": getattr(spec, "golden", True), **kind,
                     "latency": measured.get("latency", info.get("latency")), "rom_bits": info.get("rom_bits"),
                     "ii": measured.get("ii"), "measured": bool(measured), **res})
    return rows


def naive_ratios(rows: list[dict], unit: str = "gelu", naive: str = "gelu_naive") -> list[dict]:
    """Per config: naive / unit for each resource column (``None`` where the unit uses none)."""
    out = []
    by = {(r["digest"], r["unit"]): r for r in rows}
    for (digest, u), r in by.items():
        if u != unit or (digest, naive) not in by:
            continue
        n = by[(digest, naive)]
        ratio = {c: (n[c] / r[c] if r[c] else None) for c in COLUMNS + ("rom_bits",)}
        out.append({"config": r["config"], "profile": r["profile"], "unit": r, "naive": n, "ratio": ratio})
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return "-" if v is None else str(v)


def _ports_or_params(r: dict) -> str:
    """The format column: ``in -> out`` of a stream unit, the design parameters of a multi-field unit."""
    if "params" not in r:
        return f"`{r['in']}` -> `{r['out']}`"
    p = r["params"]
    if r["unit"] == "softmax":
        return f"P={p['parallel']} R={p['recurrence']}"
    if r["unit"] == "attn_schedule":
        return f"N={p['num_tokens']} P={p['parallel']}"
    if r["unit"] == "topk":
        return f"E={p['num_experts']} k={p['top_k']} N={p['num_tokens']}"
    if r["unit"] == "compute_tile":
        return f"{p['cu_in']}x{p['cu_out']} K<={p['k_max']}"
    if r["unit"] == "layernorm":
        return f"D={p['dim']} S={p['slots']}"
    return " ".join(f"{k}={v}" for k, v in p.items())


def markdown(rows: list[dict], family: str = "xcup") -> str:
    """The resource table and the naive-GELU comparison, as markdown."""
    lines = [f"### RTL unit resources (Yosys `synth_xilinx -family {family}`, out of context)", "",
             "| config | profile | unit | in -> out / params | latency | II | LUT | FF | DSP48E2 | BRAM36 | LUTRAM "
             "| SRL | CARRY |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lat = _fmt(r["latency"]) + ("" if r["measured"] else " (design)")
        name = r["unit"] + ("" if r["golden"] else " (reference)")
        lines.append(f"| {r['config']} | {r['profile']} | {name} | {_ports_or_params(r)} | {lat} | "
                     f"{_fmt(r['ii'])} | " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |")
    ratios = naive_ratios(rows)
    if ratios:
        lines += ["", "### GELU unit vs naive dense-table GELU", "",
                  "| config | profile | resource | GELU unit | naive table | naive / unit |",
                  "|---|---|---|---:|---:|---:|"]
        for q in ratios:
            for c in ("rom_bits", "bram", "lut", "ff", "dsp"):
                rr = q["ratio"][c]
                lines.append(f"| {q['config']} | {q['profile']} | {c} | {_fmt(q['unit'][c])} | "
                             f"{_fmt(q['naive'][c])} | {'n/a' if rr is None else f'{rr:.2f}x'} |")
        lines += ["", "The naive reference tabulates GELU itself on [-span, span) with step 2**-min(act.frac, 12)",
                  "(no interpolation; `edgemoe.sim.units.gelu_naive`); the GELU unit stores only",
                  "d(t) = t * Phi(-t) on [0, span) with step 2**-gelu_step_log2 and interpolates",
                  "(one DSP48E2, two reads of a ROM small enough for LUTs).  `rom_bits` = table",
                  "storage (entries x width)."]
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict], configs: list, family: str = "xcup", root: Path | None = None) -> str:
    """Store each config's rows in its build folder and return the report.

    Per config: its rows merged into ``resources.json`` (other units' earlier rows kept,
    :func:`edgemoe.sim.results.merge_resource_rows`) and the merged table as ``resources.md``.
    Returns the markdown of ``rows`` (:func:`markdown`); the resource model's figures
    beside these (:func:`edgemoe.perf.resources.model_comparison`) are the caller's to add.
    """
    text = markdown(rows, family)
    for cfg in configs:
        folder = config_dir(cfg, root)
        mine = merge_resource_rows(folder / RESOURCES_JSON, [r for r in rows if r["digest"] == cfg.digest()[:12]])
        atomic_write(folder / RESOURCES_MD, markdown(mine, family))
    return text
