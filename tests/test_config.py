"""Configuration: one test per validation rule, presets, YAML files, CLI overrides, round trips.

Each rule of ``edgemoe.config.validate`` and ``numerics.widths.check_precision``
is triggered on its own (starting from a preset that validates) and the
ConfigError must name the field (``.field`` and in the message) and what is
allowed.
"""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from edgemoe.config import (
    BUFFERS, PRECISION_PROFILES, Config, ConfigError, HardwareConfig, ModelConfig, PrecisionProfile, TaskConfig,
    precision_profile)
from edgemoe.golden.numerics.fixed import FixedType
from edgemoe.golden.numerics.widths import check_precision
from edgemoe.loading import load_config, parse_override
from edgemoe.presets import PRESETS, preset

MICRO = "m3vit-micro"


def _error(overrides, source=MICRO) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load_config(source, overrides)
    return e.value


def _check(e: ConfigError, field: str, *fragments: str) -> None:
    msg = str(e)
    assert e.field == field, msg
    assert msg.startswith(f"{field} = "), msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"


def test_micro_preset_is_the_baseline():
    cfg = load_config(MICRO)
    m = cfg.model
    assert (m.num_tokens, m.embed_dim, m.head_dim, m.mlp_hidden, m.expert_hidden, m.patch_dim) == (9, 64, 16, 256, 128, 768)
    assert cfg.hardware.cu_in == 8 and cfg.hardware.attn_parallel == 2


# --- model rules -----------------------------------------------------------------------------------

POSITIVE = ["img_height", "img_width", "in_chans", "patch_size", "embed_dim", "depth", "num_heads",
            "num_experts", "top_k", "expert_hidden", "head_channels", "mlp_ratio"]


@pytest.mark.parametrize("name", POSITIVE)
def test_model_fields_must_be_positive(name):
    for bad in (0, -4):
        _check(_error([f"model.{name}={bad}"]), f"model.{name}", "must be > 0")


MODEL_RULES = [
    ("ln_eps zero", ["model.ln_eps=0"], "model.ln_eps", "(0, 1)"),
    ("ln_eps one", ["model.ln_eps=1.0"], "model.ln_eps", "(0, 1)"),
    ("height not multiple of patch", ["model.img_height=40"], "model.img_height", "multiple of model.patch_size (16)"),
    ("width not multiple of patch", ["model.img_width=72"], "model.img_width", "multiple of model.patch_size (16)"),
    ("patch not power of two", ["model.img_height=48", "model.img_width=96", "model.patch_size=12"],
     "model.patch_size", "power of two"),
    ("embed_dim not divisible by heads", ["model.num_heads=3"], "model.embed_dim", "divisible by model.num_heads (3)"),
    ("mlp hidden not integer", ["model.mlp_ratio=1.3"], "model.mlp_ratio", "must be an integer"),
    ("moe block out of range", ["model.moe_blocks=[1, 4]"], "model.moe_blocks", "0..3"),
    ("moe block negative", ["model.moe_blocks=[-1]"], "model.moe_blocks", "0..3"),
    ("depth shrinks below moe blocks", ["model.depth=3"], "model.moe_blocks", "0..2"),
    ("moe block repeated", ["model.moe_blocks=1,1"], "model.moe_blocks", "must not repeat"),
    ("top_k > num_experts", ["model.top_k=5"], "model.top_k", "<= model.num_experts (4)"),
    ("no tasks", ["model.tasks=[]"], "model.tasks", "at least one task"),
    ("duplicate task names", ["model.tasks=[{name: a, out_channels: 3}, {name: a, out_channels: 1}]"],
     "model.tasks", "unique"),
    ("task name not identifier", ["model.tasks=[{name: sem-seg, out_channels: 3}]"],
     "model.tasks[0].name", "identifier"),
    ("task with no outputs", ["model.tasks=[{name: a, out_channels: 1}, {name: b, out_channels: 0}]"],
     "model.tasks[1].out_channels", ">= 1"),
    ("unknown head type", ["model.tasks=[{name: a, out_channels: 3, head: fpn}]"], "model.tasks[0].head", "uphead"),
]


@pytest.mark.parametrize("overrides, field, fragment", [r[1:] for r in MODEL_RULES], ids=[r[0] for r in MODEL_RULES])
def test_model_rules(overrides, field, fragment):
    _check(_error(overrides), field, fragment)


# --- hardware rules ----------------------------------------------------------------------------------

def _bundles_override(buffers, last=None) -> str:
    names = [f"gmem{i}" for i in range(len(buffers))]
    if last:
        names[-1] = last
    return "hardware.bundles={" + ", ".join(f"{b}: {n}" for b, n in zip(buffers, names)) + "}"


