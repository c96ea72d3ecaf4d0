"""The ``sim`` command group: the RTL units' cocotb testbenches (``units``), their yosys
resource table (``resources``), Verilog lint (``lint``) and the kernel RTL harness (``kernel``).

Exit status: 0 when everything passed (lint: clean), 1 when a testbench or a
check failed (lint: warnings), 2 for bad input.
"""
from __future__ import annotations

import sys
from pathlib import Path

from edgemoe.sim.runner import SIMULATORS      # light: no torch, Amaranth or cocotb at import


# --- units: the cocotb testbenches -------------------------------------------------------------------

def cmd_sim_units(args) -> int:
    from edgemoe.config import ConfigError
    from edgemoe.loading import load_config
    from edgemoe.sim.runner import SimulationFailed, run_unit
    from edgemoe.sim.units.registry import all_units

    cfg = load_config(args.config, args.set)
    units = args.units or all_units()
    for unit in units:
        if unit not in all_units():
            raise ConfigError("unit", unit, f"must be one of {', '.join(all_units())}")
    status = 0
    for unit in units:
        try:
            r = run_unit(unit, cfg, args.sim, seed=args.seed, vectors=args.vectors, exhaustive=args.exhaustive)
        except SimulationFailed as e:
            print(f"FAIL {unit}: {e}")
            status = 1
            continue
        p = r.perf
        print(f"PASS {unit} on {args.sim}: {len(r.tests)} tests, latency {p.get('latency')} "
              f"II {p.get('ii')}, {r.seconds:.1f} s (build {r.build_seconds:.1f} s)")
    return status


# --- resources: the yosys table ----------------------------------------------------------------------

def cmd_sim_resources(args) -> int:
    from edgemoe.loading import load_config
    from edgemoe.sim.resources import resource_table, write_tables
    from edgemoe.sim.units.registry import all_units

    configs = []
    for name in args.config or ["m3vit-tiny-cityscapes"]:
        profiles = [p for p in args.profiles.split(",") if p] or [None]
        for prof in profiles:
            ov = list(args.set) + ([f"precision.profile={prof}"] if prof else [])
            configs.append(load_config(name, ov))
    units = [u for u in (args.units or ",".join(all_units())).split(",") if u]
    from edgemoe.perf.measured import SimResults
    from edgemoe.perf.resources import model_comparison
    from edgemoe.sim import formats, results

    rows = resource_table(units, configs, args.family, args.jobs)
    text = write_tables(rows, configs, args.family)
    measured = SimResults.read(results, layernorm_plan=formats.layernorm_plan)  # after the tables are written
    text += "".join(model_comparison(cfg, measured) for cfg in configs)
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text)
    return 0


# --- lint --------------------------------------------------------------------------------------------

def cmd_sim_lint(args) -> int:
    from edgemoe.sim.lint import lint

    bad = 0
    for f in args.files:
        w = lint(f, waivers=not args.no_waivers)
        print(f"{f}: {'clean' if not w else f'{len(w)} warning(s)'}")
        for line in w:
            print("  " + line)
        bad += bool(w)
    return 1 if bad else 0


# --- kernel: the kernel RTL harness ------------------------------------------------------------------

def cmd_sim_kernel(args) -> int:
    from edgemoe.sim.kernel.harness import check_project_config, config_source, run_kernel_rtl
    from edgemoe.sim.kernel.rtl import find_exported_rtl
    from edgemoe.sim.runner import SimulationFailed

    if args.project is not None:
        rtl = find_exported_rtl(args.project)        # NoExportedRTL: one line, exit status 2
        print(f"exported RTL: {rtl.describe()}")
    from edgemoe.loading import load_config         # torch: after the cheap check above

    cfg = load_config(config_source(args.config, args.project), args.set)
    if args.project is not None:
        check_project_config(cfg, args.project)
    else:
        rtl = "standin"
        print(f"{'--standin' if args.standin else 'no --project'}: running the stand-in top of {cfg.name} (the "
              f"control registers and AXI behaviour of the kernel; it computes only the pixels tap), "
              f"not Vitis-exported RTL")
    tap = "auto" if args.tap is None else args.tap
    try:
        r = run_kernel_rtl(cfg, rtl, tap=tap, task=args.task or [0], images=args.images, simulator=args.sim,
                           seed=args.seed, weights_seed=args.weights_seed, backpressure=args.backpressure,
                           misalign=args.misalign, max_cycles=args.max_cycles)
    except SimulationFailed as e:
        print(f"FAIL: {e}")
        return 1
    print(("PASS " if r.passed else "FAIL ") + r.summary())
    print(f"{r.seconds:.1f} s (build {r.build_seconds:.1f} s); log {r.log}")
    return 0 if r.passed else 1


