"""Shared test set-up."""
from __future__ import annotations

from pathlib import Path

#: compiled C simulation libraries, cached by source hash across test runs
CSIM_CACHE = Path(__file__).resolve().parents[1] / "build" / "csim-cache"


def micro_sim_overlay(tmp_path_factory):
    """m3vit-micro with synthetic weights: (cfg, state dict, simulated overlay entry, packed weights)."""
    from edgemoe.loading import load_config
    from edgemoe.golden.synthetic import synthetic_state_dict
    from edgemoe.host.simdevice import build_sim_overlay
    from edgemoe.host.weights_file import pack_state_dict

    cfg = load_config("m3vit-micro")
    sd = synthetic_state_dict(cfg.model, seed=0)
    entry = build_sim_overlay(cfg, tmp_path_factory.mktemp("bitstreams"), cache_dir=CSIM_CACHE)
    return cfg, sd, entry, pack_state_dict(cfg, sd, "synthetic (seed 0)")
