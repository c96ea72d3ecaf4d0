"""Width rules: which precision profiles the numerics spec can run exactly.

Each rule follows from an operation in this package (named in the message);
:func:`check_precision` raises :class:`~edgemoe.config.ConfigError` naming the
``precision.<field>`` to widen.
"""
from __future__ import annotations

import math

from edgemoe.errors import ConfigError

from .fixed import FixedType
from .tables import gelu_table_peak

#: int64 products and sums in the golden model keep one bit of headroom.
INT64_BUDGET = 62


def _mag(t: FixedType) -> int:
    """Largest magnitude of a raw word of ``t``."""
    return max(abs(t.min_raw), t.max_raw)


def _error(field: str, value, allowed: str):
    return ConfigError(f"precision.{field}", str(value) if isinstance(value, FixedType) else value, allowed)


def matmuls(model, p) -> dict[str, tuple[FixedType, FixedType, int, FixedType | None]]:
    """Every product the compute unit accumulates: name -> (a type, b type, K terms, bias type)."""
    out = {
        "patch_embed": (p.pixel, p.patch_weight, model.patch_dim, p.bias),
        "qkv": (p.act, p.weight, model.embed_dim, p.attn_bias),
        "qk^T": (p.qkv, p.qkv, model.head_dim, None),
        "a*v": (p.attn_prob, p.qkv, model.num_tokens, None),
        "proj": (p.act, p.weight, model.embed_dim, p.attn_bias),
        "fc1": (p.act, p.weight, model.embed_dim, p.bias),
        "fc2": (p.act, p.weight, model.mlp_hidden, p.bias),
    }
    if model.moe_blocks:
        out.update({
            "gate": (p.act, p.weight, model.embed_dim, None),
            "expert_fc1": (p.act, p.weight, model.embed_dim, p.bias),
            "expert_fc2": (p.act, p.weight, model.expert_hidden, p.bias),
        })
    return out


def accumulator_bound(a: FixedType, b: FixedType, k: int, bias: FixedType | None, acc_frac: int) -> int:
    """Largest |sum of k products + bias| as a raw word with ``acc_frac`` fraction bits."""
    bound = k * _mag(a) * _mag(b) << (acc_frac - a.frac_bits - b.frac_bits)
    if bias is not None:
        bound += _mag(bias) << (acc_frac - bias.frac_bits)
    return bound


def exact_accumulator(model, p) -> FixedType:
    """The narrowest accumulator (``p.accum``'s modes) that holds every product sum of :func:`matmuls` exactly."""
    frac = 0
    for a, b, _k, bias in matmuls(model, p).values():
        frac = max(frac, a.frac_bits + b.frac_bits, bias.frac_bits if bias else 0)
    bound = max(accumulator_bound(a, b, k, bias, frac) for a, b, k, bias in matmuls(model, p).values())
    bits = bound.bit_length() + 1  # sign
    return FixedType(bits, bits - frac, True, p.accum.rounding, p.accum.overflow)