HARDWARE_RULES = [
    ("unknown board", ["hardware.board=zcu104"], "hardware.board", "zcu102, u50, u280"),
    ("part mismatch", ["hardware.part=xc7z020clg400-1"], "hardware.part", "xczu9eg-ffvb1156-2-e"),
    ("clock too low", ["hardware.clock_mhz=5"], "hardware.clock_mhz", "10..800"),
    ("clock too high", ["hardware.clock_mhz=900"], "hardware.clock_mhz", "10..800"),
    ("cu_in zero", ["hardware.cu_in=0"], "hardware.cu_in", "> 0"),
    ("cu_out zero", ["hardware.cu_out=0"], "hardware.cu_out", "> 0"),
    ("attn_parallel zero", ["hardware.attn_parallel=0"], "hardware.attn_parallel", "> 0"),
    ("axi width", ["hardware.axi_width=100"], "hardware.axi_width", "32, 64, 128, 256, 512, 1024"),
    ("attn_parallel > tokens", ["hardware.attn_parallel=10"], "hardware.attn_parallel", "token count (9)"),
    ("cu_in not dividing embed_dim", ["hardware.cu_in=12"], "hardware.cu_in", "embed_dim = 64"),
    ("cu_in not dividing head_dim", ["hardware.cu_in=32"], "hardware.cu_in", "head_dim (embed_dim/num_heads) = 16"),
    ("cu_in not dividing expert_hidden", ["model.expert_hidden=68"], "hardware.cu_in", "model.expert_hidden = 68"),
    ("cu_out not dividing embed_dim", ["hardware.cu_out=48"], "hardware.cu_out", "embed_dim = 64"),
    ("bundles missing a buffer", [_bundles_override(BUFFERS[:-1])], "hardware.bundles", f"missing ['{BUFFERS[-1]}']"),
    ("bundles unknown buffer", [_bundles_override(BUFFERS + ("scratch",))], "hardware.bundles", "unknown ['scratch']"),
    ("bundle name not identifier", [_bundles_override(BUFFERS, last="g-0")],
     f"hardware.bundles.{BUFFERS[-1]}", "identifier"),
    ("weight lanes zero", ["hardware.weight_lanes=0"], "hardware.weight_lanes", "one of 1, 2, 4, 8"),
    ("weight lanes not dividing the bus word", ["hardware.weight_lanes=3"], "hardware.weight_lanes",
     "lanes of >= 32 bits, each a whole number of 16-bit weight words: one of 1, 2, 4, 8"),
    ("weight lanes narrower than 32 bits", ["hardware.weight_lanes=16"], "hardware.weight_lanes", "one of 1, 2, 4, 8"),
    ("weight lanes narrower than a 32-bit word", ["hardware.axi_width=64", "hardware.weight_lanes=4"],
     "hardware.weight_lanes", "the 64-bit bus word (hardware.axi_width) into lanes of >= 32 bits"),
    ("weight lanes past the board's ports", ["hardware.weight_lanes=8"], "hardware.weight_lanes",
     "8 lane bundles + 2 of the other buffers = 10 m_axi bundles; board zcu102 has 6 memory ports, so at most 4"),
    ("weight lane bundle named by another buffer", ["hardware.weight_lanes=2",
                                                    "hardware.bundles={image: gmem1_1, weights: gmem1, "
                                                    "activations: gmem2}"],
     "hardware.bundles", "names gmem1_1, the bundle of a weight lane (gmem1_0, gmem1_1)"),
    ("moe_batch zero", ["hardware.moe_batch=0"], "hardware.moe_batch", "an integer in 1..16"),
    ("moe_batch past the limit", ["hardware.moe_batch=17"], "hardware.moe_batch", "an integer in 1..16"),
    ("moe_batch not an integer", ["hardware.moe_batch=2.5"], "hardware.moe_batch", "must be of type int"),
    ("moe_batch past 16-bit queue entries", ["model.img_height=256", "model.img_width=4096",
                                             "hardware.moe_batch=16"],
     "hardware.moe_batch", "(an expert queue entry is a 16-bit image x token index): at most 15"),
]


@pytest.mark.parametrize("overrides, field, fragment", [r[1:] for r in HARDWARE_RULES],
                         ids=[r[0] for r in HARDWARE_RULES])
def test_hardware_rules(overrides, field, fragment):
    _check(_error(overrides), field, fragment)


def test_weight_lanes_default_leaves_the_digest_alone():
    """weight_lanes=1 (today's kernel) is left out of the config's data and digest; more lanes are recorded."""
    cfg = load_config(MICRO)
    assert cfg.hardware.weight_lanes == 1 and "weight_lanes" not in cfg.to_dict()["hardware"]
    two = load_config(MICRO, ["hardware.weight_lanes=2"])
    assert two.to_dict()["hardware"]["weight_lanes"] == 2 and two.digest() != cfg.digest()
    assert load_config(MICRO, ["hardware.weight_lanes=1"]).digest() == cfg.digest()
    assert yaml.safe_load(two.to_yaml())["hardware"]["weight_lanes"] == 2


