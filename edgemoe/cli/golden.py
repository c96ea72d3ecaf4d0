"""The ``config``, ``numerics`` and ``golden`` commands: the config, the fixed-point units, the golden model."""
from __future__ import annotations

import dataclasses
import time

from edgemoe.cli import args as cli_args
from edgemoe.cli.common import add_config_args, config_from_args, load_state_dict, print_header
from edgemoe.config import HardwareConfig, ModelConfig, PrecisionProfile


# --- config -----------------------------------------------------------------------

def field_docs() -> str:
    """Every config field with its type, default and description (generated from the dataclasses)."""
    from edgemoe.config import DEFAULT_PROFILE, PROFILE_SWITCH_DOC

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
    cfg = config_from_args(args)
    print(cfg.to_yaml(), end="")
    print(f"# digest: {cfg.digest()}")
    return 0


# --- numerics ------------------------------------------------------------------------

def cmd_numerics(args) -> int:
    from edgemoe.golden.numerics.accuracy import format_table, measure_errors

    cfg = config_from_args(args)
    print(f"approximation error of profile {cfg.precision.name} (fixed-point unit vs float64 math)")
    print(format_table(measure_errors(cfg.precision, n=args.samples, seed=args.seed)))
    return 0


# --- golden -----------------------------------------------------------------------

def cmd_golden(args) -> int:
    import torch

    from edgemoe.golden.fixed_model import FixedM3ViT
    from edgemoe.golden.float_model import M3ViT
    from edgemoe.golden.report import format_report, compare
    from edgemoe.golden.synthetic import synthetic_images
    from edgemoe.images import load_images

    cfg = config_from_args(args)
    m = cfg.model
    tasks = list(m.task_names) if args.task == "all" else [m.task_names[m.task_index(args.task)]]
    state_dict, notices = load_state_dict(cfg, args.weights, args.timm_weights, args.seed)
    torch.set_grad_enabled(False)
    print_header(cfg)
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


def add_commands(sub) -> None:
    p = sub.add_parser("config", help="print the resolved config as YAML (or every field's documentation)")
    add_config_args(p)
    p.add_argument("--fields", action="store_true", help="list every config field with its documentation")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("numerics", help="measure the error of exp, reciprocal, rsqrt, GELU, softmax, LayerNorm")
    add_config_args(p)
    p.add_argument("--samples", type=cli_args.count(1, cli_args.MAX_SAMPLES), default=200_000,
                   help=f"random inputs per operation, 1..{cli_args.MAX_SAMPLES} (default: %(default)s)")
    p.add_argument("--seed", type=cli_args.seed, default=0)
    p.set_defaults(func=cmd_numerics)

    p = sub.add_parser("golden", help="bit-accurate model vs float model: per-tap error table")
    add_config_args(p)
    p.add_argument("--task", type=cli_args.task, default="all", help="task name, index or 'all' (default: all)")
    p.add_argument("--weights", help="M3ViT checkpoint: a .pth file or a directory of rank shards")
    p.add_argument("--timm-weights", help="a plain timm ViT state dict (.pth) for the dense parts")
    p.add_argument("--seed", type=cli_args.seed, default=0, help="seed of synthetic weights and images")
    p.add_argument("--images", type=cli_args.images, default=2,
                   help=f"number of synthetic images, 1..{cli_args.MAX_IMAGES} (default: 2)")
    p.add_argument("--image", nargs="+", help="image files instead of synthetic images")
    p.set_defaults(func=cmd_golden)
