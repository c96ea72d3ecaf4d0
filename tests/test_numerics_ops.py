"""The numerics spec's operations: exact matmul, linear, exp / reciprocal / rsqrt / GELU,
online and gate softmax, top-k, LayerNorm.

Error bounds come from :func:`edgemoe.golden.numerics.accuracy.measure_errors`
(measured at n = 100 000, seed 0, then given a modest margin) and are shown to
be tight: perturbing a table or a constant in the spec breaks them.
"""
from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
import torch

import edgemoe.golden.numerics.approx as approx
from edgemoe.config import precision_profile
from edgemoe.golden.numerics.accuracy import FUNCTIONS, REL_FLOOR_LSBS, ErrorRow, format_table, measure_errors
from edgemoe.golden.numerics.approx import gelu, msb_index, rsqrt
from edgemoe.golden.numerics.fixed import FixedType, from_float, quantize, to_float
from edgemoe.golden.numerics.layernorm import layernorm
from edgemoe.golden.numerics.matmul import exact_matmul, linear, word_bits
from edgemoe.golden.numerics.overflow import OverflowCounter
from edgemoe.golden.numerics.softmax import (
    exp_of, gate_softmax, normalise, online_finish, online_init, online_softmax_state, online_step, recip_of)
from edgemoe.golden.numerics.topk import topk

PROFILES = ["w16a32", "w16a16"]


@pytest.fixture(scope="module", params=PROFILES)
def p(request):
    return precision_profile(request.param)


# --- exact matmul ----------------------------------------------------------------------------------

