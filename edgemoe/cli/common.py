"""What every command shares: the config options, the weights, the header line and the user-error types."""
from __future__ import annotations

import argparse

from edgemoe.config import Config, ConfigError
from edgemoe.loading import load_config
from edgemoe.presets import DEFAULT_PRESET


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--config`` (default: :data:`~edgemoe.presets.DEFAULT_PRESET`) and repeatable ``--set`` overrides."""
    from edgemoe.presets import PRESETS

    p.add_argument("--config", default=DEFAULT_PRESET,
                   help=f"preset ({', '.join(PRESETS)}) or YAML file (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. model.depth=4 or precision.profile=w16a16 (repeatable)")


def config_from_args(args) -> Config:
    """The config that ``--config`` and ``--set`` name."""
    return load_config(args.config, args.set)


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


def print_header(cfg: Config) -> None:
    """One line: the config's name, model size, precision profile and digest."""
    m = cfg.model
    print(f"config {cfg.name}: {m.img_height}x{m.img_width}, dim {m.embed_dim}, depth {m.depth}, "
          f"{m.num_experts} experts top-{m.top_k}; precision {cfg.precision.name}; digest {cfg.digest()[:12]}")


def user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that mean bad input (a config, a file, an option), not a bug: one line, exit status 2."""
    from edgemoe.golden.checkpoint import CheckpointError
    from edgemoe.golden.dataset import DatasetError
    from edgemoe.golden.logit_adjust import AdjustError
    from edgemoe.golden.pretrained import ShippedCheckpointError
    from edgemoe.golden.train import TrainingError
    from edgemoe.golden.numerics.fixed import FixedTypeError
    from edgemoe.hls.csim import ToolError
    from edgemoe.hls.errors import KernelError
    from edgemoe.host.errors import HostError
    from edgemoe.images import ImageError

    return (ConfigError, FixedTypeError, ImageError, ToolError, HostError, KernelError, CheckpointError, DatasetError,
            TrainingError, ShippedCheckpointError, AdjustError)


def describe_os_error(e: OSError) -> str:
    """A file-system error in one line: the path and the reason."""
    if e.filename is None:
        return e.strerror or str(e)
    return f"{e.filename}: {e.strerror or e}"
