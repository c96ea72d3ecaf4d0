"""The ``run``, ``compare``, ``pack`` and ``register`` commands: the host runtime on a board or the simulated device.

``--weights`` takes a packed weights file (``edgemoe pack``) or an M3ViT
checkpoint (packed on the fly and cached); without it, synthetic weights
(``--seed``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from edgemoe.cli import args as cli_args
from edgemoe.cli.common import add_config_args, config_from_args, load_state_dict, print_header
from edgemoe.host.errors import HostError


def _float_state_dict(cfg, args):
    """(float state dict or None, notices): what --weights / --timm-weights / --seed name."""
    from edgemoe.golden.synthetic import synthetic_state_dict

    from edgemoe.host.weights_file import is_weights_file

    if args.weights and is_weights_file(args.weights):
        return None, []
    if args.weights or args.timm_weights:
        return load_state_dict(cfg, args.weights, args.timm_weights, args.seed)
    return synthetic_state_dict(cfg.model, seed=args.seed), [f"weights: synthetic (seed {args.seed})"]


def _weights(args, state_dict):
    """(what Accelerator(weights=...) takes, its source) for these arguments: packed after the overlay checks."""
    if args.weights and state_dict is None:
        return args.weights, ""  # a packed file
    source = f"M3ViT checkpoint {Path(args.weights).name}" if args.weights else \
        f"timm ViT {Path(args.timm_weights).name}" if args.timm_weights else f"synthetic (seed {args.seed})"
    return state_dict, source


def _accelerator(cfg, args, state_dict):
    from edgemoe.host.runtime import Accelerator

    weights, source = _weights(args, state_dict)
    return Accelerator(cfg, overlay=args.overlay, weights=weights, device=args.device, manifest=args.manifest,
                       timeout=args.timeout, max_batch=args.batch, weights_source=source, log=print)


def _images(cfg, paths: list[str]):
    """(the image files as the model input [B, 3, H, W], seconds it took: part of the preprocess stage).

    Says, once per run, what was done to each image to fit the configured size.
    """
    from edgemoe.images import load_images

    m = cfg.model
    t0 = time.perf_counter()
    images = load_images(paths, m.img_height, m.img_width, cfg.precision.pixel.bits, log=lambda s: print(f"  {s}"))
    return images, time.perf_counter() - t0


# --- run ---------------------------------------------------------------------------------

def cmd_run(args) -> int:
    from edgemoe.host.visualize import save_task_maps, unique_stems

    cfg = config_from_args(args)
    print_header(cfg)
    state_dict, notices = _float_state_dict(cfg, args)
    for n in notices:
        print(f"  {n}")
    stems, renamed = unique_stems(args.images)
    for note in renamed:
        print(f"  {note}")
    acc = _accelerator(cfg, args, state_dict)
    images, load_seconds = _images(cfg, args.images)
    res = acc.infer(images, args.task)
    res.timings["preprocess"] += load_seconds
    paths = save_task_maps(res, args.out, stems)
    print(f"ran {len(args.images)} image(s) for task(s) {', '.join(res.outputs)} in {res.kernel_calls} kernel "
          f"call(s) of up to {acc.max_batch} image(s)")
    print("per-stage times: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in res.timings.items())
          + f" (total {sum(res.timings.values()) * 1e3:.1f} ms for {len(args.images)} image(s))")
    per_image = len(res.outputs)
    for i, image in enumerate(args.images):
        print(f"  {image} -> " + ", ".join(str(p) for p in paths[i::len(args.images)][:per_image]))
    return 0


# --- compare -------------------------------------------------------------------------------

def cmd_compare(args) -> int:
    from edgemoe.golden.synthetic import synthetic_images

    from edgemoe.host.compare import compare_device, format_comparison, select_taps

    cfg = config_from_args(args)
    print_header(cfg)
    taps = select_taps(cfg, args.taps)
    state_dict, notices = _float_state_dict(cfg, args)
    for n in notices:
        print(f"  {n}")
    acc = _accelerator(cfg, args, state_dict)
    if args.image:
        images, source = _images(cfg, args.image)[0], f"{len(args.image)} image file(s)"
    else:
        images, source = synthetic_images(cfg.model, args.images, seed=args.seed), \
            f"{args.images} synthetic image(s) (seed {args.seed})"
    print(f"  input: {source}; taps: {len(taps)} ({args.taps}) + the kernel output")
    t0 = time.perf_counter()
    results = compare_device(acc, images, args.task, taps, state_dict)
    note = "" if state_dict is not None else "needs the float weights (--weights CHECKPOINT, not a packed file)"
    for c in results:
        print()
        print(format_comparison(c, note))
    ok = all(c.exact for c in results)
    print(f"\nbit-exact with golden: {'yes' if ok else 'NO'} ({', '.join(f'{c.task} ' + ('yes' if c.exact else 'NO') for c in results)}) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


# --- pack / register -------------------------------------------------------------------------

def cmd_pack(args) -> int:
    from edgemoe.host.weights_file import load_weights_file, log_saturation, pack_state_dict

    cfg = config_from_args(args)
    state_dict, notices = _float_state_dict(cfg, args)
    if state_dict is None:
        raise HostError(f"{args.weights} is already a packed weights file")
    for n in notices:
        print(f"  {n}")
    t0 = time.perf_counter()
    source = notices[0].removeprefix("weights: ") if notices else ""
    packed = pack_state_dict(cfg, state_dict, source)
    path = packed.save(args.out)
    load_weights_file(path, cfg)  # read back: the file is usable
    log_saturation(packed)
    print(f"packed {packed.layout['total_words']} {packed.layout['word_bits']}-bit words "
          f"({packed.nbytes / 1e6:.2f} MB) + {len(packed.heads)} head tensors for config {cfg.name} "
          f"(digest {cfg.digest()[:12]}) into {path} in {time.perf_counter() - t0:.1f} s; sha256 {packed.sha256[:16]}")
    return 0


def cmd_register(args) -> int:
    from edgemoe.hls.interface import register_map_json

    from edgemoe.host import manifest as mf

    cfg = config_from_args(args)
    overlay = Path(args.overlay)
    regmap = Path(args.regmap) if args.regmap else overlay.with_suffix(".regmap.json")
    if not args.regmap:
        regmap.write_text(register_map_json(cfg))
    entry = mf.add_entry(cfg, overlay, args.files, board=args.board, flow=args.flow, name=args.name,
                         regmap=regmap, manifest=args.manifest or overlay.resolve().parent)
    print(f"registered {entry.name!r} ({entry.flow}, board {entry.data['board']}) for config {cfg.name} "
          f"(digest {cfg.digest()[:12]}) in {mf.manifest_path(args.manifest or overlay.resolve().parent)}:")
    for rel, info in entry.data["files"].items():
        print(f"  {rel}  sha256 {info['sha256'][:16]}  {info['bytes']} bytes")
    return 0


# --- parser ------------------------------------------------------------------------------------

def _add_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", help="a packed weights file (edgemoe pack) or an M3ViT checkpoint "
                                     "(.pth or a directory of rank shards; packed on the fly, cached)")
    p.add_argument("--timm-weights", help="a plain timm ViT state dict for the dense parts")
    p.add_argument("--seed", type=cli_args.seed, default=0, help="seed of synthetic weights (and images) (default: 0)")


def _add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "sim", "board"],
                   help="board (pynq), sim (simulated device running the C simulation) or auto: a board if "
                        "pynq finds one, else sim (default: auto; the choice is printed)")
    p.add_argument("--overlay", help="the overlay to load (.bit with its .hwh, .xclbin, or .simbit); default: "
                                     "the one registered for the config in bitstreams/manifest.json (on sim, "
                                     "built when missing)")
    p.add_argument("--manifest", help="bitstream manifest (file or folder; default: bitstreams/)")
    p.add_argument("--task", type=cli_args.task, default="all", help="task name, index or 'all' (default: all)")
    p.add_argument("--batch", type=cli_args.batch, default=8,
                   help=f"images per kernel call, 1..{cli_args.MAX_BATCH} (default: 8)")
    p.add_argument("--timeout", type=cli_args.timeout, default=10.0,
                   help=f"seconds to wait for ap_done per call, > 0 and <= {cli_args.MAX_TIMEOUT:g} (default: 10)")


def add_commands(subparsers) -> None:
    """Register run, compare, pack and register on the main parser's subparsers."""
    p = subparsers.add_parser("run", help="run images through the accelerator (board or simulated): "
                                          "segmentation and depth PNGs, per-stage times")
    add_config_args(p)
    _add_weights_args(p)
    _add_device_args(p)
    p.add_argument("--out", default="out", type=cli_args.output_folder,
                   help="folder for the output PNGs (default: out)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (cropped and resized to the config's size)")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("compare", help="device vs golden fixed-point model: bit-exact per tap; "
                                              "fixed vs float error per task output")
    add_config_args(p)
    _add_weights_args(p)
    _add_device_args(p)
    p.add_argument("--taps", default="blocks",
                   help="taps to compare besides the kernel output: blocks (every block output, default), all, "
                        "none, or a comma list of tap names / globs such as 'embed,blocks.1.*'")
    p.add_argument("--images", type=cli_args.images, default=2,
                   help=f"number of synthetic images, 1..{cli_args.MAX_IMAGES} (default: 2)")
    p.add_argument("--image", nargs="+", help="image files instead of synthetic images")
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("pack", help="convert a float checkpoint into the kernel's weight layout "
                                           "(a versioned file with a checksum)")
    add_config_args(p)
    _add_weights_args(p)
    p.add_argument("--out", required=True, type=cli_args.output_file, help="output file (.npz)")
    p.set_defaults(func=cmd_pack)

    p = subparsers.add_parser("register", help="add a built overlay (.bit/.hwh, .xclbin) to the bitstream manifest")
    add_config_args(p)
    p.add_argument("overlay", help="the .bit (its .hwh is added) or .xclbin")
    p.add_argument("files", nargs="*", help="more files of the build to checksum")
    p.add_argument("--board", help="board name (default: the config's)")
    p.add_argument("--flow", choices=["zynq", "alveo", "sim"], help="default: from the overlay's suffix")
    p.add_argument("--name", help="entry name (default: the overlay's file name)")
    p.add_argument("--regmap", help="the build's regmap.json (default: generated from the config next to the overlay)")
    p.add_argument("--manifest", help="manifest file or folder (default: the overlay's folder)")
    p.set_defaults(func=cmd_register)