def _rand_words(gen: torch.Generator, bits: int, shape) -> torch.Tensor:
    """Signed words of ``bits`` bits, with the extremes mixed in."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = torch.randint(lo, hi + 1, shape, generator=gen, dtype=torch.int64)
    flat = x.view(-1)
    flat[::7] = hi
    flat[3::11] = lo
    return x


def _ref_matmul(a: torch.Tensor, b: torch.Tensor) -> list:
    """a @ b in Python integers (2-D)."""
    al, bl = a.tolist(), b.T.tolist()
    return [[sum(x * y for x, y in zip(row, col)) for col in bl] for row in al]


@pytest.mark.parametrize("a_bits, b_bits, m, k, n", [
    (16, 16, 5, 64, 3),     # direct float64 path
    (24, 24, 4, 32, 3),     # 48 bits + 5: the largest direct case
    (24, 24, 4, 33, 3),     # one term more: split
    (32, 16, 3, 4096, 2),   # split path, long K
    (16, 32, 3, 4096, 2),
    (24, 24, 2, 4096, 2),
    (40, 20, 3, 256, 2),
    (17, 17, 3, 1000, 3),   # just past one chunk
    (8, 40, 2, 2048, 2),
])
def test_exact_matmul_matches_integer_reference(a_bits, b_bits, m, k, n):
    gen = torch.Generator().manual_seed(a_bits * 1000 + b_bits + k)
    a = _rand_words(gen, a_bits, (m, k))
    b = _rand_words(gen, b_bits, (k, n))
    want = _ref_matmul(a, b)
    assert all(abs(v) < 2 ** 63 for row in want for v in row)
    assert exact_matmul(a, b).tolist() == want


def test_exact_matmul_worst_case_magnitudes():
    """Every product at its largest: the sum needs 58 bits, float64 alone would round it."""
    k = 4096
    a = torch.full((2, k), -(1 << 31), dtype=torch.int64)
    b = torch.full((k, 2), -(1 << 15), dtype=torch.int64)
    b[0, 1] = (1 << 15) - 1
    a[1, 5] = (1 << 31) - 1
    want = _ref_matmul(a, b)
    assert exact_matmul(a, b).tolist() == want


def test_split_path_is_needed():
    """Non-tautology check: for these widths plain float64 matmul is not exact."""
    gen = torch.Generator().manual_seed(3)
    a = _rand_words(gen, 32, (4, 4096))
    b = _rand_words(gen, 16, (4096, 3))
    want = _ref_matmul(a, b)
    naive = torch.matmul(a.double(), b.double()).to(torch.int64).tolist()
    assert naive != want
    assert exact_matmul(a, b).tolist() == want


def test_exact_matmul_batched():
    gen = torch.Generator().manual_seed(4)
    a = _rand_words(gen, 30, (2, 3, 4, 200))
    b = _rand_words(gen, 18, (200, 5))
    out = exact_matmul(a, b)
    assert out.shape == (2, 3, 4, 5)
    for i in range(2):
        for j in range(3):
            assert out[i, j].tolist() == _ref_matmul(a[i, j], b)
    bb = _rand_words(gen, 18, (2, 1, 200, 5))   # batched on both sides (broadcast)
    out2 = exact_matmul(a, bb)
    assert out2.shape == (2, 3, 4, 5)
    assert out2[1, 2].tolist() == _ref_matmul(a[1, 2], bb[1, 0])


def test_accumulation_order_does_not_matter():
    gen = torch.Generator().manual_seed(5)
    a = _rand_words(gen, 32, (3, 1024))
    b = _rand_words(gen, 16, (1024, 4))
    perm = torch.randperm(1024, generator=gen)
    assert torch.equal(exact_matmul(a[:, perm], b[perm]), exact_matmul(a, b))


def test_word_bits():
    """Enough bits for every element (this picks the exact path); tight when the max is >= 0."""
    assert word_bits(torch.tensor([0])) == 1
    assert word_bits(torch.tensor([1])) == 2
    assert word_bits(torch.tensor([-128, 127])) == 8
    assert word_bits(torch.tensor([-129, 0])) == 9
    assert word_bits(torch.tensor([-128, 128])) == 9
    assert word_bits(torch.tensor([], dtype=torch.int64)) == 1
    rng = random.Random(8)
    for _ in range(300):
        vals = [rng.randint(-(1 << 40), 1 << 40) >> rng.randint(0, 40) for _ in range(5)]
        wb = word_bits(torch.tensor(vals))
        assert all(-(1 << (wb - 1)) <= v < (1 << (wb - 1)) for v in vals)
        assert wb <= max(v.bit_length() for v in vals) + 2


# --- linear, against a hand computation in exact rationals ---------------------------------------

def _ref_cast(q: Fraction, t: FixedType) -> int:
    """ap_fixed assignment of the exact rational ``q`` to ``t`` (written from UG1399's rules)."""
    s = q * Fraction(2) ** t.frac_bits
    fl = math.floor(s)
    rem = s - fl
    half = Fraction(1, 2)
    r = t.rounding
    if r == "TRN":
        v = fl
    elif r == "TRN_ZERO":
        v = fl if s >= 0 or rem == 0 else fl + 1
    elif rem != half:
        v = fl + (rem > half)
    else:
        v = {"RND": fl + 1, "RND_ZERO": fl + (s < 0), "RND_MIN_INF": fl, "RND_INF": fl + (s > 0),
             "RND_CONV": fl + (fl % 2)}[r]
    if t.overflow == "SAT":
        return min(max(v, t.min_raw), t.max_raw)
    v %= 1 << t.bits
    return v - (1 << t.bits) if t.signed and v >> (t.bits - 1) else v


@pytest.mark.parametrize("b_type", ["fixed<8,1,RND,SAT>", "fixed<16,4,RND,SAT>", None])
@pytest.mark.parametrize("out", ["fixed<10,4,RND_CONV,SAT>", "fixed<10,3,TRN,WRAP>", "ufixed<9,3,RND_INF,SAT>"])
def test_linear_against_hand_computation(b_type, out):
    x_t, w_t = FixedType.parse("fixed<10,6>"), FixedType.parse("fixed<8,4>")   # 4 + 4 = 8 product frac bits
    b_t = FixedType.parse(b_type) if b_type else None       # 7 (aligned up) or 12 (accumulator widened)
    o_t = FixedType.parse(out)
    gen = torch.Generator().manual_seed(len(out) + (len(b_type) if b_type else 0))
    x = torch.randint(x_t.min_raw, x_t.max_raw + 1, (6, 5), generator=gen)
    w = torch.randint(w_t.min_raw, w_t.max_raw + 1, (4, 5), generator=gen)
    b = torch.randint(b_t.min_raw, b_t.max_raw + 1, (4,), generator=gen) if b_t else None
    got = linear(x, x_t, w, w_t, b, b_t, o_t)
    for i in range(6):
        for j in range(4):
            q = sum(Fraction(int(x[i, kk]), 2 ** x_t.frac_bits) * Fraction(int(w[j, kk]), 2 ** w_t.frac_bits)
                    for kk in range(5))
            if b_t:
                q += Fraction(int(b[j]), 2 ** b_t.frac_bits)
            assert int(got[i, j]) == _ref_cast(q, o_t), (i, j, q)


def test_linear_bias_with_more_fraction_bits_than_the_products():
    """The bias keeps every bit: the accumulator is widened to the bias's fraction bits."""
    x_t, w_t = FixedType(8, 6), FixedType(8, 6)          # 2 + 2 = 4 product fraction bits
    b_t = FixedType(16, 2)                               # 14 fraction bits
    o_t = FixedType(24, 8, True, "RND", "SAT")           # 16 fraction bits: the bias survives exactly
    x = torch.tensor([[1, -3]])                          # 0.25, -0.75
    w = torch.tensor([[2, 1]])                           # 0.5, 0.25
    b = torch.tensor([1])                                # 2**-14
    got = linear(x, x_t, w, w_t, b, b_t, o_t)
    q = Fraction(1, 4) * Fraction(1, 2) - Fraction(3, 4) * Fraction(1, 4) + Fraction(1, 2 ** 14)
    assert int(got) == q * 2 ** 16 == -4096 + 4


def test_linear_permuting_k_is_transparent():
    p = precision_profile("w16a32")
    gen = torch.Generator().manual_seed(6)
    x = from_float(torch.randn(7, 192, generator=gen, dtype=torch.float64), p.act)
    w = from_float(0.1 * torch.randn(64, 192, generator=gen, dtype=torch.float64), p.weight)
    b = from_float(0.1 * torch.randn(64, generator=gen, dtype=torch.float64), p.bias)
    perm = torch.randperm(192, generator=gen)
    assert torch.equal(linear(x, p.act, w, p.weight, b, p.bias, p.act),
                       linear(x[:, perm], p.act, w[:, perm], p.weight, b, p.bias, p.act))


# --- measured error bounds --------------------------------------------------------------------------

# Measured at n = 100_000, seed 0 (see the report), plus ~25 % (max) / ~30 % (mean) margin.
BOUNDS = {
    "w16a32": {
        "exp":          dict(max_abs=5.7e-6, mean_abs=2.25e-6),
        "reciprocal":   dict(max_abs=9.2e-6, mean_abs=2.5e-6, max_rel=9.5e-4),
        "rsqrt":        dict(max_abs=6.2e-3, mean_abs=1.5e-4, max_rel=2.0e-5),
        "gelu":         dict(max_abs=1.25e-4, mean_abs=1.0e-5),
        "attn_softmax": dict(max_abs=9.0e-5, mean_abs=2.6e-6),
        "gate_softmax": dict(max_abs=3.65e-5, mean_abs=2.8e-6),
        "layernorm":    dict(max_abs=6.5e-5, mean_abs=1.8e-5),
    },
    "w16a16": {
        "exp":          dict(max_abs=3.3e-5, mean_abs=8.2e-6),
        "reciprocal":   dict(max_abs=3.3e-5, mean_abs=9.9e-6, max_rel=3.8e-3),
        "rsqrt":        dict(max_abs=1.9e-3, mean_abs=1.7e-4, max_rel=2.4e-3),
        "gelu":         dict(max_abs=7.3e-4, mean_abs=1.65e-4),
        "attn_softmax": dict(max_abs=3.3e-4, mean_abs=9.9e-6),
        "gate_softmax": dict(max_abs=1.4e-4, mean_abs=1.1e-5),   # 1.11e-4 at n = 200k
        "layernorm":    dict(max_abs=2.7e-3, mean_abs=3.9e-4),
    },
}
N_SAMPLES = 100_000


@pytest.fixture(scope="module")
def measured():
    return {name: {r.name: r for r in measure_errors(name, n=N_SAMPLES, seed=0)} for name in PROFILES}


def _violations(rows: dict[str, ErrorRow], bounds: dict[str, dict]) -> list[str]:
    out = []
    for fn, lims in bounds.items():
        if fn not in rows:
            continue
        for metric, lim in lims.items():
            v = getattr(rows[fn], metric)
            if not v <= lim:
                out.append(f"{fn}.{metric} = {v:.3e} > {lim:.3e}")
    return out


@pytest.mark.parametrize("profile", PROFILES)
def test_measured_errors_within_bounds(measured, profile):
    rows = measured[profile]
    assert list(rows) == list(FUNCTIONS)
    assert not _violations(rows, BOUNDS[profile]), format_table(rows.values())
    for r in rows.values():
        assert r.max_abs >= r.mean_abs > 0
        assert r.lsb_of_output > 0
    # every approximation is within ~1 output LSB of the truth at its own output
    assert rows["exp"].max_abs_lsbs < 1.0 and rows["reciprocal"].max_abs_lsbs < 1.0


def _bump(table, idx, delta):
    t = list(table)
    for i in idx:
        t[i] += delta
    return tuple(t)


_ORIG = dict(exp2=approx.exp2_table, recip=approx.recip_table, rsqrt=approx.rsqrt_table,
             gelu=approx.gelu_table, log2e=approx.log2e_raw)

# (id, attribute of approx, replacement, functions whose bounds must break, profiles)
PERTURBATIONS = [
    ("exp2 mid entry +2^-14", "exp2_table",
     lambda F, L: _bump(_ORIG["exp2"](F, L), [1 << (L - 1)], 1 << (F - 14)), ["exp"], PROFILES),
    ("exp2 all entries +2^-15", "exp2_table",
     lambda F, L: _bump(_ORIG["exp2"](F, L), range((1 << L) + 1), 1 << (F - 15)), ["exp", "attn_softmax"], PROFILES),
    ("log2e +2^-12", "log2e_raw", lambda F: _ORIG["log2e"](F) + (1 << (F - 12)), ["exp", "gate_softmax"], PROFILES),
    ("log2e off-by-one shift", "log2e_raw", lambda F: _ORIG["log2e"](F + 1),
     ["exp", "attn_softmax", "gate_softmax"], PROFILES),
    ("recip all entries +2^-14", "recip_table",
     lambda F, L: _bump(_ORIG["recip"](F, L), range((1 << L) + 1), 1 << (F - 14)),
     ["reciprocal"], PROFILES),
    ("recip table off by one index", "recip_table",
     lambda F, L: _ORIG["recip"](F, L)[1:] + _ORIG["recip"](F, L)[-1:],
     ["reciprocal", "attn_softmax", "gate_softmax"], PROFILES),
    ("rsqrt entries * (1 + 2^-13)", "rsqrt_table",
     lambda F, L: tuple(v + (v >> 13) for v in _ORIG["rsqrt"](F, L)), ["rsqrt"], PROFILES),
    ("rsqrt entries * (1 + 2^-13), layernorm", "rsqrt_table",
     lambda F, L: tuple(v + (v >> 13) for v in _ORIG["rsqrt"](F, L)), ["layernorm"], ["w16a32"]),
    ("rsqrt entries * (1 + 2^-7)", "rsqrt_table",
     lambda F, L: tuple(v + (v >> 7) for v in _ORIG["rsqrt"](F, L)), ["rsqrt", "layernorm"], PROFILES),
    ("gelu entries -2^-13", "gelu_table",
     lambda t, s, span: tuple(max(0, v - (1 << (t.frac_bits - 13))) for v in _ORIG["gelu"](t, s, span)),
     ["gelu"], ["w16a32"]),
    ("gelu table step off by one", "gelu_table", lambda t, s, span: _ORIG["gelu"](t, s + 1, span),
     ["gelu"], PROFILES),
]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("pid, attr, repl, breaks, profiles", PERTURBATIONS, ids=[x[0] for x in PERTURBATIONS])
def test_perturbed_spec_breaks_the_bounds(monkeypatch, profile, pid, attr, repl, breaks, profiles):
    if profile not in profiles:
        pytest.skip(f"{pid}: below {profile}'s resolution")
    monkeypatch.setattr(approx, attr, repl)
    rows = {r.name: r for r in measure_errors(profile, n=30_000, seed=1, only=breaks)}
    for fn in breaks:
        assert _violations({fn: rows[fn]}, {fn: BOUNDS[profile][fn]}), f"{pid} not caught by the {fn} bounds"


def test_measure_errors_api():
    rows = measure_errors("w16a16", n=2000, only=["exp", "gelu"])
    assert [r.name for r in rows] == ["exp", "gelu"]
    assert rows == measure_errors(precision_profile("w16a16"), n=2000, only=["exp", "gelu"])
    assert all(isinstance(r, ErrorRow) for r in rows)
    table = format_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert table[0].split()[:4] == ["function", "max_abs", "max_rel", "mean_abs"]
    assert "e-0" in table[2]
    with pytest.raises(ValueError, match="unknown function"):
        measure_errors("w16a16", n=100, only=["cosh"])
    assert REL_FLOOR_LSBS == 64


# --- approximation properties ------------------------------------------------------------------------

def test_exp_of_zero_is_exactly_one(p):
    zero = torch.zeros(3, dtype=torch.int64)
    for x_frac in (0, p.attn_score.frac_bits, p.gate_logit.frac_bits, 30):
        assert exp_of(zero, x_frac, p).tolist() == [1 << p.exp.frac_bits] * 3
    # positive inputs are treated as 0
    assert exp_of(torch.tensor([5, 1 << 20]), 4, p).tolist() == [1 << p.exp.frac_bits] * 2


def test_exp_monotone(p):
    t = p.attn_score
    # every word on [-2, 0], then a coarser sweep down to -16 and beyond the output's LSB
    fine = torch.arange(-(2 << t.frac_bits), 1)
    coarse = torch.arange(-(40 << t.frac_bits), 0, 97)
    for x in (fine, coarse):
        y = exp_of(x, t.frac_bits, p)
        assert bool((y[1:] >= y[:-1]).all())   # x ascending -> exp non-decreasing
    assert int(exp_of(torch.tensor([-(40 << t.frac_bits)]), t.frac_bits, p)) == 0


def test_reciprocal_exact_points(p):
    sf = p.softmax_sum.frac_bits
    out = p.softmax_inv
    assert int(recip_of(torch.tensor([1 << sf]), sf, p)) == 1 << out.frac_bits   # 1/1
    for k in range(0, 8):                                                          # 1/2**k
        assert int(recip_of(torch.tensor([1 << (sf + k)]), sf, p)) == 1 << (out.frac_bits - k)
    # x <= 0: the largest value of the output type
    assert recip_of(torch.tensor([0, -5]), sf, p).tolist() == [out.max_raw] * 2


def test_reciprocal_monotone(p):
    sf = p.softmax_sum.frac_bits
    x = torch.cat([torch.arange(1, 1 << 12), torch.arange(1 << sf, 3 << sf, 3), torch.arange(3 << sf, 200 << sf, 997)])
    y = recip_of(x, sf, p)
    assert bool((y[1:] <= y[:-1]).all())


def test_rsqrt_of_powers_of_four_is_exact(p):
    frac = 2 * p.ln_centered.frac_bits
    out = p.ln_inv_std
    for k in range(-p.ln_centered.frac_bits, 6):
        x = torch.tensor([1 << (frac + 2 * k)])
        want = 2.0 ** -k
        if want > out.max_value:
            continue
        y = rsqrt(x, frac, out, p.table_frac_bits, p.rsqrt_table_bits)
        assert to_float(y, out).item() == want, k
    assert rsqrt(torch.tensor([0, -1]), frac, out, p.table_frac_bits, p.rsqrt_table_bits).tolist() == [out.max_raw] * 2


def test_rsqrt_monotone(p):
    frac = 2 * p.ln_centered.frac_bits
    wide = FixedType(62, 62 - frac, True, "RND", "SAT")
    x = torch.unique(torch.cat([torch.arange(1, 5000), torch.arange(1 << frac, (1 << frac) + 100_000, 7),
                                from_float(torch.logspace(-6, 3, 100_000, dtype=torch.float64), wide)]))
    y = rsqrt(x, frac, p.ln_inv_std, p.table_frac_bits, p.rsqrt_table_bits)
    assert bool((y[1:] <= y[:-1]).all())


def _gelu(x, p):
    return gelu(x, p.act, p.gelu_table, p.gelu_step_log2, p.gelu_range)


def test_gelu_odd_symmetry(p):
    """GELU(x) - GELU(-x) = x: ReLU(x) - ReLU(-x) = x and d(|x|) cancels; one rounding each side."""
    t = p.act
    x = torch.cat([torch.arange(-(1 << 14), 1 << 14), from_float(torch.linspace(-8, 8, 50_001), t)])
    diff = _gelu(x, p) - _gelu(-x, p)
    assert int((diff - x).abs().max()) <= 1
    if t.frac_bits >= p.gelu_table.frac_bits:   # no rounding at all: exact
        assert torch.equal(diff, x)


def test_gelu_fixed_points(p):
    t = p.act
    assert int(_gelu(torch.tensor([0]), p)) == 0
    start = int(from_float(p.gelu_range, t))
    big = torch.cat([torch.arange(start, start + 5000), torch.tensor([t.max_raw, t.max_raw - 1])])
    assert torch.equal(_gelu(big, p), big)                 # x >= range: GELU(x) = x
    assert _gelu(-big, p).abs().max() == 0                  # x <= -range: 0
    # just below the range the correction is still applied (d(5.5 - lsb) > 0 at the table's precision)
    below = torch.tensor([start - (1 << (t.frac_bits - p.gelu_step_log2))])
    assert int(_gelu(below, p)) <= int(below)
    # the minimum of GELU is about -0.17 near x = -0.75
    x = from_float(torch.linspace(-2, 0, 2001), t)
    assert abs(to_float(_gelu(x, p), t).min().item() + 0.16997) < 2e-3


def test_msb_index_matches_bit_length():
    rng = random.Random(9)
    vals = [1, 2, 3, (1 << 62) + 1, (1 << 63) - 1]
    vals += [1 << k for k in range(63)] + [(1 << k) - 1 for k in range(1, 64)] + [(1 << k) + 1 for k in range(1, 62)]
    vals += [rng.randrange(1, 1 << rng.randrange(1, 64)) for _ in range(5000)]
    got = msb_index(torch.tensor(vals, dtype=torch.int64)).tolist()
    assert got == [v.bit_length() - 1 for v in vals]


# --- online softmax ----------------------------------------------------------------------------------

def _scores(p, rows, n, seed, std=3.0):
    gen = torch.Generator().manual_seed(seed)
    return from_float(std * torch.randn(rows, n, generator=gen, dtype=torch.float64), p.attn_score)


def test_online_step_from_init(p):
    s = torch.cat([from_float(torch.tensor([0.0, 3.25, -7.5, 100.0, -100.0]), p.attn_score),
                   torch.tensor([p.attn_score.min_raw, p.attn_score.max_raw])])
    m0, l0 = online_init(s.shape, p)
    assert bool((m0 == p.attn_score.min_raw).all()) and bool((l0 == 0).all())
    m, l = online_step(m0, l0, s, p)
    assert torch.equal(m, s)
    assert l.tolist() == [1 << p.softmax_sum.frac_bits] * len(s)
    # a second, equal score doubles the sum exactly
    m2, l2 = online_step(m, l, s, p)
    assert torch.equal(m2, s) and l2.tolist() == [2 << p.softmax_sum.frac_bits] * len(s)
    assert online_finish(l2, p).tolist() == [1 << (p.softmax_inv.frac_bits - 1)] * len(s)


def test_online_softmax_state_equals_repeated_online_step(p):
    """The batched form (hoisted exps) is bit-identical to folding online_step key by key."""
    rows, n = 96, 40
    s = _scores(p, rows, n, seed=21, std=6.0)
    s[:5] = s[:5, :1]                                        # rows of equal scores
    s[5:10, ::3] = p.attn_score.min_raw                      # the most negative word
    s[10:15] = torch.arange(n) * (1 << p.attn_score.frac_bits)  # rising: the max moves at every key
    gen = torch.Generator().manual_seed(22)
    order = torch.stack([torch.randperm(n, generator=gen) for _ in range(rows)])
    batch = torch.stack([s, s.flip(0)])                      # leading batch dim
    m_b, inv_b = online_softmax_state(batch, order, p)
    for b in range(2):
        m, l = online_init((rows,), p)
        for step in range(n):
            m, l = online_step(m, l, batch[b].gather(-1, order[:, step:step + 1]).squeeze(-1), p)
        assert torch.equal(m_b[b], m)
        assert torch.equal(inv_b[b], online_finish(l, p))


@pytest.mark.parametrize("n", [1, 2, 17, 129])
def test_online_softmax_identity_order_matches_float(p, n):
    s = _scores(p, 64, n, seed=n)
    order = torch.arange(n).expand(64, n)
    m, inv = online_softmax_state(s, order, p)
    assert torch.equal(m, s.max(dim=-1).values)            # the running max is exact
    prob = to_float(normalise(s, m[:, None], inv[:, None], p), p.attn_prob)
    ref = torch.softmax(to_float(s, p.attn_score), dim=-1)
    assert (prob - ref).abs().max().item() <= BOUNDS[p.name]["attn_softmax"]["max_abs"]
    if n == 1:
        assert bool((prob == 1.0).all())


def test_online_softmax_key_order(p):
    """Different key orders agree to a few LSBs of the stored 1/sum, and are not bit-identical:
    that is why the golden model walks the hardware's order."""
    rows, n = 256, 129
    s = _scores(p, rows, n, seed=11)
    ident = torch.arange(n).expand(rows, n)
    # Edge-MoE's reordered attention: query o sees keys o..N-1, then 0..o-1
    rotated = (torch.arange(n)[None, :] + (torch.arange(rows) % n)[:, None]) % n
    m1, inv1 = online_softmax_state(s, ident, p)
    m2, inv2 = online_softmax_state(s, rotated, p)
    assert torch.equal(m1, m2)
    diff = int((inv1 - inv2).abs().max())
    # measured over seeds: 3..7 LSBs for both profiles.  (With TRN exp/sum types it was 36:
    # the rescale factor exp(m - m') has an absolute LSB, so its error grows with the sum.)
    assert 0 < diff <= 10
    p1 = normalise(s, m1[:, None], inv1[:, None], p)
    p2 = normalise(s, m2[:, None], inv2[:, None], p)
    assert int((p1 - p2).abs().max()) <= 10
    # batched leading dims broadcast the order
    mb, invb = online_softmax_state(torch.stack([s, s]), rotated, p)
    assert torch.equal(mb[1], m2) and torch.equal(invb[0], inv2)


# --- gate softmax and top-k -------------------------------------------------------------------------

def test_gate_softmax_sums_to_one(p):
    gen = torch.Generator().manual_seed(12)
    z = from_float(2.0 * torch.randn(4096, 16, generator=gen, dtype=torch.float64), p.gate_logit)
    g = gate_softmax(z, p)
    total = to_float(g, p.gate_score).sum(-1)
    # each of the 16 probabilities and 1/sum round once: measured 6 LSBs (w16a32), 5 (w16a16)
    assert (total - 1).abs().max().item() <= 16 * p.gate_score.lsb
    ref = torch.softmax(to_float(z, p.gate_logit), -1)
    assert (to_float(g, p.gate_score) - ref).abs().max().item() <= BOUNDS[p.name]["gate_softmax"]["max_abs"]
    # order of experts does not matter (the sum is exact)
    perm = torch.randperm(16, generator=gen)
    assert torch.equal(gate_softmax(z[:, perm], p), g[:, perm])
    # equal logits: exactly uniform (exp = 1, sum = 16, 1/16 is exact)
    eq = gate_softmax(torch.full((1, 16), 77, dtype=torch.int64), p)
    assert bool((to_float(eq, p.gate_score) == 1 / 16).all())


def _ref_topk(row: list[int], k: int) -> list[int]:
    return sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]


