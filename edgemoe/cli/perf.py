"""The ``perf``, ``explore`` and ``report`` commands: cycle and resource models, design-space search, report.

``perf --compare`` puts the estimate beside Edge-MoE's published design (measured and modelled,
:mod:`edgemoe.perf.reference`), the physical floors and the task heads (:mod:`edgemoe.perf.heads`).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edgemoe.cli import args as cli_args
from edgemoe.cli.common import add_config_args, config_from_args
from edgemoe.config import ConfigError


def _routing(cfg, args):
    from edgemoe.perf.routing import routing_from_golden, skewed_routing, uniform_routing

    spec = (args.routing or "uniform").strip().lower()
    if spec == "uniform":
        return uniform_routing(cfg)
    if spec.startswith("skewed"):
        alpha = 1.0
        if ":" in spec:
            try:
                alpha = float(spec.split(":", 1)[1])
            except ValueError:
                alpha = float("nan")
        if not 0 <= alpha <= 100:  # nan included
            raise ConfigError("--routing", args.routing, "skewed takes a Zipf exponent from 0 to 100: skewed:1.5")
        return skewed_routing(cfg, alpha)
    if spec == "golden":
        return routing_from_golden(cfg, args.images, cfg.model.task_index(args.task), args.seed)
    raise ConfigError("--routing", args.routing, "must be uniform, skewed[:ALPHA] or golden")


def _measured():
    """What the RTL units' tools wrote under the sim build folder: the models' calibration and yosys figures."""
    from edgemoe.perf.measured import SimResults
    from edgemoe.sim import formats, results

    return SimResults.read(results, layernorm_plan=formats.layernorm_plan)


def cmd_perf(args) -> int:
    from edgemoe.perf.cycles import MODES, as_written_findings, estimate, format_findings
    from edgemoe.perf.resources import DEFAULT_CAP, estimate_resources

    cfg = config_from_args(args)
    routing = _routing(cfg, args)
    measured = _measured()
    est = estimate(cfg, routing, args.batch, args.mode, port_limit=args.port_limit, measured=measured)
    print(est.table())
    other = [m for m in MODES if m != args.mode][0]
    o = estimate(cfg, routing, args.batch, other, port_limit=args.port_limit, measured=measured)
    print(f"other mode ({other}): {o.ms_per_image:.2f} ms/image, {o.roofline.ratio:.1f}x roofline")
    if args.loops:
        print("\n" + est.loops_table())
    if args.as_written:
        print("\nthe kernel as written, loops grouped by the constraint that binds them:")
        print(format_findings(as_written_findings(cfg, routing, args.batch, measured)))
    if args.resources:
        print()
        print(estimate_resources(cfg, args.mode, args.batch).table(details=args.details))
        if args.batch > 1 and args.mode == "onchip":
            shared = estimate_resources(cfg, args.mode, args.batch, share_weights=True)
            u = shared.utilisation
            print(f"  what if every weight (the dense layers' too) were shared across the batch of {args.batch}: "
                  f"every image's row buffers on chip: BRAM36 {100 * u['bram36']:.1f}%, LUT {100 * u['lut']:.1f}%: "
                  + ("fits" if shared.fits() else f"does not fit at <= {DEFAULT_CAP:.0%}"))
    out = est.as_dict()
    if args.compare:
        print()
        out["compare"] = print_comparison(cfg, est, routing, args.task, args.head_runs, args.seed, args.details)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print(f"wrote {args.json}")
    return 0


def print_comparison(cfg, est, routing, task, head_runs: int, seed: int, details: bool = False) -> dict:
    """``perf --compare``: ours, Edge-MoE measured and modelled, the physical floors and the heads, with ratios.

    Returns the figures printed (for ``--json``).
    """
    from dataclasses import replace

    from edgemoe.perf import heads
    from edgemoe.perf.reference import MEASURED_PRESET, MEASURED_SOURCE, ReferenceDesign, estimate_reference

    board = cfg.hardware.board
    ref = estimate_reference(cfg, board, routing)
    ref_free = estimate_reference(cfg, board, routing, replace(ReferenceDesign(), debug_returns=False))
    ours, meas = est.ms_per_image, ref.measured_ms

    def ratios(ms: float) -> str:
        vs_meas = f"{ms / meas:>9.2f}x" if meas else f"{'-':>10}"
        return f"{ms:>10.2f}{vs_meas}{ms / ours:>9.2f}x"

    print(f"comparison on {board}: {cfg.name}, one image of one task (backbone kernel unless stated); "
          f"routing {ref.routing.source}")
    print(f"  {'':<56}{'ms/image':>10}{'/ EM meas':>10}{'/ ours':>10}")
    rows = [(f"ours: generated kernel, modelled ({est.mode}, batch {est.batch})", ours)]
    if meas:
        rows.append(("Edge-MoE: measured (demo loop, host work included)", meas))
    rows += [("Edge-MoE: modelled kernel, as published", ref.ms_per_image),
             ("Edge-MoE: modelled, without the debug early returns", ref_free.ms_per_image),
             (f"floor: weights {ref.weight_bytes / 1e6:.2f} MB / {ref.ddr_gbps:.1f} GB/s sustained",
              ref.weight_floor_ms),
             (f"floor: {ref.macs / 1e9:.3f} GMAC / ({ref.board.dsp} DSP x {ref.design.clock_mhz:g} MHz)",
              ref.compute_floor_ms)]
    roof = est.roofline   # the floors at this config's own weight widths (ours: w8 matrices halve the bytes)
    own_floor = max(roof.traffic_ms, ref.compute_floor_ms)
    if abs(roof.weight_bytes_per_image - ref.weight_bytes) > 0.01 * ref.weight_bytes:   # narrower weights
        rows.append((f"floor at {cfg.precision.name}: weights {roof.weight_bytes_per_image / 1e6:.2f} MB / "
                     f"{roof.board_gbps:.1f} GB/s", roof.traffic_ms))
    for label, ms in rows:
        print(f"  {label:<56}{ratios(ms)}")
    if meas:
        print(f"  measured: {MEASURED_SOURCE}")
        print(f"  Edge-MoE modelled / measured = {ref.ms_per_image / meas:.2f}: {ref.host_gap_ms:.1f} ms of the "
              f"demo figure is outside the kernel as modelled (host work the repository does not show)")
    else:
        print(f"  Edge-MoE measured: none for this config and board (measured on {MEASURED_PRESET} on zcu102 only)")
    print(f"  ours / Edge-MoE modelled = {ours / ref.ms_per_image:.2f}; Edge-MoE modelled / floor = "
          f"{ref.ms_per_image / max(ref.weight_floor_ms, ref.compute_floor_ms):.1f}x; ours / its own floor = "
          f"{ours / own_floor:.1f}x")

    print("  Edge-MoE modelled, where its time goes:")
    for r in ref.kind_rows():
        print(f"    {r['what']:<54}{r['ms']:>10.2f} ms{r['share']:>7.1%}  binds {r['binds']}")
    if details:
        print("\n".join("    " + line for line in ref.table().splitlines()))
    ex = [s for s in ref.steps if s.name == "experts"]
    if ex:
        print(f"    (MoE experts: {sum(s.detail['active_experts'] for s in ex) / len(ex):.1f} active per block, "
              f"their weight loads {ref.ms(sum(s.detail['load_cycles'] for s in ex)):.2f} ms against "
              f"{ref.ms(sum(s.detail['compute_cycles'] for s in ex)):.2f} ms of compute, ping-ponged)")
    port_bound = sum(v for k, v in ref.by_binding().items() if k.startswith("port")) / ref.total_cycles
    print(f"    port-bound share: {port_bound:.0%} at {ref.port_gbps:.2f} GB/s per {ref.design.port_bits}-bit PS port")

    m = cfg.model
    name = m.task_names[m.task_index(task)]
    macs = heads.task_head_macs(m)
    cpu = heads.ZCU102_A53
    a53 = heads.modelled_ms(macs[name], cpu)
    timing = heads.measure_host_ms(m, name, head_runs, seed) if head_runs else None
    print(f"  end to end, task {name}: kernel + the float head on the host (where the heads run today)")
    print(f"    heads: " + ", ".join(f"{t} {v / 1e9:.3f} GMAC" for t, v in macs.items())
          + f" (conv MACs; {macs[name] / ref.macs:.1f}x the backbone's {ref.macs / 1e9:.3f} GMAC)")
    print(f"    {'head on the ZCU102 A53s, modelled':<54}{a53:>10.2f} ms  ({cpu.name}, "
          f"{cpu.sustained_gmacs:.1f} GMAC/s sustained)")
    print(f"      basis: {cpu.basis}")
    if timing is not None:
        print(f"    {'head on this host, measured':<54}{timing.median_ms:>10.2f} ms  ({timing.describe()})")
    else:
        print(f"    {'head on this host, measured':<54}{'-':>10}     (--head-runs 0: not measured)")
    for label, kernel in (("ours", ours), ("Edge-MoE modelled", ref.ms_per_image)):
        line = (f"    {label + ' + head (A53 modelled)':<54}{kernel + a53:>10.2f} ms  "
                f"kernel {kernel / (kernel + a53):.1%}")
        if timing is not None:
            t = kernel + timing.median_ms
            line += f"; + head (this host) {t:.2f} ms, kernel {kernel / t:.1%}"
        print(line)
    if meas:
        print(f"    the head alone on the A53 is modelled at {a53 / meas:.1f}x the {meas:g} ms demo figure: that "
              f"figure cannot include this head run on the A53")
    return {"ours_ms": ours, "measured_ms": meas, "reference": ref.as_dict(),
            "reference_no_debug_returns_ms": ref_free.ms_per_image,
            "weight_floor_ms": ref.weight_floor_ms, "compute_floor_ms": ref.compute_floor_ms,
            "heads": {"task": name, "macs": macs, "a53_ms": a53, "a53_gmacs": cpu.sustained_gmacs,
                      "host_ms": timing.median_ms if timing else None,
                      "host_runs_ms": list(timing.runs_ms) if timing else None}}


def cmd_explore(args) -> int:
    from edgemoe.perf.cycles import MODES
    from edgemoe.perf.explore import GRID, QUICK_GRID, explore

    cfg = config_from_args(args)
    modes = MODES if args.mode == "both" else (args.mode,)
    grid = dict(QUICK_GRID if args.quick else GRID)
    if args.profiles:
        grid["profile"] = tuple(args.profiles)
    if args.keep_precision:
        grid["profile"] = None
    for name in ("cu_in", "cu_out", "attn_parallel", "axi_width", "weight_lanes", "moe_batch"):
        vals = getattr(args, name)
        if vals:
            grid[name] = tuple(vals)
    t0 = time.perf_counter()
    res = explore(cfg, args.board, args.batch, modes, grid, args.cap, progress=not args.no_progress,
                  port_limit=args.port_limit, measured=_measured())
    print(res.summary(max_rows=args.rows))
    print(f"({time.perf_counter() - t0:.1f} s)")
    if res.chosen is None:
        print("edgemoe explore: no feasible design point; raise --cap or widen the grid", file=sys.stderr)
        return 1
    if args.out:
        path = res.write_yaml(args.out)
        print(f"wrote {path}: edgemoe generate --config {path} --out <dir>")
    return 0


def read_eval_figures(path: str) -> dict:
    """The figures ``edgemoe eval --json`` wrote, checked for the shape the report reads."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("--eval", path, "no such file (write it with edgemoe eval --json FILE)") from None
    except (UnicodeDecodeError, json.JSONDecodeError, IsADirectoryError) as e:
        raise ConfigError("--eval", path, f"not the JSON edgemoe eval --json writes ({e})") from None
    keys = ("scenes", "miou", "pixel_acc", "abs_rel", "rmse_m", "delta1", "iou")

    def per_class(r: dict, key: str, n: int) -> bool:
        return isinstance(r[key], list) and len(r[key]) == n

    ok = (isinstance(data, dict) and isinstance(data.get("rows"), dict) and isinstance(data.get("classes"), list)
          and all(isinstance(r, dict) and all(k in r for k in keys) and per_class(r, "iou", len(data["classes"]))
                  and ("abs_rel_by_class" not in r or per_class(r, "abs_rel_by_class", len(data["classes"])))
                  for r in data["rows"].values()))
    if not ok:
        raise ConfigError("--eval", path, "not the JSON edgemoe eval --json writes (rows of task metrics per model)")
    return data


