"""The ``edgemoe`` command line.

Every command takes ``--config`` (a preset name or a YAML file) and any
number of ``--set`` overrides.  Errors in what the user typed end in one line
naming the field (exit status 2), never in a traceback.

Layout: one module per command group, each with ``add_commands(subparsers)``
that adds its commands to the main parser's subparsers and sets
``func=cmd_...`` on each (``cmd_...(args) -> int``, the exit status).
:data:`COMMAND_MODULES` lists them in the order of ``edgemoe --help``.
Shared option helpers (``add_config_args``, ``config``, weights loading)
live in :mod:`edgemoe.cli.common`, the checked argparse types in
:mod:`edgemoe.cli.args`.  Commands raise; :func:`main` alone turns
exceptions into one-line errors and exit statuses.  Library packages never
import ``edgemoe.cli``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from edgemoe.cli import args as cli_args
from edgemoe.config import Config, ConfigError, HardwareConfig, ModelConfig, PrecisionProfile, load_config


def _add_config_args(p: argparse.ArgumentParser) -> None:
    from edgemoe.presets import PRESETS

    p.add_argument("--config", default="m3vit-tiny-cityscapes",
                   help=f"preset ({', '.join(PRESETS)}) or YAML file (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. model.depth=4 or precision.profile=w16a16 (repeatable)")


def _config(args) -> Config:
    return load_config(args.config, args.set)


# --- config -----------------------------------------------------------------------

def field_docs() -> str:
    """Every config field with its type, default and description (generated from the dataclasses)."""
    from edgemoe.presets import DEFAULT_PROFILE, PROFILE_SWITCH_DOC

    lines = []
    for section, cls in (("model", ModelConfig), ("precision", PrecisionProfile), ("hardware", HardwareConfig)):
        lines.append(f"[{section}]")
        if section == "precision":
            lines.append(f"  {'profile':<18} {'str':<18} {DEFAULT_PROFILE:<24} {PROFILE_SWITCH_DOC}")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else ""
            if isinstance(default, tuple) and default and dataclasses.is_dataclass(default[0]):
                default = [dataclasses.asdict(x) for x in default]
            lines.append(f"  {f.name:<18} {getattr(f.type, '__name__', str(f.type)):<18} "
                         f"{str(default):<24} {f.metadata.get('doc', '')}")
    return "\n".join(lines)


def cmd_config(args) -> int:
    if args.fields:
        print(field_docs())
        return 0
    cfg = _config(args)
    print(cfg.to_yaml(), end="")
    print(f"# digest: {cfg.digest()}")
    return 0


# --- numerics ------------------------------------------------------------------------

def cmd_numerics(args) -> int:
    from edgemoe.golden.numerics.accuracy import format_table, measure_errors

    cfg = _config(args)
    print(f"approximation error of profile {cfg.precision.name} (fixed-point unit vs float64 math)")
    print(format_table(measure_errors(cfg.precision, n=args.samples, seed=args.seed)))
    return 0


# --- golden -----------------------------------------------------------------------

def load_state_dict(cfg: Config, weights: str | None, timm_weights: str | None, seed: int):
    """The float state dict the user asked for, plus notices to print."""
    from edgemoe.golden import checkpoint
    from edgemoe.golden.synthetic import synthetic_state_dict

    if weights and timm_weights:
        raise ConfigError("--weights", weights, "give either --weights or --timm-weights, not both")
    if weights:
        loaded = checkpoint.load_m3vit_checkpoint(weights, cfg.model)
        return loaded.state_dict, [f"weights: M3ViT checkpoint {weights}"] + loaded.notices
    if timm_weights:
        loaded = checkpoint.load_timm_vit(timm_weights, cfg.model)
        return loaded.state_dict, [f"weights: timm ViT {timm_weights}"] + loaded.notices
    return synthetic_state_dict(cfg.model, seed=seed), [f"weights: synthetic (seed {seed})"]


def cmd_golden(args) -> int:
    import torch

    from edgemoe.golden.fixed_model import FixedM3ViT
    from edgemoe.golden.float_model import M3ViT
    from edgemoe.golden.report import format_report, compare
    from edgemoe.golden.synthetic import synthetic_images
    from edgemoe.images import load_images

    cfg = _config(args)
    m = cfg.model
    tasks = list(m.task_names) if args.task == "all" else [m.task_names[m.task_index(args.task)]]
    state_dict, notices = load_state_dict(cfg, args.weights, args.timm_weights, args.seed)
    torch.set_grad_enabled(False)
    print(f"config {cfg.name}: {m.img_height}x{m.img_width}, dim {m.embed_dim}, depth {m.depth}, "
          f"{m.num_experts} experts top-{m.top_k}; precision {cfg.precision.name}; digest {cfg.digest()[:12]}")
    for n in notices:
        print(f"  {n}")
    if args.image:
        images = load_images(args.image, m.img_height, m.img_width, cfg.precision.pixel.bits,
                             log=lambda s: print(f"  {s}"))
        source = f"{len(args.image)} image file(s)"
    else:
        images = synthetic_images(m, args.images, seed=args.seed)
        source = f"{args.images} synthetic image(s) (seed {args.seed})"
    print(f"  input: {source}")
    fixed = FixedM3ViT(cfg, state_dict)
    float_model = M3ViT.from_state_dict(m, state_dict)
    for task in tasks:
        t0 = time.perf_counter()
        report = compare(fixed, float_model, images, task)
        print()
        print(format_report(report))
        print(f"  ({time.perf_counter() - t0:.1f} s for both models)")
    return 0


# --- generate ----------------------------------------------------------------------

def cmd_generate(args) -> int:
    from edgemoe.hls.lint import check_project
    from edgemoe.hls.project import HLSProject

    cfg = _config(args)
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


# --- entry point ----------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.OneLineParser(prog="edgemoe", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="print the resolved config as YAML (or every field's documentation)")
    _add_config_args(p)
    p.add_argument("--fields", action="store_true", help="list every config field with its documentation")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("numerics", help="measure the error of exp, reciprocal, rsqrt, GELU, softmax, LayerNorm")
    _add_config_args(p)
    p.add_argument("--samples", type=cli_args.count(1, cli_args.MAX_SAMPLES), default=200_000,
                   help=f"random inputs per operation, 1..{cli_args.MAX_SAMPLES} (default: %(default)s)")
    p.add_argument("--seed", type=cli_args.seed, default=0)
    p.set_defaults(func=cmd_numerics)

    p = sub.add_parser("golden", help="bit-accurate model vs float model: per-tap error table")
    _add_config_args(p)
    p.add_argument("--task", type=cli_args.task, default="all", help="task name, index or 'all' (default: all)")
    p.add_argument("--weights", help="M3ViT checkpoint: a .pth file or a directory of rank shards")
    p.add_argument("--timm-weights", help="a plain timm ViT state dict (.pth) for the dense parts")
    p.add_argument("--seed", type=cli_args.seed, default=0, help="seed of synthetic weights and images")
    p.add_argument("--images", type=cli_args.images, default=2,
                   help=f"number of synthetic images, 1..{cli_args.MAX_IMAGES} (default: 2)")
    p.add_argument("--image", nargs="+", help="image files instead of synthetic images")
    p.set_defaults(func=cmd_golden)

    p = sub.add_parser("generate", help="write the Vitis HLS project (kernel, testbench, tcl, board flow, register map)")
    _add_config_args(p)
    p.add_argument("--out", required=True, help="output directory (new or existing; checked by the project writer)")
    p.add_argument("--weights", help="M3ViT checkpoint for the testbench data (default: synthetic)")
    p.add_argument("--timm-weights", help="a plain timm ViT state dict for the dense parts")
    p.add_argument("--seed", type=cli_args.seed, default=0, help="seed of synthetic weights")
    p.add_argument("--compile", action="store_true", help="also compile the C simulation library with g++")
    p.set_defaults(func=cmd_generate)

    from edgemoe.golden.train_cli import add_commands as add_train_commands
    from edgemoe.hls.perf_cli import add_commands as add_perf_commands
    from edgemoe.host.cli import add_commands as add_host_commands
    add_perf_commands(sub, _add_config_args)
    add_host_commands(sub, _add_config_args)
    add_train_commands(sub, _add_config_args)
    return parser


def user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that mean bad input (a config, a file, an option), not a bug: one line, exit status 2."""
    from edgemoe.golden.checkpoint import CheckpointError
    from edgemoe.golden.dataset import DatasetError
    from edgemoe.golden.pretrained import ShippedCheckpointError
    from edgemoe.golden.train import TrainingError
    from edgemoe.golden.numerics.fixed import FixedTypeError
    from edgemoe.hls.csim import ToolError
    from edgemoe.host.errors import HostError
    from edgemoe.images import ImageError

    return (ConfigError, FixedTypeError, ImageError, ToolError, HostError, CheckpointError, DatasetError, TrainingError,
            ShippedCheckpointError)


def describe_os_error(e: OSError) -> str:
    """A file-system error in one line: the path and the reason."""
    if e.filename is None:
        return e.strerror or str(e)
    return f"{e.filename}: {e.strerror or e}"


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status: 0 done, 1 a check failed, 2 bad input (one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed in one line
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except user_error_types() as e:
        print(f"edgemoe {args.command}: error: {e}", file=sys.stderr)
    except OSError as e:  # a path the user named that cannot be read or written
        print(f"edgemoe {args.command}: error: {describe_os_error(e)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
