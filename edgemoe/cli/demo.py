"""The demo's command line (``python -m edgemoe.cli.demo``, ``make demo``), run by :func:`edgemoe.host.demo.run_demo`."""
from __future__ import annotations

import sys

from edgemoe.cli import args as cli_args
from edgemoe.cli import run
from edgemoe.cli.common import config_from_args
from edgemoe.host import demo
from edgemoe.presets import DEFAULT_PRESET


def _run(args) -> int:
    return demo.run_demo(config_from_args(args), weights=args.weights, synthetic=args.synthetic, seed=args.seed,
                         scene_index=args.scene, photo_names=args.photo, taps=args.taps, out_dir=args.out)


def build_parser() -> cli_args.OneLineParser:
    p = cli_args.OneLineParser(prog="python -m edgemoe.cli.demo", description=demo.__doc__.split("\n\n")[0])
    p.add_argument("--config", default=DEFAULT_PRESET, help="preset or YAML (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="config override")
    p.add_argument("--weights", help="an M3ViT checkpoint (.pth or a directory of rank shards) or a packed "
                                     "weights file; default: the checkpoint shipped for the config, else synthetic")
    p.add_argument("--synthetic", action="store_true", help="synthetic (untrained) weights even when a trained "
                                                              "checkpoint is shipped for the config")
    p.add_argument("--seed", type=cli_args.seed, default=0, help="seed of the synthetic weights (default: 0)")
    p.add_argument("--scene", type=cli_args.count(0, 1_000_000), default=0,
                   help="index of the held-out generated scene (test split, seed 0; default: 0)")
    p.add_argument("--photo", nargs="+", default=["motorcycle"], choices=sorted(demo.PHOTOS),
                   help="bundled photo(s) to run (default: motorcycle); several go in one kernel call")
    p.add_argument("--taps", default=demo.DEFAULT_TAPS,
                   help="taps checked bit for bit besides the kernel output "
                        "(comma list, 'blocks', 'all' or 'none'; default: %(default)s)")
    p.add_argument("--out", default="out/demo", type=cli_args.output_folder,
                   help="output folder (default: %(default)s)")
    p.set_defaults(func=_run)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the exit status: 0 bit-exact, 1 not, 2 bad input (one line on stderr)."""
    return run(build_parser(), argv, lambda args: "demo")


if __name__ == "__main__":
    sys.exit(main())
