"""The bit-accurate model: structure, exactness properties, routing edge cases, accuracy."""
from __future__ import annotations

import pytest
import torch

from edgemoe.golden.attention import attention, attention_scale, key_order
from edgemoe.golden.fixed_model import FixedM3ViT, pixel_codes, tap_schedule, tap_type
from edgemoe.golden.float_model import M3ViT
from edgemoe.golden.moe import moe, route
from edgemoe.golden.numerics.fixed import from_float
from edgemoe.golden.numerics.overflow import OverflowCounter
from edgemoe.golden.numerics.softmax import online_finish, online_init, online_softmax_state, online_step
from edgemoe.golden.report import compare
from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict
from edgemoe.golden.weights import TENSOR_CLASSES, quantize_weights, tensor_class
from edgemoe.loading import load_config


@pytest.fixture(scope="module")
def micro():
    cfg = load_config("m3vit-micro")
    sd = synthetic_state_dict(cfg.model, seed=1)
    return cfg, sd, FixedM3ViT(cfg, sd), synthetic_images(cfg.model, 3, seed=1)


def test_taps_follow_the_schedule_and_types(micro):
    cfg, _, fixed, images = micro
    result = fixed.forward(images, "semseg")
    assert list(result.taps) == tap_schedule(cfg.model)
    m = cfg.model
    for name, raw in result.taps.items():
        assert raw.dtype == torch.int64, name
        t = tap_type(name, cfg.precision)
        if t is not None:
            assert int(raw.min()) >= t.min_raw and int(raw.max()) <= t.max_raw, name
    assert result.taps["blocks.1.scores"].shape == (3, m.num_heads, m.num_tokens, m.num_tokens)
    assert result.taps["blocks.1.expert_counts"].sum(-1).tolist() == [m.num_tokens * m.top_k] * 3
    assert torch.equal(result.taps[f"blocks.{m.depth - 1}.out"], result.tokens)


def test_forward_is_deterministic_and_batch_independent(micro):
    _, _, fixed, images = micro
    whole = fixed.forward(images, "depth").tokens
    one = fixed.forward(images[1:2], "depth").tokens
    assert torch.equal(whole[1:2], one)
    assert torch.equal(whole, fixed.forward(images, "depth").tokens)


def test_tasks_use_their_own_gates(micro):
    _, _, fixed, images = micro
    a = fixed.forward(images, 0)
    b = fixed.forward(images, 1)
    assert torch.equal(a.taps["blocks.0.out"], b.taps["blocks.0.out"])  # dense block: task-free
    assert not torch.equal(a.taps["blocks.1.gate_logits"], b.taps["blocks.1.gate_logits"])


def test_vectorised_online_softmax_equals_the_step_spec(micro):
    cfg, *_ = micro
    p = cfg.precision
    g = torch.Generator().manual_seed(3)
    scores = from_float(torch.randn(2, 3, 17, 17, generator=g, dtype=torch.float64) * 4, p.attn_score)
    order = key_order(17, 4)
    m_fast, inv_fast = online_softmax_state(scores, order, p)
    m, l = online_init(scores.shape[:-1], p)
    ordered = torch.gather(scores, -1, order.expand(scores.shape))
    for t in range(17):
        m, l = online_step(m, l, ordered[..., t], p)
    assert torch.equal(m, m_fast)
    assert torch.equal(online_finish(l, p), inv_fast)


@pytest.mark.parametrize("parallel", [1, 2, 4, 7])
def test_key_order_is_the_staggered_schedule(parallel):
    n = 13
    order = key_order(n, parallel)
    for i in range(n):
        assert sorted(order[i].tolist()) == list(range(n))       # every key exactly once
        start = i % parallel
        assert order[i, 0] == start                              # slot o starts at key o
        assert order[i].tolist() == list(range(start, n)) + list(range(start))