def test_moe_batch_default_leaves_the_digest_alone():
    """moe_batch=1 (image by image) is left out of the config's data and digest; a group is recorded."""
    cfg = load_config(MICRO)
    assert cfg.hardware.moe_batch == 1 and "moe_batch" not in cfg.to_dict()["hardware"]
    four = load_config(MICRO, ["hardware.moe_batch=4"])
    assert four.to_dict()["hardware"]["moe_batch"] == 4 and four.digest() != cfg.digest()
    assert yaml.safe_load(four.to_yaml())["hardware"]["moe_batch"] == 4
    assert load_config("m3vit-tiny-zcu102").hardware.moe_batch == 4


def test_matching_part_is_accepted():
    cfg = load_config(MICRO, ["hardware.part=xczu9eg-ffvb1156-2-e"])
    assert cfg.hardware.part == "xczu9eg-ffvb1156-2-e"
    assert load_config(MICRO, ["hardware.board=u50", "hardware.clock_mhz=10"]).hardware.board == "u50"


# --- precision rules (numerics/widths.py) -----------------------------------------------------------------

PRECISION_RULES = [
    ("pixel signed", ["precision.pixel=fixed<8,0>"], "precision.pixel", "ufixed<b,0>"),
    ("pixel with integer bits", ["precision.pixel=ufixed<8,1>"], "precision.pixel", "ufixed<b,0>"),
    ("pixel wider than 16 bits", ["precision.pixel=ufixed<17,0>"], "precision.pixel", "b <= 16"),
    ("accum unsigned", ["precision.accum=ufixed<60,24>"], "precision.accum", "must be signed"),
    ("accum too few fraction bits", ["precision.accum=fixed<60,30>"], "precision.accum",
     "needs >= 36 fraction bits", "qkv"),
    ("accum too few fraction bits for a bias", ["precision.bias=fixed<24,-14>"], "precision.accum",
     "needs >= 38 fraction bits"),
    ("accum too few integer bits", ["precision.accum=fixed<52,16>"], "precision.accum",
     "needs >= 18 integer bits for 64 qkv products"),
    ("exp cannot hold 1.0", ["precision.exp=ufixed<18,0>"], "precision.exp", "must hold 1.0"),
    ("softmax_inv cannot hold 1.0", ["precision.softmax_inv=ufixed<18,0>"], "precision.softmax_inv", "hold 1.0"),
    ("attn_prob cannot hold 1.0", ["precision.attn_prob=ufixed<16,-1>"], "precision.attn_prob", "hold 1.0"),
    ("gate_score cannot hold 1.0", ["precision.gate_score=ufixed<18,0>"], "precision.gate_score", "hold 1.0"),
    ("softmax_sum too narrow for the tokens", ["precision.softmax_sum=ufixed<26,3>"], "precision.softmax_sum",
     "sum of 9 exps", ">= 4 integer bits"),
    ("weight unsigned", ["precision.weight=ufixed<16,2>"], "precision.weight", "must be signed"),
    ("patch_weight unsigned", ["precision.patch_weight=ufixed<16,0>"], "precision.patch_weight", "must be signed"),
    ("act unsigned", ["precision.act=ufixed<32,10>"], "precision.act", "must be signed"),
    ("qkv unsigned", ["precision.qkv=ufixed<24,8>"], "precision.qkv", "must be signed"),
    ("attn_score unsigned", ["precision.attn_score=ufixed<24,8>"], "precision.attn_score", "must be signed"),
    ("gate_logit unsigned", ["precision.gate_logit=ufixed<24,8>"], "precision.gate_logit", "must be signed"),
    ("ln_norm unsigned", ["precision.ln_norm=ufixed<24,6>"], "precision.ln_norm", "must be signed"),
    ("ln_centered unsigned", ["precision.ln_centered=ufixed<24,10>"], "precision.ln_centered", "must be signed"),
    ("table_frac_bits too small", ["precision.table_frac_bits=7"], "precision.table_frac_bits", "8..30"),
    ("table_frac_bits too large", ["precision.table_frac_bits=31"], "precision.table_frac_bits", "8..30"),
    ("exp_table_bits zero", ["precision.exp_table_bits=0"], "precision.exp_table_bits", "1..12"),
    ("recip_table_bits too large", ["precision.recip_table_bits=13"], "precision.recip_table_bits", "1..12"),
    ("rsqrt_table_bits > table_frac_bits", ["precision.table_frac_bits=9", "precision.rsqrt_table_bits=10",
                                            "precision.exp=ufixed<10,1>", "precision.softmax_inv=ufixed<10,1>",
                                            "precision.ln_inv_std=ufixed<28,11>"],
     "precision.rsqrt_table_bits", "1..9"),
    ("table_frac_bits below exp fraction bits - 8", ["precision.exp=ufixed<30,1>"], "precision.table_frac_bits",
     "precision.exp fraction bits - 8 (21)"),
    ("table_frac_bits below ln_inv_std fraction bits - 8", ["precision.ln_inv_std=ufixed<40,11>"],
     "precision.table_frac_bits", "precision.ln_inv_std fraction bits - 8 (21)"),
    ("gelu table type too narrow", ["precision.gelu_table=ufixed<20,-3>"], "precision.gelu_table",
     "too narrow for its table", "0.1700"),
    ("gelu table signed", ["precision.gelu_table=fixed<20,1>"], "precision.gelu_table", "must be unsigned"),
    ("gelu_step_log2 too large", ["precision.gelu_step_log2=11"], "precision.gelu_step_log2", "0..10"),
    ("act too few fraction bits for the gelu index", ["precision.act=fixed<16,12>"], "precision.act",
     "needs >= 5 fraction bits to index the GELU table"),
    ("gelu_range too small", ["precision.gelu_range=0.5"], "precision.gelu_range", "[1, 16]"),
    ("gelu_range too large", ["precision.gelu_range=17"], "precision.gelu_range", "[1, 16]"),
    ("ln eps not representable", ["precision.ln_centered=fixed<16,8>"], "precision.ln_centered",
     "model.ln_eps = 1e-06 rounds to 0"),
    ("ln eps not representable (larger eps is)", ["model.ln_eps=1e-9"], "precision.ln_centered", "rounds to 0"),
    ("ln variance sum too wide", ["precision.ln_centered=fixed<32,10>"], "precision.ln_centered",
     "variance sum needs 68 bits"),
    ("ln_inv_std cannot hold 1/sqrt(eps)", ["precision.ln_inv_std=ufixed<32,8>"], "precision.ln_inv_std",
     "1/sqrt(eps) = 1000.0"),
    ("ln_centered x ln_inv_std too wide", ["precision.ln_inv_std=ufixed<39,11>"], "precision.ln_inv_std",
     "too wide", "exceeds 62 bits"),
    ("ln_norm x ln_gamma too wide", ["precision.ln_norm=fixed<48,6>"], "precision.ln_norm", "too wide"),
    ("softmax_sum x exp too wide", ["precision.softmax_sum=ufixed<46,9>"], "precision.softmax_sum", "too wide"),
    ("exp x softmax_inv too wide", ["precision.softmax_inv=ufixed<45,17>"], "precision.softmax_inv", "too wide"),
    ("act x gate_score too wide", ["precision.gate_score=ufixed<31,3>"], "precision.gate_score", "too wide"),
    ("attn_score too wide for the exp unit", ["precision.attn_score=fixed<40,8>"], "precision.attn_score",
     "exp unit"),
]


