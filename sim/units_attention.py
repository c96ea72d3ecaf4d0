"""Registry of the attention / routing RTL units, their golden expectations, and their runs.

Three units whose transactions are not one word in, one word out (so they do
not fit :class:`edgemoe.sim.units.UnitSpec` and the generic stream
testbench); each has its own cocotb module in ``sim/tb/``:

* ``softmax`` -- :class:`.unit_softmax.OnlineSoftmaxUnit`, golden
  ``softmax.online_init / online_step / online_finish`` and, for whole heads,
  ``online_softmax_state`` over ``attention.key_order``; testbench ``tb_softmax``;
* ``attn_schedule`` -- :class:`.unit_attn_schedule.AttnScheduleUnit`, golden
  ``attention.key_order`` and the HLS kernel's STREAM loop / ``ATTN_CYCLES``;
  testbench ``tb_attn_schedule``;
* ``topk`` -- :class:`.unit_topk.TopKQueueUnit`, golden ``numerics.topk.topk``
  and ``moe.Routing`` (``counts``, ``queue``); testbench ``tb_topk``.

This module holds the exact expectations (torch + golden only, no Amaranth:
the testbenches import it), and the build / run / synthesis entry points,
which reuse the stream units' infrastructure (:mod:`.build`, :mod:`.runner`,
:mod:`.resources`): the same build folder ``build/sim/<digest>/<unit>/``,
the same cocotb runner and results parsing (raises
:class:`~edgemoe.sim.runner.SimulationFailed`), the same ``perf.json``.

    from edgemoe.sim.units_attention import run_attention_unit
    run_attention_unit("softmax", load_config("m3vit-micro"), "icarus")

or ``python -m edgemoe.sim.units_attention softmax topk --config m3vit-micro``.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from edgemoe.golden.attention import key_order
from edgemoe.golden.moe import Routing
from edgemoe.golden.numerics.softmax import online_finish, online_init, online_softmax_state, online_step
from edgemoe.golden.numerics.topk import topk

#: the sum recurrence of the softmax unit is split in this many register stages
SOFTMAX_RECURRENCE = 2

KIND_TOKEN, KIND_COUNT, KIND_QUEUE = 0, 1, 2     # = unit_topk's out_kind codes


def _maker(module: str, cls: str, **kw) -> Callable[[object], object]:
    def make(cfg):
        import importlib
        return getattr(importlib.import_module(f"{__package__}.{module}"), cls).from_config(cfg, **kw)
    make.__name__ = f"{cls}.from_config"
    return make


@dataclass(frozen=True)
class AttnUnitSpec:
    """One multi-word unit: builder, testbench module, parameters it reads from the config."""

    name: str
    top: str                                   #: Verilog module name
    make: Callable[[object], object]            #: cfg -> Amaranth component
    test_module: str                           #: cocotb module in sim/tb/
    params: Callable[[object], dict]            #: cfg -> the parameters the design depends on
    doc: str = ""


def _softmax_params(cfg) -> dict:
    p = cfg.precision
    return {"parallel": cfg.hardware.attn_parallel, "recurrence": SOFTMAX_RECURRENCE,
            "score": str(p.attn_score), "exp": str(p.exp), "softmax_sum": str(p.softmax_sum),
            "softmax_inv": str(p.softmax_inv), "table_frac_bits": p.table_frac_bits,
            "exp_table_bits": p.exp_table_bits, "recip_table_bits": p.recip_table_bits}


def _schedule_params(cfg) -> dict:
    return {"num_tokens": cfg.model.num_tokens, "parallel": cfg.hardware.attn_parallel,
            "attn_cycles": attn_cycles(cfg.model.num_tokens, cfg.hardware.attn_parallel)}


def _topk_params(cfg) -> dict:
    m = cfg.model
    return {"gate_logit": str(cfg.precision.gate_logit), "num_experts": m.num_experts, "top_k": m.top_k,
            "num_tokens": m.num_tokens}


ATTENTION_UNITS: dict[str, AttnUnitSpec] = {s.name: s for s in (
    AttnUnitSpec("softmax", "edgemoe_softmax", _maker("unit_softmax", "OnlineSoftmaxUnit",
                                                       recurrence=SOFTMAX_RECURRENCE),
                 "tb_softmax", _softmax_params, "online softmax: (max, 1/sum) per row, P interleaved rows"),
    AttnUnitSpec("attn_schedule", "edgemoe_attn_schedule", _maker("unit_attn_schedule", "AttnScheduleUnit"),
                 "tb_attn_schedule", _schedule_params, "reordered attention: key stream and query slots"),
    AttnUnitSpec("topk", "edgemoe_topk", _maker("unit_topk", "TopKQueueUnit"),
                 "tb_topk", _topk_params, "gate routing: top-k per token, per-expert token queues"),
)}


def get_attention_unit(name: str) -> AttnUnitSpec:
    if name not in ATTENTION_UNITS:
        raise KeyError(f"unknown attention RTL unit {name!r}; units: {', '.join(ATTENTION_UNITS)}")
    return ATTENTION_UNITS[name]


# --- exact expectations (golden) ------------------------------------------------------------------

def attn_cycles(num_tokens: int, parallel: int) -> int:
    """``ATTN_CYCLES`` of the generated kernel (the formula of ``hls/writer.py``)."""
    n, par = num_tokens, parallel
    return ((n - 1) // par) * n + (n - 1) % par + n


def softmax_expected(words: list[tuple[int, int, int]], p, perturb: bool = False) -> list[tuple[int, int, int]]:
    """(slot, max, 1/sum) per finished row, in the order of the rows' last words.

    ``words`` are (score, last, slot) in stream order; each slot's rows are
    folded with the golden online_init / online_step / online_finish.
    ``perturb``: the self-test's wrong model (the 1/sum cast rounds by another mode).
    """
    if perturb:
        p = dataclasses.replace(p, softmax_inv=p.softmax_inv.with_modes(
            rounding="TRN" if p.softmax_inv.rounding != "TRN" else "RND"))
    state: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    out = []
    for s, last, slot in words:
        m, l = state.get(slot) or online_init((), p)
        m, l = online_step(m, l, torch.tensor(s, dtype=torch.int64), p)
        if last:
            out.append((slot, int(m), int(online_finish(l, p))))
            state.pop(slot, None)
        else:
            state[slot] = (m, l)
    return out


def schedule_stream(scores: torch.Tensor, parallel: int) -> tuple[list[tuple[int, int, int]], list[int]]:
    """The softmax unit's input for one head in the hardware's schedule, and the row order.

    ``scores`` [N, N] raw attn_score (query, key).  At each schedule cycle,
    every active slot (ascending) sends its query's score for the current key
    (``last`` at step N-1).  Returns the words and the queries in the order
    their rows finish.
    """
    n = scores.shape[0]
    order = key_order(n, parallel).tolist()
    rows = scores.tolist()
    words, done = [], []
    for t in range(attn_cycles(n, parallel)):
        key = t % n
        for o in range(parallel):
            if t < o:
                continue
            q, step = ((t - o) // n) * parallel + o, (t - o) % n
            if q >= n:
                continue
            assert key == order[q][step]
            words.append((rows[q][key], int(step == n - 1), o))
            if step == n - 1:
                done.append(q)
    return words, done


def schedule_expected(scores: torch.Tensor, parallel: int, p) -> list[tuple[int, int, int]]:
    """(slot, max, 1/sum) rows of :func:`schedule_stream`, from the golden attention's own
    :func:`~edgemoe.golden.numerics.softmax.online_softmax_state` over :func:`key_order`."""
    n = scores.shape[0]
    m, inv = online_softmax_state(scores, key_order(n, parallel), p)
    _, done = schedule_stream(scores, parallel)
    return [(q % parallel, int(m[q]), int(inv[q])) for q in done]


def schedule_problems(words: list[dict], n: int, par: int, perturb: bool = False, max_report: int = 12) -> list[str]:
    """Check one recorded schedule (one dict of output fields per cycle) against the golden order.

    Every query meets every key once, in :func:`key_order`'s order; slot ``o``
    holds query ``((t-o)//N)*P + o`` at step ``(t-o)%N`` (the HLS kernel's
    STREAM loop); one key per cycle (``t % N``), at most one refill (query
    read) per cycle; done at step N-1; ``last`` on cycle ``ATTN_CYCLES - 1``
    only, and exactly ``ATTN_CYCLES`` cycles.
    """
    order = key_order(n, par)
    if perturb:                                # self-test: a wrong golden order
        order = (order + 1) % n
    order = order.tolist()
    probs: list[str] = []
    cycles = attn_cycles(n, par)
    if len(words) != cycles:
        probs.append(f"{len(words)} schedule cycles, ATTN_CYCLES = {cycles}")
    seen: dict[int, list[int]] = {}
    refills: dict[int, int] = {}
    dones: dict[int, int] = {}
    for t, w in enumerate(words):
        if w["key"] != t % n:
            probs.append(f"t={t}: key {w['key']} != {t % n}")
        if w["last"] != int(t == cycles - 1):
            probs.append(f"t={t}: last = {w['last']}")
        nref = 0
        for o in range(par):
            q, step = ((t - o) // n) * par + o, (t - o) % n
            want = t >= o and q < n
            a = w["active"][o]
            if a != int(want):
                probs.append(f"t={t} slot {o}: active {a}, expected {int(want)}")
                continue
            if not a:
                if w["refill"][o] or w["done"][o]:
                    probs.append(f"t={t} slot {o}: refill/done on an idle slot")
                continue
            gq, gs = w["query"][o], w["step"][o]
            if (gq, gs) != (q, step):
                probs.append(f"t={t} slot {o}: query/step {gq}/{gs}, HLS schedule {q}/{step}")
            if not 0 <= gq < n or not 0 <= gs < n:
                continue
            if order[gq][gs] != w["key"]:
                probs.append(f"t={t} slot {o}: query {gq} step {gs} meets key {w['key']}, golden {order[gq][gs]}")
            seen.setdefault(gq, []).append(w["key"])
            if w["refill"][o] != int(gs == 0):
                probs.append(f"t={t} slot {o}: refill {w['refill'][o]} at step {gs}")
            if w["done"][o] != int(gs == n - 1):
                probs.append(f"t={t} slot {o}: done {w['done'][o]} at step {gs}")
            if w["refill"][o]:
                nref += 1
                refills[gq] = refills.get(gq, 0) + 1
                if w["load_query"] != gq:
                    probs.append(f"t={t}: load_query {w['load_query']} != refilled query {gq}")
            if w["done"][o]:
                dones[gq] = dones.get(gq, 0) + 1
        if nref > 1:
            probs.append(f"t={t}: {nref} queries read in one cycle")
        if w["load"] != int(nref > 0):
            probs.append(f"t={t}: load {w['load']} with {nref} refills")
    for q in range(n):
        if seen.get(q) != order[q]:
            probs.append(f"query {q}: keys {seen.get(q)} != golden order {order[q]}")
        if refills.get(q) != 1 or dones.get(q) != 1:
            probs.append(f"query {q}: {refills.get(q, 0)} refills, {dones.get(q, 0)} dones")
    if len(probs) > max_report:
        probs = probs[:max_report] + [f"... {len(probs) - max_report} more problems"]
    return probs


def topk_expected(logits: torch.Tensor, k: int, perturb: bool = False) -> list[tuple]:
    """The topk unit's output words for images ``logits`` [B, T, E] (raw gate_logit).

    Per token (kind 0): (0, token, experts best first, their logits) from the
    golden :func:`~edgemoe.golden.numerics.topk.topk`; per image, per expert
    (kind 1): (1, expert, count) from :meth:`Routing.counts`, then (kind 2)
    (2, expert, position, token) for :meth:`Routing.queue`.
    ``perturb``: the self-test's wrong model (ties go to the higher index).
    """
    b, t, e = logits.shape
    if perturb:
        experts = (e - 1) - topk(logits.flip(-1), k)
    else:
        experts = topk(logits, k)
    chosen = torch.gather(logits, -1, experts)
    r = Routing(logits, logits, experts, chosen)
    counts = r.counts(e)
    out: list[tuple] = []
    for i in range(b):
        for n in range(t):
            out.append((KIND_TOKEN, n, tuple(experts[i, n].tolist()), tuple(chosen[i, n].tolist())))
        for x in range(e):
            out.append((KIND_COUNT, x, int(counts[i, x])))
            out += [(KIND_QUEUE, x, pos, tok) for pos, tok in enumerate(r.queue(i, x).tolist())]
    return out


# --- generation, simulation, synthesis -------------------------------------------------------------

def generate_attention_unit(unit: str, cfg, root: Path | None = None, force: bool = False) -> Path:
    """Verilog (+ RTLIL twin, ``unit.json``) of ``unit`` for ``cfg`` in
    ``build/sim/<digest>/<unit>/rtl/``, cached like :func:`edgemoe.sim.build.generate`."""
    from .build import _atomic_write, config_digest, emit_rtlil, emit_verilog, locked, source_stamp, unit_dir

    spec = get_attention_unit(unit)
    rtl = unit_dir(cfg, unit, root) / "rtl"
    path = rtl / f"{spec.top}.v"
    stamp_file = rtl / "stamp"
    stamp = source_stamp()
    with locked(rtl / ".lock"):
        if not force and path.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp:
            return path
        component = spec.make(cfg)
        emit_verilog(component, spec.top, out_dir=rtl)
        emit_rtlil(component, spec.top, out_dir=rtl)
        rams = getattr(component, "rams", {})
        info = {"unit": unit, "top": spec.top, "config": cfg.name, "digest": config_digest(cfg),
                "precision": cfg.precision.name, "latency": component.latency,
                "rom_bits": sum(d * w for d, w in component.roms.values()),
                "roms": {k: list(v) for k, v in component.roms.items()},
                "ram_bits": sum(d * w for d, w in rams.values()), "rams": {k: list(v) for k, v in rams.items()},
                "params": spec.params(cfg), "ports": _ports(component)}
        _atomic_write(rtl / "unit.json", json.dumps(info, indent=2) + "\n")
        _atomic_write(stamp_file, stamp)
    return path


def _ports(component) -> dict:
    from amaranth import Shape

    out = {}
    for name, member in component.signature.members.items():
        shape = Shape.cast(member.shape)
        out[name] = {"dir": "in" if member.flow.name == "In" else "out", "bits": shape.width,
                     "signed": shape.signed}
    return out


def attention_unit_info(unit: str, cfg, root: Path | None = None) -> dict:
    return json.loads((generate_attention_unit(unit, cfg, root).parent / "unit.json").read_text())


def run_attention_unit(unit: str, cfg, simulator: str = "icarus", seed: int = 1, vectors: int = 200,
                       perturb: bool = False, tag: str | None = None, root: Path | None = None,
                       record_perf: bool = True, extra_env: dict[str, str] | None = None):
    """Build and run ``unit``'s cocotb testbench on ``simulator``; raise on any failure.

    The same steps as :func:`edgemoe.sim.runner.run_unit` (whose generator only
    knows the stream units): generate, build (cached), run the unit's own
    test module, parse the results XML (raising
    :class:`~edgemoe.sim.runner.SimulationFailed`), record the measured figures
    in ``build/sim/<digest>/perf.json``.  ``vectors`` scales the random part
    (rows / images); ``perturb``: the testbench expects a wrong golden model,
    so the run must fail.
    """
    from cocotb_tools.runner import get_runner

    from . import stream_tb
    from .build import config_dir, locked
    from .runner import (SIMULATORS, RunResult, SimulationFailed, _build, _log_tail, _run_env, parse_results,
                         record_perf_figures)

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r}: must be one of {', '.join(SIMULATORS)}")
    spec = get_attention_unit(unit)
    t_start = time.monotonic()
    verilog = generate_attention_unit(unit, cfg, root)
    info = json.loads((verilog.parent / "unit.json").read_text())
    sim_dir = verilog.parent.parent / simulator
    tag = tag or f"seed{seed}-n{vectors}{'-perturb' if perturb else ''}"
    run_dir = sim_dir / f"run-{tag}"
    run_dir.mkdir(parents=True, exist_ok=True)
    results_xml, perf_json, log = run_dir / "results.xml", run_dir / "perf.json", run_dir / "sim.log"
    for f in (results_xml, perf_json):
        f.unlink(missing_ok=True)
    env = {
        stream_tb.ENV_UNIT: unit,
        stream_tb.ENV_CONFIG: str(config_dir(cfg, root) / "config.yaml"),
        stream_tb.ENV_SEED: str(seed),
        stream_tb.ENV_VECTORS: str(vectors),
        stream_tb.ENV_PERF: str(perf_json),
        stream_tb.ENV_PERTURB: "1" if perturb else "0",
        stream_tb.ENV_SIMULATOR: simulator,
        "COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py",
        **(extra_env or {}),
    }
    exit_note = ""
    with _run_env():
        with locked(sim_dir / ".lock"):
            build_s = _build(simulator, verilog, spec.top, sim_dir)
        runner = get_runner(simulator)
        try:
            runner.test(test_module=spec.test_module, hdl_toplevel=spec.top, hdl_toplevel_lang="verilog",
                        build_dir=sim_dir, test_dir=run_dir, results_xml=str(results_xml), extra_env=env,
                        seed=seed, log_file=log)
        except SystemExit as e:
            exit_note = f" (simulator exit status {e.code})"
        except RuntimeError as e:
            exit_note = f" ({e})"
    try:
        cases = parse_results(results_xml)
    except SimulationFailed as e:
        raise SimulationFailed(f"{unit} on {simulator}{exit_note}: {e}\n{_log_tail(log)}") from None
    if not cases:
        raise SimulationFailed(f"{unit} on {simulator}: no cocotb test ran{exit_note}; see {log}\n{_log_tail(log)}")
    failed = [c for c in cases if not c.passed]
    if failed:
        lines = "\n".join(f"  {c.name}: {c.message}" for c in failed)
        raise SimulationFailed(f"{unit} on {simulator} [{cfg.name}, {cfg.precision.name}]: "
                               f"{len(failed)}/{len(cases)} cocotb tests failed{exit_note}:\n{lines}\nlog: {log}")
    if exit_note:
        raise SimulationFailed(f"{unit} on {simulator}: tests passed but the simulator failed{exit_note}; see {log}")
    perf = json.loads(perf_json.read_text()) if perf_json.is_file() else {}
    perf.update(design_latency=info.get("latency"), simulator=simulator, unit=unit,
                precision=cfg.precision.name, config=cfg.name, params=info.get("params"))
    if record_perf and not perturb:
        record_perf_figures(cfg, unit, simulator, perf, root)
    return RunResult(unit, simulator, cases, perf, results_xml, verilog, time.monotonic() - t_start, build_s)


def attention_unit_resources(unit: str, cfg, family: str = "xcup", root: Path | None = None) -> dict:
    """Yosys ``synth_xilinx -family <family>`` + ``stat`` columns of ``unit`` for ``cfg``
    (:func:`edgemoe.sim.resources.synth_report`), cached in ``rtl/synth.json``."""
    import hashlib

    from .build import _atomic_write, locked
    from .resources import synth_report

    vpath = generate_attention_unit(unit, cfg, root)
    src = vpath.with_suffix(".il") if vpath.with_suffix(".il").is_file() else vpath
    key = hashlib.sha256(src.read_bytes() + family.encode()).hexdigest()[:16]
    cache = vpath.parent / "synth.json"
    with locked(vpath.parent / ".synth.lock"):
        if cache.is_file():
            data = json.loads(cache.read_text())
            if data.get("key") == key:
                return data["resources"]
        res = synth_report(vpath, get_attention_unit(unit).top, family, log=vpath.parent / "yosys.log")
        _atomic_write(cache, json.dumps({"key": key, "family": family, "resources": res}, indent=2) + "\n")
    return res


RESOURCE_COLUMNS = ("lut", "ff", "dsp", "bram", "lutram", "srl", "carry")


def resource_rows(units: list[str], configs: list, family: str = "xcup", root: Path | None = None) -> list[dict]:
    """One row per (config, unit): parameters, latency (measured when a run recorded it), resources."""
    from .runner import load_perf

    rows = []
    for cfg in configs:
        perf = load_perf(cfg, root)
        for u in units:
            res = attention_unit_resources(u, cfg, family, root)
            info = attention_unit_info(u, cfg, root)
            measured = next((f for f in perf.get(u, {}).values() if "latency" in f), {})
            rows.append({"config": cfg.name, "profile": cfg.precision.name, "unit": u,
                         "params": info["params"], "latency": measured.get("latency", info["latency"]),
                         "ii": measured.get("ii"), "measured": bool(measured),
                         "rom_bits": info["rom_bits"], "ram_bits": info["ram_bits"], **res})
    return rows


def resource_markdown(rows: list[dict], family: str = "xcup") -> str:
    def fmt(v):
        return "-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))

    def par(r):
        p = r["params"]
        if r["unit"] == "softmax":
            return f"P={p['parallel']} R={p['recurrence']}"
        if r["unit"] == "attn_schedule":
            return f"N={p['num_tokens']} P={p['parallel']}"
        return f"E={p['num_experts']} k={p['top_k']} N={p['num_tokens']}"

    lines = [f"### Attention / routing unit resources (Yosys `synth_xilinx -family {family}`, out of context)", "",
             "| config | profile | unit | params | latency | II | LUT | FF | DSP48E2 | BRAM36 | LUTRAM | SRL | CARRY |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lat = fmt(r["latency"]) + ("" if r["measured"] else " (design)")
        lines.append(f"| {r['config']} | {r['profile']} | {r['unit']} | {par(r)} | {lat} | {fmt(r['ii'])} | "
                     + " | ".join(fmt(r[c]) for c in RESOURCE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    from edgemoe.config import load_config

    from .runner import SIMULATORS, SimulationFailed

    ap = argparse.ArgumentParser(description="run / synthesise the attention and routing RTL units")
    ap.add_argument("units", nargs="*", default=None, help=f"units (default all): {', '.join(ATTENTION_UNITS)}")
    ap.add_argument("--config", default="m3vit-micro")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    ap.add_argument("--sim", default="icarus", choices=SIMULATORS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vectors", type=int, default=200)
    ap.add_argument("--resources", action="store_true", help="Yosys resource table instead of simulation")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.set)
    units = args.units or list(ATTENTION_UNITS)
    if args.resources:
        sys.stdout.write(resource_markdown(resource_rows(units, [cfg])))
        return 0
    status = 0
    for unit in units:
        try:
            r = run_attention_unit(unit, cfg, args.sim, seed=args.seed, vectors=args.vectors)
        except SimulationFailed as e:
            print(f"FAIL {unit}: {e}")
            status = 1
            continue
        p = r.perf
        print(f"PASS {unit} on {args.sim}: {len(r.tests)} tests, latency {p.get('latency')} II {p.get('ii')}, "
              f"{r.seconds:.1f} s (build {r.build_seconds:.1f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