def test_attention_order_only_moves_softmax_rounding(micro):
    """Different P visit keys in different orders: results differ by a few LSBs at most."""
    cfg, _, fixed, images = micro
    qkv = fixed.forward(images, 0).taps["blocks.0.qkv"]
    p = cfg.precision
    outs = [attention(qkv, cfg.model.num_heads, par, p) for par in (1, 2, 3)]
    # only the running sum's rounding differs: each probability moves by a few
    # of its LSBs, so the output moves by at most that times sum_j |v_j|
    d = cfg.model.embed_dim
    v_abs_sum = (qkv[..., 2 * d:].abs().sum(dim=1).max().item()) * 2.0 ** -p.qkv.frac_bits
    bound = 4 * 2.0 ** -p.attn_prob.frac_bits * v_abs_sum + p.act.lsb
    for o in outs[1:]:
        diff = (o - outs[0]).abs().max().item() * p.act.lsb
        assert 0 < diff <= bound


def test_attention_scale_split():
    assert attention_scale(64) == (3, 1.0)
    assert attention_scale(16) == (2, 1.0)
    shift, fold = attention_scale(32)
    assert 1.0 <= fold < 2.0 and abs(2.0 ** -shift * fold - 32 ** -0.5) < 1e-12


def _route_inputs(cfg, w_gate_f):
    p = cfg.precision
    g = torch.Generator().manual_seed(5)
    x = from_float(torch.randn(2, cfg.model.num_tokens, cfg.model.embed_dim, generator=g, dtype=torch.float64), p.act)
    return x, from_float(w_gate_f, p.weight)


def _experts(cfg, seed=0):
    sd = synthetic_state_dict(cfg.model, seed=seed)
    w = quantize_weights(cfg, sd)
    key = "backbone.blocks.1.mlp.experts."
    return [w.raw(key + f"{n}.{s}") for n in ("htoh4", "h4toh") for s in ("weight", "bias")]


def test_routing_all_tokens_to_one_expert(micro):
    cfg, *_ = micro
    m = cfg.model
    w_gate = torch.zeros(m.embed_dim, m.num_experts, dtype=torch.float64)
    x, wq = _route_inputs(cfg, w_gate)
    # every token: logit of expert 2 is the largest by far, the rest tie at 0
    x = x.abs() + 1
    wq[:, 2] = from_float(torch.tensor(1.0), cfg.precision.weight)
    r = route(x, wq, m.top_k, cfg.precision)
    counts = r.counts(m.num_experts)
    assert (counts[:, 2] == m.num_tokens).all()
    # the tied rest: the lower index wins the second place
    assert (r.experts[..., 0] == 2).all() and (r.experts[..., 1] == 0).all()
    out = moe(x, r, *_experts(cfg), cfg.precision)
    assert out.shape == x.shape


def test_routing_idle_experts_and_ties(micro):
    cfg, *_ = micro
    m = cfg.model
    x, wq = _route_inputs(cfg, torch.zeros(m.embed_dim, m.num_experts, dtype=torch.float64))
    r = route(x, wq, m.top_k, cfg.precision)  # all logits tie at exactly 0
    assert (r.experts == torch.arange(m.top_k)).all()
    counts = r.counts(m.num_experts)
    assert (counts[:, m.top_k:] == 0).all()
    # equal softmax scores for all experts; the chosen ones carry them
    assert (r.weights == r.scores[..., :1]).all()
    out = moe(x, r, *_experts(cfg), cfg.precision)
    # an idle expert's weights do not matter
    w = _experts(cfg)
    w[0] = w[0].clone()
    w[0][m.num_experts - 1] = 12345
    assert torch.equal(out, moe(x, r, *w, cfg.precision))


def test_moe_is_independent_of_expert_order(micro):
    """Relabelling experts (weights and gate columns permuted) gives the same words."""
    cfg, *_ = micro
    m = cfg.model
    g = torch.Generator().manual_seed(9)
    x, wq = _route_inputs(cfg, torch.randn(m.embed_dim, m.num_experts, generator=g, dtype=torch.float64) * 0.2)
    w = _experts(cfg)
    r = route(x, wq, m.top_k, cfg.precision)
    base = moe(x, r, *w, cfg.precision)
    perm = torch.randperm(m.num_experts, generator=g)
    r2 = route(x, wq[:, perm], m.top_k, cfg.precision)
    assert torch.equal(base, moe(x, r2, *(t[perm] for t in w), cfg.precision))