@pytest.mark.parametrize("overrides, field, fragments", [(r[1], r[2], r[3:]) for r in PRECISION_RULES],
                         ids=[r[0] for r in PRECISION_RULES])
def test_precision_rules(overrides, field, fragments):
    _check(_error(overrides), field, *fragments)


def test_check_precision_directly():
    """check_precision is callable on its own (the HLS generator re-checks a profile against a model)."""
    cfg = load_config(MICRO)
    check_precision(cfg.model, cfg.precision)
    bad = dataclasses.replace(cfg.precision, softmax_sum=FixedType.parse("ufixed<26,3>"))
    with pytest.raises(ConfigError) as e:
        check_precision(cfg.model, bad)
    _check(e.value, "precision.softmax_sum")
    # the full model needs more: 129 tokens do not fit ufixed<26,7> (max 128 - lsb), micro's 9 do
    seven = dataclasses.replace(cfg.precision, softmax_sum=FixedType.parse("ufixed<26,8>"))
    check_precision(cfg.model, seven)
    tiny = preset("m3vit-tiny-cityscapes")
    with pytest.raises(ConfigError):
        check_precision(tiny.model, dataclasses.replace(cfg.precision, softmax_sum=FixedType.parse("ufixed<26,7>")))
    check_precision(tiny.model, seven)


def test_boundaries_that_are_allowed():
    """Each rule's edge on the allowed side validates (the rules are not off by one)."""
    ok = [
        ["precision.accum=fixed<60,24>"],                        # 36 fraction bits: exactly enough
        ["precision.softmax_sum=ufixed<26,4>"],                  # max 16 - lsb >= 9 tokens
        ["precision.table_frac_bits=8", "precision.exp_table_bits=8", "precision.recip_table_bits=8",
         "precision.rsqrt_table_bits=7", "precision.exp=ufixed<16,1>", "precision.softmax_inv=ufixed<16,1>",
         "precision.ln_inv_std=ufixed<27,11>"],
        ["precision.table_frac_bits=30"],
        ["precision.pixel=ufixed<16,0,RND,SAT>"],
        ["precision.exp_table_bits=12", "precision.recip_table_bits=12", "precision.rsqrt_table_bits=12"],
        ["precision.gelu_step_log2=10", "precision.gelu_range=16"],
        ["precision.gelu_step_log2=0", "precision.gelu_range=1"],
        ["precision.exp=ufixed<28,1>"],                         # 27 fraction bits <= 20 + 8
        ["hardware.clock_mhz=800"],
        ["hardware.attn_parallel=9"],
        ["model.top_k=4"],
        ["model.moe_blocks=none"],
    ]
    for overrides in ok:
        load_config(MICRO, overrides)
    # the integer-bit hint is exact: with the 18 bits it asks for, qkv fits and a later product complains
    e = _error(["precision.accum=fixed<54,18>"])
    _check(e, "precision.accum", "integer bits")
    assert "qkv" not in str(e)