def cmd_report(args) -> int:
    from edgemoe.perf.report import write_report

    cfg = config_from_args(args)
    t0 = time.perf_counter()
    tasks = None if args.task == "all" else [cfg.model.task_names[cfg.model.task_index(args.task)]]
    metrics = None if args.eval is None else (read_eval_figures(args.eval), args.eval)
    out = write_report(cfg, args.out, mode=args.mode, batch=args.batch, images=args.images, seed=args.seed,
                       tasks=tasks, cap=args.cap, task_metrics=metrics, measured=_measured())
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB) in {time.perf_counter() - t0:.1f} s")
    return 0


def add_commands(subparsers) -> None:
    """Register ``perf``, ``explore`` and ``report`` on an argparse subparsers object."""
    from edgemoe.boards import BOARDS

    from edgemoe.perf.cycles import MODES
    from edgemoe.perf.resources import DEFAULT_CAP

    p = subparsers.add_parser("perf", help="cycle model of the generated kernel: per-step table, totals, roofline")
    add_config_args(p)
    p.add_argument("--mode", choices=MODES, default="onchip",
                   help="onchip: the generated kernel; edgemoe-dram: Edge-MoE's every-intermediate-through-DRAM dataflow")
    p.add_argument("--batch", type=cli_args.batch, default=1,
                   help="images per kernel call (on chip: experts shared by groups of hardware.moe_batch; "
                        "edgemoe-dram: every weight shared by the batch)")
    p.add_argument("--routing", default="uniform", help="uniform | skewed[:ALPHA] | golden (gating of synthetic images)")
    p.add_argument("--task", type=cli_args.task, default="0", help="task for --routing golden (name or index)")
    p.add_argument("--images", type=cli_args.images, default=2, help="synthetic images for --routing golden")
    p.add_argument("--seed", type=cli_args.seed, default=0)
    p.add_argument("--as-written", action="store_true",
                   help="also group the kernel's loops by the constraint that binds their II")
    p.add_argument("--loops", action="store_true",
                   help="per-loop table of the kernel as written: trips, achievable II, binding constraint, cycles")
    p.add_argument("--resources", action="store_true", help="also print the resource estimate")
    p.add_argument("--details", action="store_true", help="with --resources: per-array / per-multiplier details; "
                   "with --compare: Edge-MoE's per-step table")
    p.add_argument("--port-limit", action="store_true",
                   help="cap each AXI bundle at its physical port bandwidth (always on for Zynq boards)")
    p.add_argument("--compare", action="store_true",
                   help="also compare with Edge-MoE (measured and modelled), the physical floors and the task heads")
    p.add_argument("--head-runs", type=cli_args.count(0, 100), default=3,
                   help="with --compare: timed runs of the float head on this host (0: do not measure)")
    p.add_argument("--json", type=cli_args.output_file, help="write the estimate as JSON")
    p.set_defaults(func=cmd_perf)

    p = subparsers.add_parser("explore", help="design-space exploration under a board's resources; writes the choice")
    add_config_args(p)
    p.add_argument("--board", choices=list(BOARDS), default=None, help="target board (default: the config's)")
    p.add_argument("--batch", type=cli_args.batch, nargs="+", default=[1], help="batch sizes to explore (default: 1)")
    p.add_argument("--mode", choices=MODES + ("both",), default="onchip")
    p.add_argument("--cap", type=cli_args.fraction, default=DEFAULT_CAP, help="utilisation cap (default: %(default)s)")
    p.add_argument("--profiles", nargs="+", help="precision profiles to explore (default: w16a32 w16a16 w8a16)")
    p.add_argument("--keep-precision", action="store_true", help="do not explore precision: keep the config's")
    p.add_argument("--cu-in", type=int, nargs="+", dest="cu_in")
    p.add_argument("--cu-out", type=int, nargs="+", dest="cu_out")
    p.add_argument("--attn-parallel", type=int, nargs="+", dest="attn_parallel")
    p.add_argument("--axi-width", type=int, nargs="+", dest="axi_width")
    p.add_argument("--weight-lanes", type=int, nargs="+", dest="weight_lanes",
                   help="m_axi pointers to stripe the weights over (default: 1 2 4 8, those the board's ports allow)")
    p.add_argument("--moe-batch", type=int, nargs="+", dest="moe_batch",
                   help="images whose experts share a weight stream (hardware.moe_batch; default: 1 2 4 8, each "
                        "tried at the batches of at least that many)")
    p.add_argument("--quick", action="store_true", help="a small grid")
    p.add_argument("--port-limit", action="store_true", help="cap each AXI bundle at its physical port bandwidth")
    p.add_argument("--rows", type=cli_args.count(1, 10_000), default=20, help="rows per Pareto front (sampled)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", type=cli_args.output_file, help="write the chosen hardware + precision as a YAML config")
    p.set_defaults(func=cmd_explore)

    p = subparsers.add_parser("report", help="HTML (or markdown + PNG) report: latency, roofline, resources, routing, accuracy")
    add_config_args(p)
    p.add_argument("--out", required=True, type=cli_args.output_file,
                   help="report.html (self-contained) or report.md (+ PNGs beside it)")
    p.add_argument("--mode", choices=MODES, default="onchip")
    p.add_argument("--batch", type=cli_args.batch, default=8, help="batched comparison point (default: %(default)s)")
    p.add_argument("--images", type=cli_args.images, default=1, help="synthetic images for routing and accuracy")
    p.add_argument("--task", type=cli_args.task, default="all", help="task name/index or 'all'")
    p.add_argument("--seed", type=cli_args.seed, default=0)
    p.add_argument("--cap", type=cli_args.fraction, default=DEFAULT_CAP)
    p.add_argument("--eval", help="task metrics from `edgemoe eval --json FILE`, shown as a section")
    p.set_defaults(func=cmd_report)