# --- the parsers -------------------------------------------------------------------------------------

def _config_set(p, default: str | None = "m3vit-micro", help: str | None = None) -> None:
    p.add_argument("--config", default=default, help=help or "preset or YAML (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. precision.profile=w16a16 (repeatable)")


def add_commands(sub) -> None:
    sim = sub.add_parser("sim", help="RTL units: cocotb testbenches, yosys resource table, Verilog lint, kernel RTL",
                         description="the RTL units: cocotb testbenches, yosys resource table, Verilog lint, kernel RTL")
    ssub = sim.add_subparsers(dest="sim_command", required=True)

    p = ssub.add_parser("units", help="run the cocotb testbench of RTL units on Icarus or Verilator")
    p.add_argument("units", nargs="*", default=None, help="unit names (default: every unit of the registry)")
    _config_set(p)
    p.add_argument("--sim", default="icarus", choices=SIMULATORS)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--vectors", type=int, default=None,
                   help="random vectors (default per unit: 1000 words for a stream unit, 200 rows / images "
                        "for a multi-field unit, 40 for layernorm and compute_tile)")
    p.add_argument("--exhaustive", action="store_true", help="every input word (small input types)")
    p.set_defaults(func=cmd_sim_units)

    p = ssub.add_parser("resources", help="yosys resource table of the RTL units")
    p.add_argument("--config", action="append", default=None,
                   help="preset or YAML (repeatable; default m3vit-tiny-cityscapes)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override applied to every config (e.g. precision.profile=w16a16)")
    p.add_argument("--profiles", default="", help="comma-separated precision profiles: one table row set each")
    p.add_argument("--units", default=None, help="comma-separated units (default all)")
    p.add_argument("--family", default="xcup")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, help="also write the markdown here")
    p.set_defaults(func=cmd_sim_resources)

    p = ssub.add_parser("lint", help="verilator --lint-only -Wall on generated Verilog")
    p.add_argument("files", nargs="+")
    p.add_argument("--no-waivers", action="store_true")
    p.set_defaults(func=cmd_sim_lint)

    p = ssub.add_parser("kernel", help="the kernel RTL exported by Vitis HLS (`make hls`), or the stand-in top, "
                                       "on golden inputs, output words compared bit for bit",
                        description="run the kernel RTL exported by Vitis HLS (`make hls`), or the stand-in top, "
                                    "on golden inputs and compare its output words bit for bit")
    _config_set(p, default=None, help="preset or YAML (default: the --project's config.yaml, else m3vit-micro)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--project", type=Path, help="generated project dir holding the RTL `make hls` exported")
    src.add_argument("--standin", action="store_true", help="the stand-in top (the default without --project)")
    p.add_argument("--tap", default=None,
                   help="tap name or id, or 'none' for the whole network (default: none on exported RTL, "
                        "pixels on the stand-in)")
    p.add_argument("--task", action="append", default=None,
                   help="task name or index; repeat for several calls (default: the first task)")
    p.add_argument("--images", type=int, default=1)
    p.add_argument("--sim", default="icarus", choices=SIMULATORS)
    p.add_argument("--seed", type=int, default=0, help="synthetic images")
    p.add_argument("--weights-seed", type=int, default=0, help="synthetic weights")
    p.add_argument("--backpressure", action="store_true", help="random pauses on every AXI channel")
    p.add_argument("--misalign", action="store_true", help="buffers off the bus beat")
    p.add_argument("--max-cycles", type=int, default=None, help="per call, before the run fails")
    p.set_defaults(func=cmd_sim_kernel)