# --- presets, profiles, YAML, CLI ------------------------------------------------------------------------

@pytest.mark.parametrize("profile", sorted(PRECISION_PROFILES))
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_with_every_profile(name, profile):
    cfg = load_config(name, [f"precision.profile={profile}"])
    assert cfg.precision == precision_profile(profile)
    assert cfg.name == name
    assert cfg.model == preset(name).model
    check_precision(cfg.model, cfg.precision)


def test_tiny_preset_is_the_design_reference():
    m = preset("m3vit-tiny-cityscapes").model
    assert (m.num_tokens, m.embed_dim, m.depth, m.num_heads, m.head_dim, m.mlp_hidden) == (129, 192, 12, 3, 64, 768)
    assert m.moe_blocks == (1, 3, 5, 7, 9, 11) and (m.num_experts, m.top_k, m.expert_hidden) == (16, 2, 384)
    assert m.task_names == ("semseg", "depth")
    assert load_config().name == "m3vit-tiny-cityscapes"


def test_yaml_file(tmp_path):
    path = tmp_path / "my_accel.yaml"
    path.write_text(yaml.safe_dump({
        "preset": MICRO,
        "model": {"depth": 6, "moe_blocks": "odd", "tasks": {"semseg": 19}},
        "precision": {"base": "w16a16", "act": "fixed<16,5,RND,SAT>"},
        "hardware": {"clock_mhz": 250, "bundles": {b: f"gmem{i + 3}" for i, b in enumerate(BUFFERS)}},
    }))
    cfg = load_config(str(path))
    assert cfg.name == "my_accel"
    assert cfg.model.depth == 6 and cfg.model.moe_blocks == (1, 3, 5)
    assert cfg.model.embed_dim == 64                              # from the preset
    assert cfg.model.tasks == (TaskConfig("semseg", 19),)
    assert cfg.precision.act == FixedType(16, 5, True, "RND", "SAT")
    assert cfg.precision.weight == precision_profile("w16a16").weight
    assert cfg.precision.name == "w16a16+custom"
    assert cfg.hardware.clock_mhz == 250.0 and cfg.hardware.bundle_of[BUFFERS[0]] == "gmem3"
    # overrides apply on top of the file
    cfg2 = load_config(path, ["model.depth=8", "precision.qkv=fixed<16,5,RND,SAT>"])
    assert cfg2.model.depth == 8 and cfg2.model.moe_blocks == (1, 3, 5, 7)  # 'odd' resolves against the final depth
    assert cfg2.precision.qkv == FixedType(16, 5, True, "RND", "SAT") and cfg2.precision.act.int_bits == 5


def test_yaml_precision_by_name_then_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: m3vit-micro\nprecision: w8a16\n")
    cfg = load_config(path)
    assert cfg.precision == precision_profile("w8a16")
    cfg = load_config(path, ["precision.act=fixed<16,5,RND,SAT>"])
    assert cfg.precision.weight == precision_profile("w8a16").weight
    assert cfg.precision.act.int_bits == 5 and cfg.precision.name == "w8a16+custom"


