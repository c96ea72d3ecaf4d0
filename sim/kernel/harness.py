"""Run the kernel's RTL -- what ``make hls`` exports, or the stand-in -- on golden inputs, bit for bit.

    from edgemoe.loading import load_config
    from edgemoe.sim.kernel.harness import run_kernel_rtl
    cfg = load_config("m3vit-micro")
    r = run_kernel_rtl(cfg, rtl="out/micro", tap=None, task="semseg", images=1)  # Vitis-exported RTL
    r = run_kernel_rtl(cfg, tap="pixels", task=[0, 1], images=2, backpressure=True)  # the stand-in
    r.calls[0].cycles, r.calls[0].mismatches      # raises SimulationFailed on any failure

or ``edgemoe sim kernel --config m3vit-micro [--project DIR | --standin] [--tap pixels]
[--task semseg] [--images N] [--sim icarus|verilator] [--backpressure]``.

The DUT (``rtl``):

* a generated project directory (``HLSProject.write`` / ``edgemoe generate``): the Verilog that
  ``make hls`` (Vitis HLS) exported under it, found by :func:`edgemoe.sim.kernel.rtl.find_exported_rtl`;
  :class:`~edgemoe.sim.kernel.rtl.NoExportedRTL` when there is none;
* ``None`` / ``"standin"``: :mod:`edgemoe.sim.kernel.standin`, an Amaranth top with the same
  module name, ports and register map that computes only the ``pixels`` tap (so the harness
  itself is tested where there is no Vitis); ``standin_cfg`` generates it for another config
  (its ``config_hash`` then differs: the harness must say so);
* a :class:`~edgemoe.sim.kernel.rtl.KernelRTL`.

What a run does:

1. golden inputs: ``images`` synthetic images (``golden.synthetic``, ``seed``) as pixel codes
   (``golden.fixed_model.pixel_codes``, the host's preprocessing), synthetic weights
   (``weights_seed``, as the csim tests use) packed by ``hls.layout.pack_weights``;
2. golden outputs: :class:`~edgemoe.golden.fixed_model.FixedM3ViT` on the same quantised weights,
   per call: the tap's words (tap id, stride ``MAX_TAP_WORDS`` per image) or with no tap
   (``TAP_NONE``) the output tokens (stride ``N_TOKENS * DIM``); the expected status from the
   top function's rules (``bad_task``, ``bad_tap``, ``ok``);
3. a job (JSON + ``.npz``) for the testbench ``sim/kernel/tb_kernel.py`` (its path in the run's
   :class:`~edgemoe.sim.tb.context.TbParams`): register map (``hls/interface.py``),
   one RAM window per m_axi bundle above 4 GiB (args of a bundle share it), buffers at 4 KB-aligned
   addresses (``misalign``: shifted off the bus beat), expected ``config_hash``;
4. the simulator build (cached in ``build/sim/<digest>/kernel_standin/<sim>/`` or
   ``build/sim/<digest>/kernel_rtl/<rtl digest>/<sim>/``), the cocotb run, the JUnit results
   checked by :func:`edgemoe.sim.runner.check_results` (raises :class:`SimulationFailed`);
5. the testbench's results: per call the status, the cycles from ap_start to ap_done (to the
   interrupt's rise), the words compared and mismatched, the m_axi widths read from the RTL.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..results import atomic_write, config_dir, locked
from ..runner import SIMULATORS, SimulationFailed, build_sources, check_results, log_tail, run_env
from ..tb.context import TbParams
from .rtl import CONTROL_PREFIX, KernelRTL, NoExportedRTL, bundles, find_exported_rtl, m_axi_prefix

TEST_MODULE = "edgemoe.sim.kernel.tb_kernel"
WINDOW_BASE = 1 << 32                        # bundle k's RAM window at (k + 1) * 4 GiB: pointer high words used
PAGE = 4096
#: build arguments for foreign (Vitis HLS) RTL on Verilator: its warnings are not ours to fix
VERILATOR_FOREIGN_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
#: bytes a buffer is shifted with ``misalign=True``, in its own words (off the bus beat, word-aligned); the
#: weights and the activations stay on the beat: the kernel's pointers to them are to whole bus words
#: (``weight_beat_t``, ``act_beat_t``), a weight lane's to whole lanes of them (not listed: 0)
MISALIGN_WORDS = {"image": 5, "weights": 0, "activations": 0}


@dataclass
class CallResult:
    """One kernel call as the testbench saw it."""

    task: int
    tap: int
    tap_name: str
    num_images: int
    expected_status: str
    status: int | None = None
    status_name: str = ""
    config_hash: int | None = None
    cycles: int | None = None            #: ap_start write to the interrupt's rise (or to the poll that saw ap_done)
    cycles_from: str = ""
    words_compared: int = 0
    mismatches: int = 0
    first_mismatch: dict | None = None
    stray_bytes: int = 0


@dataclass
class KernelRunResult:
    rtl: KernelRTL
    simulator: str
    config_name: str
    calls: list[CallResult]
    widths: dict                         #: per bundle: data / addr / id widths read from the DUT's ports
    ram_traffic: dict
    seconds: float
    build_seconds: float
    results_xml: Path
    log: Path
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.status_name == c.expected_status and c.mismatches == 0 and c.stray_bytes == 0
                   for c in self.calls)

    @property
    def cycles(self) -> list[int | None]:
        return [c.cycles for c in self.calls]

    def summary(self) -> str:
        widths = ", ".join(f"{b} {w['data']}" for b, w in self.widths.items())
        lines = [f"{self.rtl.describe()} on {self.simulator}, config {self.config_name}: m_axi data widths {widths}"]
        for c in self.calls:
            what = (f"{c.words_compared} words bit-exact" if c.expected_status == "ok"
                    else "no output expected")
            lines.append(f"  task {c.task} tap {c.tap_name} x{c.num_images}: status {c.status_name}, "
                         f"{what}, {c.cycles} cycles (ap_start -> ap_done, {c.cycles_from})")
        return "\n".join(lines)


# --- resolving what to run ---------------------------------------------------------------------

def resolve_rtl(cfg, rtl=None, standin_cfg=None, root: Path | None = None) -> KernelRTL:
    """The DUT: exported RTL under a project dir, the stand-in (``None`` / ``"standin"``), or a KernelRTL."""
    if isinstance(rtl, KernelRTL):
        return rtl
    if rtl is None or rtl == "standin":
        from .standin import standin_rtl

        return standin_rtl(standin_cfg or cfg, root)
    return find_exported_rtl(Path(rtl))


def tap_id(cfg, tap) -> tuple[int, str]:
    """(tap register value, name): a tap name, an id (unchecked: bad ids are a test), None / "none" = TAP_NONE."""
    from edgemoe.hls.interface import TAP_NONE
    from edgemoe.hls.plan import KernelPlan

    taps = KernelPlan.from_config(cfg).taps
    if tap is None or (isinstance(tap, str) and tap.lower() == "none") or tap == TAP_NONE:
        return TAP_NONE, "none"
    if isinstance(tap, str) and tap.lstrip("-").isdigit():
        tap = int(tap)
    if isinstance(tap, int):
        return tap, taps[tap] if 0 <= tap < len(taps) else f"#{tap}"
    if tap not in taps:
        from edgemoe.config import ConfigError

        raise ConfigError("tap", tap, f"must be a tap of {cfg.name} (e.g. {', '.join(taps[:4])}, ...; see "
                                      f"taps.json), an id 0..{len(taps) - 1}, or 'none'")
    return taps.index(tap), tap


def task_ids(cfg, task) -> list[int]:
    """Task indices: names checked, integers not (a bad task is a test)."""
    tasks = task if isinstance(task, (list, tuple)) else [task]
    out = []
    for t in tasks:
        if isinstance(t, str) and t.isdigit():
            t = int(t)
        out.append(t if isinstance(t, int) else cfg.model.task_index(t))
    return out


# --- the job ----------------------------------------------------------------------------------



def _pow2(n: int) -> int:
    return 1 << max(int(n - 1).bit_length(), 12)


def prepare_job(cfg, rtl: KernelRTL, tasks: list[int], tap: int, tap_name: str, images: int, job_dir: Path,
                seed: int = 0, weights_seed: int = 0, backpressure: bool = False, perturb: bool = False,
                misalign: bool = False, max_cycles: int | None = None, poll_cycles: int | None = None,
                weights=None) -> Path:
    """Golden inputs, expected words and the run's parameters for ``tb_kernel``; returns the JSON path."""
    import torch

    from edgemoe import __version__
    from edgemoe.golden.fixed_model import FixedM3ViT, tap_shapes
    from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict
    from edgemoe.golden.weights import QuantizedWeights, quantize_weights
    from edgemoe.hls.interface import STATUS, TAP_NONE, config_hash32, register_map
    from edgemoe.hls.layout import pack_weights
    from edgemoe.hls.writer import context
    from edgemoe.hls.plan import KernelPlan

    torch.set_num_threads(1)
    m = cfg.model
    ctx = context(cfg)
    ntaps = len(ctx["taps"])
    if weights is None:
        weights = synthetic_state_dict(m, seed=weights_seed)
    qw = weights if isinstance(weights, QuantizedWeights) else quantize_weights(cfg, weights)
    model = FixedM3ViT.from_quantized(cfg, qw)
    plan = KernelPlan.from_config(cfg)
    types, lanes = plan.buffer_types, plan.lanes
    pixels = model.quantize_images(synthetic_images(m, images, seed=seed)).numpy().astype(types["image"])
    packed = pack_weights(cfg, qw)
    ob = types["activations"].itemsize
    stride = plan.image_stride(tap != TAP_NONE)
    tap_ok = tap == TAP_NONE or 0 <= tap < ntaps

    # the weight buffer, or one per weight lane (lane i of every bus word), as the host writes them
    data = {"image": pixels.reshape(-1), **dict(zip(lanes.names, lanes.split(packed)))}
    calls = []
    for k, t in enumerate(tasks):
        status = "bad_task" if not 0 <= t < len(m.tasks) else "bad_tap" if not tap_ok else "ok"
        if status == "ok":
            res = model.forward(torch.from_numpy(pixels.astype(np.int64)), t, keep_taps=tap != TAP_NONE)
            golden = (res.tokens if tap == TAP_NONE else res.taps[tap_name]).numpy().astype(np.int64)
            expect_shape = (m.num_tokens, m.embed_dim) if tap == TAP_NONE else tap_shapes(m)[tap_name]
            assert golden.shape[1:] == tuple(expect_shape)
            # the words as the kernel writes them: the region's whole bus words, each part from one, zero padding
            words = plan.region(None if tap == TAP_NONE else tap_name).pack(golden)
            assert words.shape[1] <= stride
            if perturb and k == len(tasks) - 1:           # self-test: one word of the last image wrong
                words[-1, words.shape[1] // 3] += 1
            data[f"expected_{k}"] = words
        calls.append({"task": t, "tap": tap, "tap_name": tap_name, "num_images": images, "expect_status": status,
                      "stride_words": stride})

    # memory: one window per bundle, its buffers 4 KB-aligned (shifted off the beat with misalign)
    sizes = {"image": pixels.nbytes, **{n: data[n].nbytes for n in lanes.names}, "activations": images * stride * ob}
    word_bytes = {"image": types["image"].itemsize, **dict.fromkeys(lanes.names, packed.itemsize), "activations": ob}
    buffers, rams = {}, {}
    for k, (bundle, args) in enumerate(bundles(cfg).items()):
        base = WINDOW_BASE * (k + 1)
        off = PAGE
        for a in args:
            shift = MISALIGN_WORDS.get(a, 0) * word_bytes[a] if misalign else 0
            buffers[a] = {"bundle": bundle, "address": base + off + shift, "bytes": sizes[a],
                          "input": a != "activations"}
            off += -(-(shift + max(sizes[a], 1)) // PAGE) * PAGE + PAGE      # + a guard page
        rams[bundle] = {"prefix": m_axi_prefix(bundle), "base": base, "size": _pow2(off + PAGE)}
    total_words = images * len(tasks) * max(plan.image_stride(False), plan.image_stride(True))
    standin = rtl.origin == "stand-in"
    if max_cycles is None:
        max_cycles = 20 * total_words + 20_000 if standin else 2_000_000_000
    status_names = dict(STATUS)
    notes = {}
    if standin:
        from .standin import STANDIN_STATUS

        status_names = dict(STANDIN_STATUS)
        notes = {n: "the stand-in computes only the pixels tap; other taps and TAP_NONE need the exported RTL "
                    "(`make hls`, Vitis HLS)" for n in STANDIN_STATUS if n not in STATUS}

    job_dir.mkdir(parents=True, exist_ok=True)
    npz = job_dir / "job.npz"
    np.savez(npz, **data)
    job = {
        "config_name": cfg.name, "config_digest": cfg.digest(), "version": __version__,
        "config_hash": config_hash32(cfg), "regmap": register_map(cfg), "status": status_names,
        "status_notes": notes, "control_prefix": CONTROL_PREFIX, "rams": rams, "buffers": buffers,
        "calls": calls, "out_word_bytes": ob, "tap_none": TAP_NONE, "clock_ns": 10,
        "max_cycles": int(max_cycles), "poll_cycles": poll_cycles or (32 if standin else 1024),
        "backpressure": bool(backpressure), "seed": seed, "data": str(npz), "results": str(job_dir / "results.json"),
        "rtl": rtl.describe(),
    }
    path = job_dir / "job.json"
    atomic_write(path, json.dumps(job, indent=1))
    return path


# --- running ----------------------------------------------------------------------------------

def sim_dir_of(cfg, rtl: KernelRTL, simulator: str, root: Path | None = None) -> Path:
    if rtl.origin == "stand-in" and rtl.root is not None:
        d = rtl.root.parent / simulator                     # build/sim/<digest>/kernel_standin/<sim>
    else:
        d = config_dir(cfg, root) / "kernel_rtl" / rtl.digest() / simulator
    d.mkdir(parents=True, exist_ok=True)
    return d


def run_kernel_rtl(cfg, rtl=None, tap="auto", task: int | str | Sequence = 0, images: int = 1,
                   simulator: str = "icarus", seed: int = 0, weights_seed: int = 0, backpressure: bool = False,
                   perturb: bool = False, misalign: bool = False, max_cycles: int | None = None,
                   standin_cfg=None, weights=None, root: Path | None = None) -> KernelRunResult:
    """Run ``rtl`` (see the module doc) on golden inputs for ``cfg``; raise :class:`SimulationFailed` on any failure.

    ``tap``: a tap name or id, ``None`` / ``"none"`` for the whole network (tokens); ``"auto"``:
    ``pixels`` on the stand-in, the whole network on exported RTL.  ``task``: a name or index,
    or a list of them (one kernel call each, in one simulation).  ``backpressure``: random
    pauses on every AXI channel.  ``perturb``: self-test, one expected word is wrong, so the
    run must fail.  ``misalign``: buffers off the bus beat (partial first / last beats).
    ``max_cycles``: per call (default: generous for the stand-in, effectively none for exported RTL).
    """
    from edgemoe.config import ConfigError

    if simulator not in SIMULATORS:
        raise ConfigError("simulator", simulator, f"must be one of {', '.join(SIMULATORS)}")
    from edgemoe.hls.interface import kernel_args

    bits = next(a.value_bits for a in kernel_args(cfg) if a.name == "num_images")
    if not isinstance(images, int) or not 1 <= images < 1 << bits:
        raise ConfigError("images", images, f"must be an integer 1..{(1 << bits) - 1} (the kernel's num_images "
                                            f"register is {bits} bits; whole-network RTL runs take long, keep it small)")
    from cocotb_tools.runner import get_runner

    t_start = time.monotonic()
    dut = resolve_rtl(cfg, rtl, standin_cfg, root)
    dut.check_interface(cfg)
    if tap == "auto":
        tap = "pixels" if dut.origin == "stand-in" else None
    tap_value, tap_name = tap_id(cfg, tap)
    tasks = task_ids(cfg, task)
    sim_dir = sim_dir_of(cfg, dut, simulator, root)
    params = json.dumps([cfg.digest(), tasks, tap_value, images, seed, weights_seed, backpressure, perturb,
                         misalign, max_cycles, weights is None], sort_keys=True)
    run_dir = sim_dir / f"run-{hashlib.sha256(params.encode()).hexdigest()[:10]}"
    foreign = dut.origin != "stand-in"
    with run_env():
        with locked(sim_dir / ".lock"):
            build_s = build_sources(simulator, dut.sources, dut.top, sim_dir,
                                    extra_args=VERILATOR_FOREIGN_ARGS if foreign and simulator == "verilator" else None,
                                    waivers=not foreign)
        with locked(run_dir.parent / f".{run_dir.name}.lock"):
            job = prepare_job(cfg, dut, tasks, tap_value, tap_name, images, run_dir, seed=seed,
                              weights_seed=weights_seed, backpressure=backpressure, perturb=perturb,
                              misalign=misalign, max_cycles=max_cycles, weights=weights)
            for f in dut.data_files:                     # $readmemh paths are relative to the run folder
                shutil.copy2(f, run_dir / Path(f).name)
            results_xml, results_json, log = run_dir / "results.xml", run_dir / "results.json", run_dir / "sim.log"
            for f in (results_xml, results_json):
                f.unlink(missing_ok=True)
            exit_note = ""
            try:
                get_runner(simulator).test(
                    test_module=TEST_MODULE, hdl_toplevel=dut.top, hdl_toplevel_lang="verilog", build_dir=sim_dir,
                    test_dir=run_dir, results_xml=str(results_xml), seed=seed, log_file=log,
                    extra_env={**TbParams(unit="kernel", config=str(config_dir(cfg, root) / "config.yaml"),
                                          seed=seed, perturb=perturb, simulator=simulator, job=str(job)).to_env(),
                               "COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py"})
            except SystemExit as e:
                exit_note = f" (simulator exit status {e.code})"
            except RuntimeError as e:
                exit_note = f" ({e})"
            label = f"kernel {dut.origin} RTL on {simulator}"
            check_results(results_xml, log, label, exit_note, detail=f" [{cfg.name}, {cfg.precision.name}]")
            if not results_json.is_file():
                raise SimulationFailed(f"{label}: the testbench wrote no results ({results_json})\n{log_tail(log)}")
            res = json.loads(results_json.read_text())
    fields = CallResult.__dataclass_fields__
    calls = [CallResult(**{k: v for k, v in c.items() if k in fields}) for c in res["calls"]]
    if len(calls) != len(tasks):
        raise SimulationFailed(f"{label}: {len(calls)} of {len(tasks)} kernel calls reported; see {log}")
    return KernelRunResult(dut, simulator, cfg.name, calls, res.get("widths") or {}, res.get("ram_traffic", {}),
                           time.monotonic() - t_start, build_s, results_xml, log,
                           {"cycles_total": res.get("cycles_total"), "job": str(job)})


# --- what the command line needs -------------------------------------------------------------

def config_source(config: str | None, project: Path | None) -> str:
    """``--config`` if given, else the generated project's ``config.yaml``, else the micro preset."""
    if config is not None:
        return config
    if project is not None:
        for d in (project, *project.parents[:2]):
            if (d / "config.yaml").is_file() and (d / "regmap.json").is_file():
                return str(d / "config.yaml")
    return "m3vit-micro"


def check_project_config(cfg, project: Path) -> None:
    """The config must be the one the project was generated from (its ``regmap.json``), if it says."""
    from edgemoe.config import ConfigError

    for d in (project, *project.parents[:2]):
        regmap = d / "regmap.json"
        if regmap.is_file():
            digest = json.loads(regmap.read_text()).get("config_digest")
            if digest and digest != cfg.digest():
                raise ConfigError("config", cfg.name, f"must be the config {regmap} was generated from "
                                                      f"(digest {digest[:12]}, this one {cfg.digest()[:12]}); "
                                                      f"leave --config out to use {d / 'config.yaml'}")
            return