@pytest.mark.parametrize("k", list(range(1, 17)))
def test_topk_tie_break_lower_index_first(k):
    rng = random.Random(k)
    rows = [[rng.choice([-3, 0, 5, 5, 7]) for _ in range(16)] for _ in range(200)]
    rows += [[0] * 16, [1] * 8 + [2] * 8, [2] * 8 + [1] * 8, list(range(16)), list(range(16))[::-1]]
    got = topk(torch.tensor(rows), k).tolist()
    assert got == [_ref_topk(r, k) for r in rows]
    assert topk(torch.zeros(3, 16, dtype=torch.int64), k).tolist() == [list(range(k))] * 3


def test_topk_batched_rows_are_independent():
    logits = torch.tensor([[[5, 5, 1, 9]], [[0, 0, 0, 0]]])
    assert topk(logits, 2).tolist() == [[[3, 0]], [[0, 1]]]


# --- LayerNorm ---------------------------------------------------------------------------------------

def _ln_params(p, dim, gen, random_affine=False):
    if random_affine:
        g = from_float(1.0 + 0.3 * torch.randn(dim, generator=gen, dtype=torch.float64), p.ln_gamma)
        b = from_float(0.5 * torch.randn(dim, generator=gen, dtype=torch.float64), p.ln_beta)
    else:
        g = from_float(torch.ones(dim, dtype=torch.float64), p.ln_gamma)
        b = torch.zeros(dim, dtype=torch.int64)
    return g, b