def check_precision(model, p) -> None:
    """Raise ConfigError if ``p`` cannot run ``model`` exactly or a table does not fit."""
    acc = p.accum
    if p.pixel.signed or p.pixel.int_bits != 0 or p.pixel.bits > 16:
        raise _error("pixel", p.pixel, "must be ufixed<b,0> with b <= 16 (pixel words are b-bit codes)")
    if not acc.signed:
        raise _error("accum", acc, "must be signed")
    for name, (a, b, k, bias) in matmuls(model, p).items():
        frac = a.frac_bits + b.frac_bits
        need_frac = max(frac, bias.frac_bits if bias else frac)
        if need_frac > acc.frac_bits:
            raise _error("accum", acc, f"needs >= {need_frac} fraction bits to hold the {name} products exactly "
                                      f"({a} x {b}{' + ' + str(bias) if bias else ''})")
        bound = accumulator_bound(a, b, k, bias, acc.frac_bits)
        if bound > acc.max_raw:
            need_int = acc.int_bits + (bound.bit_length() - (acc.bits - 1))
            raise _error("accum", acc, f"needs >= {need_int} integer bits for {k} {name} products "
                                      f"of {a} x {b} without overflow")
    for field in ("exp", "softmax_inv", "attn_prob", "gate_score"):
        t = getattr(p, field)
        if t.max_value < 1.0:
            raise _error(field, t, "must hold 1.0 (>= 1 integer bit unsigned, >= 2 signed)")
    if p.softmax_sum.max_value < model.num_tokens:
        raise _error("softmax_sum", p.softmax_sum, f"must hold a sum of {model.num_tokens} exps "
                                                   f"(>= {math.ceil(math.log2(model.num_tokens + 1))} integer bits)")
    for field in ("weight", "patch_weight", "act", "qkv", "attn_score", "gate_logit", "ln_norm", "ln_centered"):
        if not getattr(p, field).signed:
            raise _error(field, getattr(p, field), "must be signed")
    # tables
    if not 8 <= p.table_frac_bits <= 30:
        raise _error("table_frac_bits", p.table_frac_bits, "must be in 8..30")
    for field in ("exp_table_bits", "recip_table_bits", "rsqrt_table_bits"):
        bits = getattr(p, field)
        if not 1 <= bits <= min(12, p.table_frac_bits):
            raise _error(field, bits, f"must be in 1..{min(12, p.table_frac_bits)} (<= table_frac_bits)")
    for field in ("exp", "softmax_inv", "ln_inv_std"):
        if getattr(p, field).frac_bits > p.table_frac_bits + 8:
            raise _error("table_frac_bits", p.table_frac_bits,
                         f"must be >= precision.{field} fraction bits - 8 ({getattr(p, field).frac_bits - 8})")
    peak = gelu_table_peak()
    if p.gelu_table.max_value < peak:
        raise _error("gelu_table", p.gelu_table, f"too narrow for its table: must hold d(t) up to {peak:.4f}")
    if p.gelu_table.signed:
        raise _error("gelu_table", p.gelu_table, "must be unsigned (d(t) >= 0)")
    if not 0 <= p.gelu_step_log2 <= 10:
        raise _error("gelu_step_log2", p.gelu_step_log2, "must be in 0..10")
    if p.act.frac_bits < p.gelu_step_log2:
        raise _error("act", p.act, f"needs >= {p.gelu_step_log2} fraction bits to index the GELU table "
                                   f"(step 2**-{p.gelu_step_log2})")
    if not 1.0 <= p.gelu_range <= 16.0:
        raise _error("gelu_range", p.gelu_range, "must be in [1, 16]")
    # LayerNorm
    cf = p.ln_centered.frac_bits
    if round(model.ln_eps * 2 ** (2 * cf)) < 1:
        raise _error("ln_centered", p.ln_centered,
                     f"needs more fraction bits: model.ln_eps = {model.ln_eps} rounds to 0 at 2 * {cf} variance bits")
    var_bits = 2 * (p.ln_centered.bits - 1) + math.ceil(math.log2(model.embed_dim))
    if var_bits > INT64_BUDGET:
        raise _error("ln_centered", p.ln_centered, f"too wide: the variance sum needs {var_bits} bits (> {INT64_BUDGET})")
    if p.ln_inv_std.max_value < 1 / math.sqrt(model.ln_eps + 2.0 ** (-2 * cf)) * 0.999:
        raise _error("ln_inv_std", p.ln_inv_std, f"must hold 1/sqrt(eps) = {1 / math.sqrt(model.ln_eps):.1f}")
    for a, b, what in ((p.ln_centered, p.ln_inv_std, "ln_inv_std"), (p.ln_norm, p.ln_gamma, "ln_norm"),
                       (p.softmax_sum, p.exp, "softmax_sum"), (p.exp, p.softmax_inv, "softmax_inv"),
                       (p.act, p.gate_score, "gate_score")):
        if a.bits + b.bits > INT64_BUDGET:
            raise _error(what, getattr(p, what), f"too wide: {a} x {b} exceeds {INT64_BUDGET} bits")
    for field in ("attn_score", "gate_logit"):  # both feed the exp unit: x * log2(e) in int64
        if getattr(p, field).bits + 1 + p.table_frac_bits + 2 > INT64_BUDGET:
            raise _error(field, getattr(p, field), "too wide for the exp unit's int64 scaling")