def test_weight_classes_cover_the_backbone(micro):
    cfg, sd, fixed, _ = micro
    for key in sd:
        cls = tensor_class(key)
        assert (cls is None) == key.startswith("decoders."), key
    assert set(fixed.weights) == {k for k in sd if k.startswith("backbone.")}
    assert len({c for _, c in TENSOR_CLASSES}) == 7


def test_query_fold_for_non_power_of_four_head_dims():
    cfg = load_config("m3vit-micro", ["model.num_heads=2"])  # head_dim 32: 1/sqrt(32) = 2**-3 * 1.414
    sd = synthetic_state_dict(cfg.model, seed=2)
    fixed = FixedM3ViT(cfg, sd)
    float_model = M3ViT.from_state_dict(cfg.model, sd)
    report = compare(fixed, float_model, synthetic_images(cfg.model, 2, seed=2), "semseg")
    cos = {r.name: r.cosine for r in report.taps}
    assert cos["blocks.0.qkv"] > 0.9999 and cos["blocks.0.attn"] > 0.9999
    assert report.output.cosine > 0.999


def test_pixel_codes():
    t = load_config("m3vit-micro").precision.pixel
    img = torch.tensor([[0.0, 1.0, 0.5, 1 / 255]]).reshape(1, 1, 1, 4)
    assert pixel_codes(img, t).flatten().tolist() == [0, 255, 128, 1]
    codes = torch.tensor([0, 17, 255], dtype=torch.uint8)
    assert pixel_codes(codes, t).tolist() == [0, 17, 255]
    with pytest.raises(ValueError, match="0..255"):
        pixel_codes(torch.tensor([256]), t)


def test_image_shape_is_checked(micro):
    _, _, fixed, _ = micro
    with pytest.raises(ValueError, match=r"expected shape \[B, 3, 32, 64\]"):
        fixed.forward(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("profile,bound", [("w16a32", 0.999), ("w16a16", 0.99)])
def test_micro_fixed_point_tracks_float(profile, bound):
    cfg = load_config("m3vit-micro", [f"precision.profile={profile}"])
    sd = synthetic_state_dict(cfg.model, seed=0)
    fixed, float_model = FixedM3ViT(cfg, sd), M3ViT.from_state_dict(cfg.model, sd)
    for task in cfg.model.task_names:
        report = compare(fixed, float_model, synthetic_images(cfg.model, 2, seed=0), task)
        assert report.output.cosine > bound, (task, report.output)
        cos = {r.name: r.cosine for r in report.taps}
        assert cos["patch_embed"] > 0.9999


def test_tiny_preset_w16a32_meets_cosine_0999():
    cfg = load_config("m3vit-tiny-cityscapes")
    sd = synthetic_state_dict(cfg.model, seed=0)
    fixed, float_model = FixedM3ViT(cfg, sd), M3ViT.from_state_dict(cfg.model, sd)
    images = synthetic_images(cfg.model, 1, seed=0)
    for task in cfg.model.task_names:
        report = compare(fixed, float_model, images, task)
        assert report.output.cosine >= 0.999, report.output
        assert not report.overflow.offenders()


def test_narrow_profile_overflows_are_counted(micro):
    cfg = load_config("m3vit-micro", ["precision.profile=w16a16", "precision.act=fixed<12,2,RND,SAT>"])
    _, sd, _, images = micro
    with OverflowCounter() as ovf:
        FixedM3ViT(cfg, sd).forward(images, 0)
    bad = ovf.offenders()
    assert bad and all(s.overflows <= s.total for s in bad.values())
    assert any(k.endswith("norm1") or k.endswith("out") or k.endswith("fc1") for k in bad)
    assert "blocks.0.norm1" in ovf.table()