def test_layernorm_matches_float_with_affine(p):
    gen = torch.Generator().manual_seed(13)
    dim = 192
    x = from_float(2.0 * torch.randn(64, dim, generator=gen, dtype=torch.float64), p.act)
    g, b = _ln_params(p, dim, gen, random_affine=True)
    y = to_float(layernorm(x, g, b, 1e-6, p), p.act)
    xf = to_float(x, p.act)
    ref = torch.nn.functional.layer_norm(xf, (dim,), to_float(g, p.ln_gamma), to_float(b, p.ln_beta), eps=1e-6)
    # gamma up to ~2 scales the normalised error
    assert (y - ref).abs().max().item() <= 2.5 * BOUNDS[p.name]["layernorm"]["max_abs"]


def test_layernorm_constant_row_gives_beta(p):
    gen = torch.Generator().manual_seed(14)
    dim = 64
    g, b = _ln_params(p, dim, gen, random_affine=True)
    for value in (0.0, 3.0, -17.25, p.act.max_value / 2):
        x = from_float(torch.full((2, dim), value, dtype=torch.float64), p.act)
        y = layernorm(x, g, b, 1e-6, p)
        want = quantize(b, p.ln_beta.frac_bits, p.act)
        assert torch.equal(y, want.expand(2, dim)), value


def test_layernorm_saturation_is_counted(p):
    dim = 64
    g, b = _ln_params(p, dim, torch.Generator().manual_seed(15))
    big = p.ln_centered.max_value * 0.95
    row = torch.full((1, dim), -big, dtype=torch.float64)
    row[0, 0] = big                       # x - mean ~ 1.9 * the centred type's range
    x = from_float(row.clamp(p.act.min_value, p.act.max_value), p.act)
    with OverflowCounter() as ovf:
        layernorm(x, g, b, 1e-6, p, tag="ln1")
    st = ovf.stats["ln1.centered"]
    assert (st.total, st.overflows, st.high, st.low) == (dim, 1, 1, 0)
    assert "ln1.norm" in ovf.stats and "ln1" in ovf.stats
    # a normal row counts nothing
    with OverflowCounter() as ovf:
        layernorm(from_float(torch.randn(4, dim, dtype=torch.float64), p.act), g, b, 1e-6, p, tag="ln1")
    assert ovf.total_overflows == 0
