"""The ``data``, ``train``, ``adjust``, ``eval`` and ``calibrate`` commands: scene datasets, training, logit
adjustment, task metrics, calibration."""
from __future__ import annotations

import sys
from pathlib import Path

from edgemoe.cli import args as cli_args
from edgemoe.cli.common import add_config_args, config_from_args, load_state_dict


def _state_dict(cfg, weights: str | None, seed: int = 0):
    """The float state dict of ``--weights`` (synthetic without it), its notices printed."""
    sd, notices = load_state_dict(cfg, weights, None, seed)
    for n in notices:
        print(f"  {n}")
    return sd


# --- data ---------------------------------------------------------------------------------

def cmd_data_scenes(args) -> int:
    from edgemoe.golden.dataset import write_dataset

    cfg = config_from_args(args)
    m = cfg.model
    counts = {"train": args.n, "val": args.val if args.val is not None else max(8, args.n // 20),
              "test": args.test if args.test is not None else max(8, args.n // 8)}
    print(f"rendering {counts['train']} train, {counts['val']} val and {counts['test']} test scenes of "
          f"{m.img_height}x{m.img_width} (seed {args.seed}) into {args.out}")
    recipe = write_dataset(args.out, counts, seed=args.seed, height=m.img_height, width=m.img_width)
    print(f"wrote {recipe} and {Path(args.out) / 'contact_sheet.png'}")
    return 0


# --- train --------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from edgemoe.golden.train import TrainSettings, train

    cfg = config_from_args(args)
    settings = TrainSettings(steps=args.steps, batch=args.batch, lr=args.lr, warmup_steps=args.warmup,
                             seed=args.seed, val_scenes=args.val_scenes, class_balance=args.class_balance,
                             head_crop=args.head_crop, depth_weight=args.depth_weight)
    result = train(cfg, args.data, args.out, settings, command=_command_line(),
                   budget_s=None if args.budget_min is None else args.budget_min * 60, init=args.init,
                   threads=args.threads)
    if result is None:
        return 0
    v = result["val"]
    print(f"wrote {args.out} ({result['steps']} steps, {result['wall_s'] / 60:.1f} min); "
          + (f"validation: mIoU {100 * v['miou']:.1f}%, AbsRel {v['abs_rel']:.3f}" if v else "no validation split"))
    if settings.class_balance > 0 and v:
        print(f"class-balanced training over-predicts the rare classes: `edgemoe adjust --config {cfg.name} --weights "
              f"{args.out} --data {args.data} --out ADJUSTED.pth` re-tunes the head's output biases on the validation split")
    return 0


# --- adjust -------------------------------------------------------------------------------

def _command_line() -> str:
    """The command line for a recipe: run as `edgemoe ...` or `python -m edgemoe ...` (else empty)."""
    return "edgemoe " + " ".join(sys.argv[1:]) \
        if sys.argv and Path(sys.argv[0]).name in ("edgemoe", "__main__.py") else ""


def cmd_adjust(args) -> int:
    import json

    import torch

    from edgemoe.files import atomic_output, atomic_write_text
    from edgemoe.golden.checkpoint import load_m3vit_checkpoint
    from edgemoe.golden.dataset import load_split, read_recipe, sha256_file
    from edgemoe.golden.logit_adjust import AdjustError, adjust_state_dict, storage_dtype
    from edgemoe.golden.pretrained import checkpoint_recipe
    from edgemoe.golden.scenes import CLASSES

    cfg = config_from_args(args)
    if not args.weights:
        raise AdjustError("--weights: required; give the trained M3ViT checkpoint to adjust")
    if args.split == "test":
        raise AdjustError("--split test: the offsets must be tuned on scenes the evaluation does not use; "
                          "allowed: val (the default) or train")
    src, out = Path(args.weights), Path(args.out)
    if out.resolve() == src.resolve():
        raise AdjustError(f"--out {args.out}: the same file as --weights; write the adjusted checkpoint beside it")
    recipe = checkpoint_recipe(src) or {}          # the training recipe, checked against the file's SHA-256
    sd = load_m3vit_checkpoint(src, cfg.model).state_dict
    split = load_split(args.data, args.split, limit=args.scenes)
    dtype = storage_dtype(sd)
    with torch.no_grad():
        adjusted, adj = adjust_state_dict(cfg.model, sd, split, dtype=dtype)
    names = CLASSES if len(CLASSES) == len(adj.offsets) else [str(c) for c in range(len(adj.offsets))]
    print(f"{adj.task} logit offsets tuned on {adj.scenes} {args.split} scene(s): "
          + ", ".join(f"{n} {o:+.3f}" for n, o in zip(names, adj.offsets)))
    print(f"{args.split} mIoU {100 * adj.miou_before:.2f}% -> {100 * adj.miou_after:.2f}%; IoU per class: "
          + ", ".join(f"{n} {100 * a:.1f} -> {100 * b:.1f}" for n, a, b in zip(names, adj.iou_before, adj.iou_after)))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        torch.save({k: (v.to(dtype) if v.is_floating_point() else v) for k, v in adjusted.items()}, tmp)
    data = read_recipe(args.data)
    step = {**adj.as_dict(), "command": _command_line(),
            "source": {"checkpoint": str(src), "sha256": sha256_file(src)},
            "data": {"dir": str(args.data), "split": args.split, "seed": data.get("seed"),
                     "generator_version": data.get("generator_version")}}
    if "logit_adjustment" in recipe:
        step["previous"] = recipe["logit_adjustment"]
    result = {**recipe, "checkpoint": out.name, "sha256": sha256_file(out), "logit_adjustment": step}
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} ({str(dtype).replace('torch.', '')}) and its recipe {out.name}.json")
    return 0


# --- eval ---------------------------------------------------------------------------------

def _device_predictor(cfg, args, state_dict, tokens_out: dict):
    """The host runtime on the chosen device as a predictor; raw tokens go to ``tokens_out``."""
    import numpy as np

    from edgemoe.host.runtime import Accelerator

    acc = Accelerator(cfg, weights=state_dict, device=args.device, weights_source=args.weights or "synthetic",
                      log=lambda s: print(f"  {s}"))

    def predict(images):
        res = acc.infer(images, "all", progress=False)
        for t, tok in res.tokens.items():
            tokens_out.setdefault(t, []).append(np.asarray(tok))
        return res.outputs
    return predict


def _without_grad(command):
    """Run a command under torch.no_grad() (the global grad mode is left as it was)."""
    import functools

    @functools.wraps(command)
    def run(args) -> int:
        import torch

        with torch.no_grad():
            return command(args)
    return run


@_without_grad
def cmd_eval(args) -> int:
    import dataclasses

    import numpy as np

    from edgemoe.golden.dataset import load_split
    from edgemoe.golden.evaluate import evaluate, fixed_predictor, float_predictor, format_table
    from edgemoe.golden.scenes import CLASSES

    cfg = config_from_args(args)
    sd = _state_dict(cfg, args.weights)
    test = load_split(args.data, args.split)
    floating = float_predictor(cfg, sd)
    rows = {"float": evaluate(cfg.model, floating, test, args.scenes, desc="float")}
    n_fixed = min(args.fixed_scenes, len(test))
    if n_fixed < rows["float"]["scenes"]:  # the same scenes as the fixed-point rows, to compare like with like
        rows[f"float (first {n_fixed})"] = evaluate(cfg.model, floating, test, n_fixed, desc="float")
    profiles = [p for p in args.profiles.split(",") if p] if args.profiles else [cfg.precision.name]
    golden_tokens: dict[str, list] = {}
    for name in profiles:
        pcfg = _profile_config(cfg, args, name)
        keep = golden_tokens if pcfg.precision == cfg.precision and not golden_tokens else None
        rows[f"fixed {pcfg.precision.name}"] = evaluate(cfg.model, fixed_predictor(pcfg, sd, keep), test,
                                                        args.fixed_scenes, desc=f"fixed {pcfg.precision.name}")
    equal = None
    if args.device != "none":
        device_tokens: dict[str, list] = {}
        n = min(args.device_scenes, len(test))
        rows[f"device ({args.device})"] = evaluate(cfg.model, _device_predictor(cfg, args, sd, device_tokens), test,
                                                   n, desc="device")
        if not golden_tokens:
            evaluate(cfg.model, fixed_predictor(cfg, sd, golden_tokens), test, n, desc=f"fixed {cfg.precision.name}")
        equal = all(np.array_equal(np.concatenate(device_tokens[t])[:n], np.concatenate(golden_tokens[t])[:n])
                    for t in device_tokens)
    print(format_table(rows, CLASSES))
    if equal is not None:
        print(f"device tokens == golden fixed-point tokens ({cfg.precision.name}) on {n} scene(s), both tasks: "
              f"{'yes, bit for bit' if equal else 'NO'}")
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({"rows": rows, "device_equal": equal,
                                               "classes": list(CLASSES),
                                               "config": dataclasses.asdict(cfg.model) | {"name": cfg.name}},
                                              indent=1, default=str) + "\n")
    return 0 if equal in (None, True) else 1


def _profile_config(cfg, args, profile: str):
    """``cfg`` with another precision profile: a profile name, or a config YAML of the same model
    (as ``edgemoe calibrate`` writes)."""
    import dataclasses

    from edgemoe.config import ConfigError
    from edgemoe.loading import load_config

    if profile == cfg.precision.name:
        return cfg
    if not profile.endswith((".yaml", ".yml")):
        return load_config(args.config, args.set + [f"precision.profile={profile}"])
    other = load_config(profile)
    if other.model != cfg.model:
        raise ConfigError("--profiles", profile, f"its model differs from {cfg.name}'s; give a profile of the same model")
    return dataclasses.replace(cfg, precision=other.precision)


# --- calibrate ------------------------------------------------------------------------------

@_without_grad
def cmd_calibrate(args) -> int:
    import dataclasses

    from edgemoe.golden.calibrate import format_ranges, measure_ranges, propose_profile
    from edgemoe.golden.dataset import load_split

    cfg = config_from_args(args)
    sd = _state_dict(cfg, args.weights)
    split = load_split(args.data, args.split, limit=args.scenes)
    images = split.images()
    ranges = measure_ranges(cfg, sd, images)
    proposed, changes = propose_profile(cfg.model, cfg.precision, ranges, args.headroom, args.name)
    print(f"ranges of profile {cfg.precision.name} on {len(images)} {args.split} scene(s), both tasks:")
    print(format_ranges(cfg.precision, ranges, proposed))
    out = dataclasses.replace(cfg, precision=proposed, name=f"{cfg.name}-{proposed.name}"[:64])
    Path(args.out).write_text(out.to_yaml())
    print(f"wrote {args.out}: profile {proposed.name} ({len(changes)} field(s) re-sized); use it with --config {args.out}")
    return 0


# --- registration ------------------------------------------------------------------------------

def _add_model_data_args(p, split: str) -> None:
    """The config, a scene dataset and one of its splits, and the weights to run on it."""
    from edgemoe.golden.dataset import SPLITS

    add_config_args(p)
    p.add_argument("--data", required=True, help="dataset folder (edgemoe data scenes)")
    p.add_argument("--split", choices=SPLITS, default=split, help="split to use (default: %(default)s)")
    p.add_argument("--weights", help="M3ViT checkpoint (default: synthetic weights)")


def add_commands(sub) -> None:
    p = sub.add_parser("data", help="make datasets: `data scenes` renders street scenes with labels and depth")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("scenes", help="render train/val/test street scenes (image, 7-class labels, depth)")
    add_config_args(q)
    q.add_argument("--out", required=True, type=cli_args.output_folder, help="dataset folder")
    q.add_argument("--n", type=cli_args.count(1, 200_000), default=4000, help="training scenes (default: %(default)s)")
    q.add_argument("--val", type=cli_args.count(0, 200_000), help="validation scenes (default: n/20, at least 8)")
    q.add_argument("--test", type=cli_args.count(0, 200_000), help="test scenes (default: n/8, at least 8)")
    q.add_argument("--seed", type=cli_args.seed, default=0)
    q.set_defaults(func=cmd_data_scenes)

    p = sub.add_parser("train", help="train the float M3ViT with both task heads on a scene dataset (resumable)")
    add_config_args(p)
    p.add_argument("--data", required=True, help="dataset folder (edgemoe data scenes)")
    p.add_argument("--out", required=True, type=cli_args.output_file, help="checkpoint file (.pth)")
    p.add_argument("--steps", type=cli_args.count(1, 10_000_000), default=1200)
    p.add_argument("--batch", type=cli_args.count(1, 4096), default=8)
    p.add_argument("--lr", type=cli_args.number(0.0, 1.0, "a learning rate"), default=6e-4)
    p.add_argument("--warmup", type=cli_args.count(0, 10_000_000), default=100, help="warm-up steps")
    p.add_argument("--val-scenes", type=cli_args.count(0, 1_000_000), default=64)
    p.add_argument("--class-balance", type=cli_args.number(0.0, 2.0, "an exponent"), default=0.0,
                   help="weight class c's cross-entropy by (median freq / freq c) ** this (default: %(default)s)")
    p.add_argument("--head-crop", type=cli_args.number(0.1, 1.0, "a fraction"), default=1.0,
                   help="train the heads' last stage on a random window of this fraction of each side "
                        "(default: %(default)s, the whole map)")
    p.add_argument("--depth-weight", type=cli_args.number(0.0, 100.0, "a weight"), default=1.0,
                   help="weight of the depth L1 term (default: %(default)s)")
    p.add_argument("--seed", type=cli_args.seed, default=0)
    p.add_argument("--init", help="M3ViT checkpoint to start from (fine-tuning), e.g. the shipped one")
    p.add_argument("--threads", type=cli_args.count(1, 1024), help="CPU threads (default: one per core)")
    p.add_argument("--budget-min", type=cli_args.number(0.0, 100_000.0, "minutes"),
                   help="stop after this many minutes (state saved; the same command resumes)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("adjust", help="re-tune the segmentation head's per-class output biases on the validation "
                                      "split (logit adjustment after class-balanced training)")
    _add_model_data_args(p, "val")
    p.add_argument("--scenes", type=cli_args.count(1, 1_000_000), help="scenes to tune on (default: all of the split)")
    p.add_argument("--out", required=True, type=cli_args.output_file, help="the adjusted checkpoint (.pth)")
    p.set_defaults(func=cmd_adjust)

    p = sub.add_parser("eval", help="task metrics (mIoU, depth AbsRel/RMSE/delta) for float, fixed-point and device")
    _add_model_data_args(p, "test")
    p.add_argument("--profiles", help="comma-separated precision profiles or profile YAML files "
                                      "(default: the config's own)")
    p.add_argument("--scenes", type=cli_args.count(1, 1_000_000), help="scenes for the float model (default: all)")
    p.add_argument("--fixed-scenes", type=cli_args.count(1, 1_000_000), default=100,
                   help="scenes per fixed-point profile (default: %(default)s)")
    p.add_argument("--device", choices=("none", "sim", "board", "auto"), default="none",
                   help="also run the device path through the host runtime (default: none)")
    p.add_argument("--device-scenes", type=cli_args.count(1, 10_000), default=4)
    p.add_argument("--json", type=cli_args.output_file, help="also write the figures as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("calibrate", help="measure activation/weight ranges per profile field; propose integer bits")
    _add_model_data_args(p, "val")
    p.add_argument("--scenes", type=cli_args.count(1, 100_000), default=16)
    p.add_argument("--headroom", type=cli_args.number(1.0, 16.0, "a factor"), default=1.25,
                   help="range margin over the largest value seen (default: %(default)s)")
    p.add_argument("--name", help="name of the proposed profile (default: <profile>-cal)")
    p.add_argument("--out", required=True, type=cli_args.output_file, help="config YAML with the proposed profile")
    p.set_defaults(func=cmd_calibrate)
