"""Shared test set-up: fixtures every test module may ask for by name."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def csim_cache() -> Path:
    """Compiled C simulation libraries, cached by source hash across test runs."""
    return Path(__file__).resolve().parents[1] / "build" / "csim-cache"


@pytest.fixture(scope="module")
def micro_sim_overlay(tmp_path_factory, csim_cache):
    """m3vit-micro with synthetic weights: (cfg, state dict, simulated overlay entry, packed weights)."""
    from edgemoe.loading import load_config
    from edgemoe.golden.synthetic import synthetic_state_dict
    from edgemoe.host.sim_overlay import build_sim_overlay
    from edgemoe.host.weights_file import pack_state_dict

    cfg = load_config("m3vit-micro")
    sd = synthetic_state_dict(cfg.model, seed=0)
    entry = build_sim_overlay(cfg, tmp_path_factory.mktemp("bitstreams"), cache_dir=csim_cache)
    return cfg, sd, entry, pack_state_dict(cfg, sd, "synthetic (seed 0)")
