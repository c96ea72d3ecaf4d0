"""Named model presets: the built-in configs (the only place they are spelled).

The named precision profiles they use live with :class:`~edgemoe.config.PrecisionProfile`
in :mod:`edgemoe.config`; :func:`edgemoe.loading.load_config` reads a preset by name.
"""
from __future__ import annotations

from edgemoe.config import Config, ConfigError, HardwareConfig, ModelConfig, TaskConfig, precision_profile


def _tiny() -> Config:
    """M3ViT-tiny on Cityscapes as Edge-MoE deploys it (the ModelConfig defaults: a ViT-Tiny/16 backbone, 16 experts, top-2, two task heads)."""
    return Config(ModelConfig(), precision_profile("w16a32"), HardwareConfig(), name="m3vit-tiny-cityscapes")


def _tiny_zcu102() -> Config:
    """The tiny model on the fastest accelerator ``edgemoe explore --config m3vit-tiny-cityscapes --board
    zcu102`` finds among the designs that fit a ZCU102 at <= 80% (the kernel as written): 8-bit weights
    (w8a16), a 64x24 compute unit (every product, attention's q . k and A*V included), 16 softmax lanes (at
    batch 1, 12 come within 1% with 20 DSPs fewer, which explore's tie rule names there), 512-bit weight words
    striped over four 128-bit PS ports (HP1..HP3 and HPC0; the image on HP0, the activations on HPC1) at 300
    MHz; a call's images in groups of four whose experts share one weight stream (``edgemoe explore --batch
    8``: at batch 8 the experts are compute-bound from groups of four on)."""
    return Config(ModelConfig(), precision_profile("w8a16"),
                  HardwareConfig(board="zcu102", cu_in=64, cu_out=24, attn_parallel=16, axi_width=512,
                                 weight_lanes=4, moe_batch=4),
                  name="m3vit-tiny-zcu102")


def _micro() -> Config:
    """A small model with every feature of the tiny one, for fast csim/RTL tests."""
    model = ModelConfig(img_height=32, img_width=64, patch_size=16, embed_dim=64, depth=4, num_heads=4,
                        mlp_ratio=4.0, moe_blocks=(1, 3), num_experts=4, top_k=2, expert_hidden=128,
                        tasks=(TaskConfig("semseg", 7), TaskConfig("depth", 1)), head_channels=32)
    return Config(model, precision_profile("w16a32"), HardwareConfig(cu_in=8, cu_out=8, attn_parallel=2),
                  name="m3vit-micro")


PRESETS = {"m3vit-tiny-cityscapes": _tiny, "m3vit-tiny-zcu102": _tiny_zcu102, "m3vit-micro": _micro}
#: the config of every command (and of load_config()) when none is given
DEFAULT_PRESET = "m3vit-tiny-cityscapes"


def preset(name: str) -> Config:
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError("preset", name, f"must be one of {', '.join(PRESETS)}")
    return PRESETS[name]()
