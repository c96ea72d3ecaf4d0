"""The ``generate`` command: the Vitis HLS project of a config, checked for synthesizability."""
from __future__ import annotations

import time

from edgemoe.cli import args as cli_args
from edgemoe.cli.common import add_config_args, config_from_args, load_state_dict


def cmd_generate(args) -> int:
    from edgemoe.hls.lint import check_project
    from edgemoe.hls.project import HLSProject

    cfg = config_from_args(args)
    state_dict, notices = load_state_dict(cfg, args.weights, args.timm_weights, args.seed)
    t0 = time.perf_counter()
    proj = HLSProject(cfg, state_dict)
    out = proj.write(args.out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    print(f"wrote {len(files)} files for config {cfg.name} (digest {cfg.digest()[:12]}) to {out} "
          f"in {time.perf_counter() - t0:.1f} s")
    for n in notices:
        print(f"  {n}")
    for f in files:
        print(f"  {f}")
    violations = check_project(out)
    print(f"synthesizability check: {len(violations)} violation(s)")
    for v in violations:
        print(f"  {v}")
    if args.compile:
        res = proj.compile()
        if res.notice:
            print(res.notice)
        print(f"g++ C simulation library: {res.library} ({'cached' if res.cached else f'{res.seconds:.1f} s'}; "
              f"{len(res.warnings)} warning(s) in generated code, {res.vendor_warnings} inside ap_types headers)")
        for w in res.warnings:
            print(f"  {w}")
    return 1 if violations else 0


def add_commands(sub) -> None:
    p = sub.add_parser("generate", help="write the Vitis HLS project (kernel, testbench, tcl, board flow, register map)")
    add_config_args(p)
    p.add_argument("--out", required=True, help="output directory (new or existing; checked by the project writer)")
    p.add_argument("--weights", help="M3ViT checkpoint for the testbench data (default: synthetic)")
    p.add_argument("--timm-weights", help="a plain timm ViT state dict for the dense parts")
    p.add_argument("--seed", type=cli_args.seed, default=0, help="seed of synthetic weights")
    p.add_argument("--compile", action="store_true", help="also compile the C simulation library with g++")
    p.set_defaults(func=cmd_generate)