@pytest.mark.parametrize("text, field, fragment", [
    ("preset: nope\n", "preset", ", ".join(PRESETS)),
    ("preset: m3vit-micro\nextras: 1\n", "config", "allowed: preset, name, model, precision, hardware"),
    ("- 1\n- 2\n", "config", "must hold a mapping"),
    ("model: [1, 2\n", "config", "not valid YAML"),
    ("preset: m3vit-micro\nmodel: 5\n", "model", "mapping of field: value"),
    ("preset: m3vit-micro\nprecision: w4a4\n", "precision", "w16a32, w16a16, w8a16"),
    ("preset: m3vit-micro\nprecision: {base: w4a4}\n", "precision", "w16a32"),
    ("preset: m3vit-micro\nmodel: {tasks: 5}\n", "model.tasks", "list of"),
    ("preset: m3vit-micro\nmodel: {tasks: [{name: a}]}\n", "model.tasks[0]", "name and out_channels"),
    ("preset: m3vit-micro\nmodel: {tasks: [{name: a, out_channels: 2, colour: red}]}\n", "model.tasks[0]",
     "unknown keys ['colour']"),
    ("preset: m3vit-micro\nmodel: {tasks: [{name: a, out_channels: two}]}\n", "model.tasks[0].out_channels",
     "type int"),
    ("preset: m3vit-micro\nmodel: {moe_blocks: sometimes}\n", "model.moe_blocks", "'odd', 'even', 'all', 'none'"),
    ("preset: m3vit-micro\nhardware: {bundles: 7}\n", "hardware.bundles", ", ".join(BUFFERS)),
])
def test_yaml_errors(tmp_path, text, field, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    _check(_error([], source=str(path)), field, fragment)


def test_missing_source():
    _check(_error([], source="no-such-preset-or-file.yaml"), "config", "neither a preset")


def test_cli_overrides():
    cfg = load_config(MICRO, ["model.depth=6", "model.moe_blocks=odd"])
    assert cfg.model.depth == 6 and cfg.model.moe_blocks == (1, 3, 5)
    cfg = load_config(MICRO, ["model.moe_blocks=even", "model.depth=6"])   # order of overrides does not matter
    assert cfg.model.moe_blocks == (0, 2, 4)
    assert load_config(MICRO, ["model.moe_blocks=all"]).model.moe_blocks == (0, 1, 2, 3)
    assert load_config(MICRO, ["model.moe_blocks=none"]).model.moe_blocks == ()
    assert load_config(MICRO, ["model.moe_blocks=3, 0"]).model.moe_blocks == (0, 3)
    assert load_config(MICRO, ["model.moe_blocks=[2]"]).model.moe_blocks == (2,)
    cfg = load_config(MICRO, ["precision.profile=w16a16", "precision.act=fixed<16,5,RND,SAT>",
                              "hardware.clock_mhz=200.5", "model.ln_eps=1e-5", "model.tasks={seg: 3, depth: 1}"])
    assert cfg.precision.act == FixedType(16, 5, True, "RND", "SAT")
    assert cfg.precision.name == "w16a16+custom" and cfg.precision.qkv == precision_profile("w16a16").qkv
    assert cfg.hardware.clock_mhz == 200.5 and cfg.model.ln_eps == 1e-5
    assert cfg.model.task_names == ("seg", "depth")
    # an override on a Config source
    base = load_config(MICRO)
    assert load_config(base, ["model.top_k=1"]).model.top_k == 1


def test_parse_override():
    assert parse_override("model.depth=4") == ("model", "depth", 4)
    assert parse_override("precision.act = fixed<16,5,RND,SAT>") == ("precision", "act", "fixed<16,5,RND,SAT>")
    assert parse_override("model.moe_blocks=[1, 3]") == ("model", "moe_blocks", [1, 3])


@pytest.mark.parametrize("override, field, fragment", [
    ("depth=4", "override", "section.field=value"),
    ("model.depth", "override", "section.field=value"),
    ("modl.depth=4", "override", "model, precision or hardware"),
])
def test_malformed_overrides(override, field, fragment):
    _check(_error([override]), field, fragment)


@pytest.mark.parametrize("override, field", [
    ("model.dept=4", "model.dept"),
    ("hardware.clock=300", "hardware.clock"),
    ("precision.activation=fixed<16,6>", "precision.activation"),
])
def test_unknown_field_lists_allowed_fields(override, field):
    e = _error([override])
    section = field.split(".")[0]
    cls = {"model": ModelConfig, "hardware": HardwareConfig, "precision": PrecisionProfile}[section]
    names = sorted(f.name for f in dataclasses.fields(cls))
    _check(e, field, "unknown field", ", ".join(names))


@pytest.mark.parametrize("override, field, fragment", [
    ("model.depth=abc", "model.depth", "type int"),
    ("model.depth=2.5", "model.depth", "type int"),
    ("model.depth=true", "model.depth", "type int"),
    ("model.depth=[4]", "model.depth", "type int"),
    ("model.mlp_ratio=four", "model.mlp_ratio", "type float"),
    ("hardware.clock_mhz=fast", "hardware.clock_mhz", "type float"),
    ("hardware.axi_width=wide", "hardware.axi_width", "type int"),
    ("precision.act=fixed<16>", "precision.act", "not a fixed-point type"),
    ("precision.act=fixed<0,0>", "precision.act", "bits = 0"),
    ("precision.act=fixed<16,6,ROUND,SAT>", "precision.act", "rounding = 'ROUND'"),
    ("precision.table_frac_bits=x", "precision.table_frac_bits", "type int"),
    ("precision.profile=w4a4", "precision", "w16a32"),
])
def test_bad_value_types_name_the_field(override, field, fragment):
    _check(_error([override]), field, fragment)


def test_integral_float_is_accepted_for_int():
    assert load_config(MICRO, ["model.depth=4.0"]).model.depth == 4


def test_bad_depth_after_named_moe_blocks_names_the_field():
    with pytest.raises(ConfigError) as e:
        load_config(MICRO, ["model.moe_blocks=odd", "model.depth=abc"])
    assert e.value.field == "model.depth"


def test_bool_is_not_a_float():
    _check(_error(["model.mlp_ratio=true"]), "model.mlp_ratio", "type float")


def test_fractional_moe_block_index_is_rejected():
    _check(_error(["model.moe_blocks=[1.5, 3.9]"]), "model.moe_blocks")


def test_task_index():
    m = load_config(MICRO).model
    assert m.task_index("depth") == 1 and m.task_index(0) == 0
    for bad in ("normals", 2, -1, True):
        with pytest.raises(ConfigError) as e:
            m.task_index(bad)
        _check(e.value, "task", "semseg, depth", "0..1")


# --- round trips -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    [],
    ["precision.profile=w8a16"],
    ["precision.profile=w16a16", "precision.act=fixed<16,5,RND,SAT>", "model.depth=6", "model.moe_blocks=odd",
     "model.tasks=[{name: seg, out_channels: 19}]", "hardware.board=u50", "hardware.clock_mhz=250.5",
     "model.ln_eps=1e-5", "model.moe_blocks=none"],
])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_round_trip(tmp_path, name, overrides):
    cfg = load_config(name, overrides)
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(str(path))
    assert again == cfg
    assert again.digest() == cfg.digest()
    assert again.to_yaml() == cfg.to_yaml()


