"""Named model presets and precision profiles (the only place they are spelled)."""
from __future__ import annotations

from edgemoe.config import Config, ConfigError, HardwareConfig, ModelConfig, PrecisionProfile, TaskConfig
from edgemoe.golden.numerics.fixed import FixedType

_T = FixedType.parse

#: Edge-MoE's storage widths of the weights and input (shared by the profiles below):
#: linear weights <16,2>, attention biases <16,7>, other biases, embeddings and LN
#: <16,5>, patch-embed weights <16,0>, pixels ufixed<8,0>.
_EDGE_MOE_WEIGHTS = dict(
    pixel=_T("ufixed<8,0,RND,SAT>"),
    weight=_T("fixed<16,2,RND_CONV,SAT>"),
    patch_weight=_T("fixed<16,0,RND_CONV,SAT>"),
    bias=_T("fixed<16,5,RND_CONV,SAT>"),
    attn_bias=_T("fixed<16,7,RND_CONV,SAT>"),
    embed=_T("fixed<16,5,RND_CONV,SAT>"),
    ln_gamma=_T("fixed<16,5,RND_CONV,SAT>"),
    ln_beta=_T("fixed<16,5,RND_CONV,SAT>"),
)

#: Precision profiles.  w16a32 is Edge-MoE's (activations <32,10>); w16a16 halves
#: the datapath; the rest of each profile sizes the intermediates for exactness.
PRECISION_PROFILES: dict[str, PrecisionProfile] = {p.name: p for p in (
    PrecisionProfile(
        name="w16a32", **_EDGE_MOE_WEIGHTS,
        act=_T("fixed<32,10,TRN,SAT>"),
        accum=_T("fixed<60,24,TRN,SAT>"),
        ln_centered=_T("fixed<24,10,TRN,SAT>"),
        ln_inv_std=_T("ufixed<32,11,TRN,SAT>"),
        ln_norm=_T("fixed<24,6,TRN,SAT>"),
        qkv=_T("fixed<24,8,TRN,SAT>"),
        attn_score=_T("fixed<24,8,TRN,SAT>"),
        exp=_T("ufixed<18,1,RND,SAT>"),
        softmax_sum=_T("ufixed<32,9,RND,SAT>"),
        softmax_inv=_T("ufixed<18,1,RND,SAT>"),
        attn_prob=_T("ufixed<18,1,RND,SAT>"),
        gelu_table=_T("ufixed<20,0,RND,SAT>"),
        gate_logit=_T("fixed<24,8,TRN,SAT>"),
        gate_score=_T("ufixed<18,1,RND,SAT>"),
        table_frac_bits=20, exp_table_bits=8, recip_table_bits=8, rsqrt_table_bits=7,
    ),
    PrecisionProfile(
        name="w16a16", **_EDGE_MOE_WEIGHTS,
        act=_T("fixed<16,6,RND,SAT>"),
        accum=_T("fixed<48,22,TRN,SAT>"),
        ln_centered=_T("fixed<16,6,RND,SAT>"),
        ln_inv_std=_T("ufixed<24,11,RND,SAT>"),
        ln_norm=_T("fixed<16,6,RND,SAT>"),
        qkv=_T("fixed<16,6,RND,SAT>"),
        attn_score=_T("fixed<16,6,RND,SAT>"),
        exp=_T("ufixed<16,1,RND,SAT>"),
        softmax_sum=_T("ufixed<24,9,RND,SAT>"),
        softmax_inv=_T("ufixed<16,1,RND,SAT>"),
        attn_prob=_T("ufixed<16,1,RND,SAT>"),
        gelu_table=_T("ufixed<16,0,RND,SAT>"),
        gate_logit=_T("fixed<16,6,RND,SAT>"),
        gate_score=_T("ufixed<16,1,RND,SAT>"),
        table_frac_bits=18, exp_table_bits=6, recip_table_bits=7, rsqrt_table_bits=6,
    ),
)}
# 8-bit weights on top of w16a16: the narrow profile "one switch away".
PRECISION_PROFILES["w8a16"] = PrecisionProfile(**{
    **PRECISION_PROFILES["w16a16"].__dict__, "name": "w8a16",
    "weight": _T("fixed<8,0,RND_CONV,SAT>"), "patch_weight": _T("fixed<8,0,RND_CONV,SAT>")})


#: the profile of a config that names none
DEFAULT_PROFILE = "w16a32"
#: ``precision.profile``: not a field of the profile but the switch between them (YAML ``precision: NAME``)
PROFILE_SWITCH_DOC = ("the named profile every field below starts from: " + ", ".join(PRECISION_PROFILES)
                      + "; fields set as well override it and make the name <profile>+custom")


def precision_profile(name: str) -> PrecisionProfile:
    if not isinstance(name, str) or name not in PRECISION_PROFILES:
        raise ConfigError("precision", name, f"must be one of {', '.join(PRECISION_PROFILES)}")
    return PRECISION_PROFILES[name]


def _tiny() -> Config:
    """M3ViT-tiny on Cityscapes as Edge-MoE deploys it (DESIGN.md)."""
    return Config(ModelConfig(), precision_profile("w16a32"), HardwareConfig(), name="m3vit-tiny-cityscapes")


def _micro() -> Config:
    """A small model with every feature of the tiny one, for fast csim/RTL tests."""
    model = ModelConfig(img_height=32, img_width=64, patch_size=16, embed_dim=64, depth=4, num_heads=4,
                        mlp_ratio=4.0, moe_blocks=(1, 3), num_experts=4, top_k=2, expert_hidden=128,
                        tasks=(TaskConfig("semseg", 7), TaskConfig("depth", 1)), head_channels=32)
    return Config(model, precision_profile("w16a32"), HardwareConfig(cu_in=8, cu_out=8, attn_parallel=2),
                  name="m3vit-micro")


PRESETS = {"m3vit-tiny-cityscapes": _tiny, "m3vit-micro": _micro}
#: the config of every command (and of load_config()) when none is given
DEFAULT_PRESET = "m3vit-tiny-cityscapes"


def preset(name: str) -> Config:
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError("preset", name, f"must be one of {', '.join(PRESETS)}")
    return PRESETS[name]()