def test_digest_tracks_content_not_name():
    a = load_config(MICRO)
    assert len(a.digest()) == 64 and int(a.digest(), 16) >= 0
    assert dataclasses.replace(a, name="other").digest() == a.digest()
    assert load_config(MICRO, ["hardware.clock_mhz=250"]).digest() != a.digest()
    assert load_config(MICRO, ["precision.act=fixed<32,10,RND,SAT>"]).digest() != a.digest()
    assert load_config(MICRO, ["model.tasks=[{name: depth, out_channels: 1}, {name: semseg, out_channels: 7}]"]
                       ).digest() != a.digest()


def test_config_constructor_validates():
    with pytest.raises(ConfigError) as e:
        Config(ModelConfig(top_k=17))
    _check(e.value, "model.top_k", "<= model.num_experts (16)")
    cfg = Config()
    assert cfg.precision.name == "w16a32"
    with pytest.raises(ConfigError) as e:
        cfg.replace(hardware=HardwareConfig(cu_in=7))
    _check(e.value, "hardware.cu_in")
    assert set(dict(HardwareConfig().bundles)) == set(BUFFERS)


# --- width rules found missing by review ---------------------------------------------------------------

def test_signed_exp_type_that_cannot_hold_one_is_rejected():
    _check(_error(["precision.exp=fixed<18,1,TRN,SAT>"]), "precision.exp", "must hold 1.0")


def test_gate_logit_too_wide_for_the_exp_unit_is_rejected():
    _check(_error(["precision.gate_logit=fixed<48,8,TRN,SAT>"]), "precision.gate_logit", "exp unit")


# --- names: what reaches generated code and file names ---------------------------------------------------

BAD_CONFIG_NAMES = ["x\n#include <cstdlib>\nstatic int pwn = std::system(\"id\");\n//", "$(shell id)", "../../escape",
                    "a/b", "", "1abc", "a b", "-a", ".hidden", "a" * 65, "naïve", "x\u2028y"]


@pytest.mark.parametrize("name", BAD_CONFIG_NAMES)
def test_config_names_are_identifier_like(tmp_path, name):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"preset": MICRO, "name": name}))
    _check(_error([], source=str(path)), "name", "letters", "64")
    with pytest.raises(ConfigError) as e:
        Config(name=name)
    _check(e.value, "name")
    with pytest.raises(ConfigError):
        dataclasses.replace(load_config(MICRO), name=name)


@pytest.mark.parametrize("name", ["a", "m3vit-micro", "A.b_c-1", "a" * 64])
def test_good_config_names(tmp_path, name):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"preset": MICRO, "name": name}))
    assert load_config(str(path)).name == name


def test_a_file_stem_that_is_no_name_says_how_to_name_the_config(tmp_path):
    path = tmp_path / "my config (2).yaml"
    path.write_text("preset: m3vit-micro\n")
    _check(_error([], source=str(path)), "name", "'my config (2)'", "set name:")
    path.write_text("preset: m3vit-micro\nname: mine\n")
    assert load_config(str(path)).name == "mine"


@pytest.mark.parametrize("override, field", [
    ("precision.name=a;b", "precision.name"),
    ("precision.name=" + "p" * 65, "precision.name"),
    ("model.tasks=[{name: ſemseg, out_channels: 3}]", "model.tasks[0].name"),   # a Python identifier, not ASCII
    ("model.tasks=[{name: " + "t" * 65 + ", out_channels: 3}]", "model.tasks[0].name"),
    (_bundles_override(BUFFERS, last="gmém"), f"hardware.bundles.{BUFFERS[-1]}"),
    (_bundles_override(BUFFERS, last="g" * 65), f"hardware.bundles.{BUFFERS[-1]}"),
])
def test_other_names_are_bounded_ascii(override, field):
    _check(_error([override]), field, "64")


# --- YAML files that are not configs -------------------------------------------------------------------------

@pytest.mark.parametrize("content, field, fragment", [
    (b"preset: m3vit-micro\nname: caf\xe9\n", "config", "not UTF-8"),
    (b"", "config", "is empty"),
    (b"# only a comment\n", "config", "is empty"),
    (b"preset: [m3vit-micro, m3vit-tiny-cityscapes]\n", "preset", ", ".join(PRESETS)),
    (b"preset: {a: 1}\n", "preset", ", ".join(PRESETS)),
    (b"preset: m3vit-micro\nprecision: 5\n", "precision", "profile name"),
    (b"preset: m3vit-micro\nprecision: [w16a16]\n", "precision", "profile name"),
    (b"preset: m3vit-micro\nprecision: {base: [w16a16]}\n", "precision", "w16a32, w16a16, w8a16"),
    (b"preset: m3vit-micro\n1: 2\nextra: 3\n", "config", "unknown top-level keys"),
    (b"preset: m3vit-micro\nmodel: {tasks: [{name: a, out_channels: 1, 5: x, y: z}]}\n", "model.tasks[0]",
     "unknown keys"),
])
def test_yaml_files_that_are_not_configs(tmp_path, content, field, fragment):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    e = _error([], source=str(path))
    _check(e, field, fragment)
    assert "\n" not in str(e)


def test_profile_override_that_is_not_a_name():
    _check(_error(["precision.profile=[w16a16]"]), "precision", "profile name")


# --- sizes: bounded, so that a typo cannot exhaust memory ------------------------------------------------------

SIZE_RULES = [
    (["model.depth=100000"], "model.depth", "<= 128"),
    (["model.depth=1000000000000", "model.moe_blocks=all"], "model.depth", "<= 128"),
    (["model.num_experts=100000"], "model.num_experts", "<= 1024"),
    (["model.embed_dim=1048576", "model.num_heads=1"], "model.embed_dim", "<= 8192"),
    (["model.num_heads=1048576"], "model.num_heads", "<= 128"),
    (["model.img_height=1048576"], "model.img_height", "<= 8192"),
    (["model.img_width=1048576"], "model.img_width", "<= 8192"),
    (["model.in_chans=100000"], "model.in_chans", "<= 64"),
    (["model.patch_size=1048576"], "model.patch_size", "<= 128"),
    (["model.expert_hidden=1048576"], "model.expert_hidden", "<= 65536"),
    (["model.head_channels=1048576"], "model.head_channels", "<= 4096"),
    (["model.mlp_ratio=100000"], "model.mlp_ratio", "65536"),
    (["model.tasks={" + ", ".join(f"t{i}: 1" for i in range(300)) + "}"], "model.tasks", "at most 256"),
    (["model.tasks=[{name: a, out_channels: 1000000}]"], "model.tasks[0].out_channels", "<= 4096"),
    (["model.img_height=8192", "model.img_width=8192", "hardware.attn_parallel=1"], "model.img_height",
     "tokens"),
    (["model.img_height=1024", "model.img_width=2048", "model.num_heads=64", "model.embed_dim=512"],
     "model.num_heads", "num_heads x tokens^2"),
    (["model.embed_dim=8192", "model.num_heads=64", "model.num_experts=1024", "model.expert_hidden=65536"],
     "model", "2**31"),
]


@pytest.mark.parametrize("overrides, field, fragment", SIZE_RULES, ids=[r[1] for r in SIZE_RULES])
def test_sizes_are_bounded(overrides, field, fragment):
    _check(_error(overrides), field, fragment)


def test_large_real_models_are_within_the_bounds():
    # M3ViT on ViT-B/16 at 512x1024 (half Cityscapes), 16 experts in every other block; 19 classes + depth
    cfg = load_config(MICRO, ["model.img_height=512", "model.img_width=1024", "model.embed_dim=768",
                              "model.num_heads=12", "model.depth=12", "model.moe_blocks=odd", "model.num_experts=16",
                              "model.expert_hidden=1536", "model.tasks={semseg: 19, depth: 1}",
                              "model.head_channels=256", "precision.softmax_sum=ufixed<32,12,RND,SAT>"])
    assert cfg.model.num_tokens == 2049
    # the largest sizes one at a time
    load_config(MICRO, ["model.depth=128", "model.moe_blocks=all", "model.num_experts=512", "model.top_k=8"])
    load_config(MICRO, ["model.img_height=1024", "model.img_width=2048", "hardware.attn_parallel=1",
                        "precision.softmax_sum=ufixed<32,14,RND,SAT>"])


# --- the profile's name follows the profile ---------------------------------------------------------------------

def test_a_builtin_profile_name_on_other_arithmetic_is_refused(tmp_path):
    _check(_error(["precision.name=w8a16"]), "precision.name", "precision.profile=w8a16", "weight")
    path = tmp_path / "c.yaml"
    path.write_text("preset: m3vit-micro\nprecision: {base: w16a16, name: w8a16}\n")
    _check(_error([], source=str(path)), "precision.name", "precision.profile=w8a16")
    # the name of the profile the fields are is fine; so is a name of one's own
    assert load_config(MICRO, ["precision.name=w16a32"]).precision == precision_profile("w16a32")
    assert load_config(MICRO, ["precision.profile=w8a16", "precision.name=w8a16"]).precision == \
        precision_profile("w8a16")
    mine = load_config(MICRO, ["precision.act=fixed<32,11,TRN,SAT>", "precision.name=mine"]).precision
    assert mine.name == "mine" and mine.act.int_bits == 11


def test_field_docs_list_the_profile_switch():
    from edgemoe.cli.golden import field_docs

    docs = field_docs()
    section = docs.split("[precision]")[1].split("[hardware]")[0]
    line = next(ln for ln in section.splitlines() if ln.split()[:1] == ["profile"])
    for name in PRECISION_PROFILES:
        assert name in line
