"""Quantisation (``fixed.quantize`` / ``fixed.from_float``) against apytypes, an independent oracle.

Every rounding mode x overflow mode on signed and unsigned types, with random
raw words plus the edge values where implementations go wrong: exact half-LSB
ties of both signs, values one step either side of a tie, the rails, one LSB
past each rail, large overflows and zero.

apytypes has no unsigned fixed-point type.  An unsigned ``ufixed<W, I>`` is
checked through the signed ``fixed<W+1, I+1>`` (same LSB, one more bit at the
top): rounding does not depend on the signedness of the target, so we cast to
that signed type with the same rounding, and then

* SAT:  clamp the result at 0 (the signed SAT already clamped at 2**W - 1);
* WRAP: keep the low W bits (the signed WRAP kept W+1 of them).

The ap_fixed mode names map one to one onto apytypes' ``QuantizationMode``
members of the same name (checked below by introspection, together with the
behaviour on a tie table written out by hand).
"""
from __future__ import annotations

import math
import random
from fractions import Fraction

import apytypes
import pytest
import torch

from edgemoe.golden.numerics.fixed import (
    MAX_BITS, OVERFLOW_MODES, ROUNDING_MODES, FixedType, FixedTypeError, add, align, from_float, overflow_fix,
    quantize, to_float)
from edgemoe.golden.numerics.overflow import OverflowCounter

Q = apytypes.QuantizationMode
O = apytypes.OverflowMode

ROUNDINGS = list(ROUNDING_MODES)
OVERFLOWS = list(OVERFLOW_MODES)
# (bits, int_bits): narrow, typical weight, negative int_bits (all fraction), int_bits > bits
# (LSB = 4), the w16a32 activation, and the 1-bit extremes.
SHAPES = [(8, 3), (16, 2), (12, -2), (10, 12), (32, 10)]
TYPES = ([FixedType(b, i, s) for b, i in SHAPES for s in (True, False)]
         + [FixedType(1, 1, True), FixedType(1, 0, False), FixedType(62, 20, True)])


def _tid(t: FixedType) -> str:
    return f"{'s' if t.signed else 'u'}{t.bits}_{t.int_bits}"


# --- the oracle ------------------------------------------------------------------------

def test_apytypes_has_the_ap_fixed_mode_names():
    members = set(Q.__members__)
    assert set(ROUNDINGS) <= members
    assert set(OVERFLOWS) <= set(O.__members__)
    # the TIES_* aliases name the same behaviour
    assert Q.RND_CONV.value == Q.TIES_EVEN.value
    assert Q.RND.value == Q.TIES_POS.value
    assert Q.RND_MIN_INF.value == Q.TIES_NEG.value
    assert Q.RND_INF.value == Q.TIES_AWAY.value
    assert Q.RND_ZERO.value == Q.TIES_ZERO.value


# -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -1.25, 1.75 rounded to an integer, per UG1399's definitions.
TIE_TABLE = {
    "TRN":         [-3, -2, -1, 0, 1, 2, -2, 1],
    "TRN_ZERO":    [-2, -1, 0, 0, 1, 2, -1, 1],
    "RND":         [-2, -1, 0, 1, 2, 3, -1, 2],
    "RND_ZERO":    [-2, -1, 0, 0, 1, 2, -1, 2],
    "RND_MIN_INF": [-3, -2, -1, 0, 1, 2, -1, 2],
    "RND_INF":     [-3, -2, -1, 1, 2, 3, -1, 2],
    "RND_CONV":    [-2, -2, 0, 0, 2, 2, -1, 2],
}
TIE_INPUTS = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -1.25, 1.75]


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_tie_table_by_hand(rounding):
    """Both the oracle and the golden model agree with a table written from the definitions."""
    t = FixedType(8, 8, True, rounding, "SAT")
    assert from_float(torch.tensor(TIE_INPUTS), t).tolist() == TIE_TABLE[rounding]
    raw = torch.tensor([int(v * 4) for v in TIE_INPUTS])
    assert quantize(raw, 2, t).tolist() == TIE_TABLE[rounding]
    assert _apy_quantize([int(v * 4) for v in TIE_INPUTS], 2, t) == TIE_TABLE[rounding]


def _to_signed(bits_value: int, bits: int) -> int:
    return bits_value - (1 << bits) if bits_value >> (bits - 1) else bits_value


def _apy_cast(src: apytypes.APyFixedArray, t: FixedType) -> list[int]:
    """Cast an apytypes array to ``t``; raw words of ``t`` (Python ints)."""
    q = getattr(Q, t.rounding)
    o = getattr(O, t.overflow)
    if t.signed:
        out = src.cast(int_bits=t.int_bits, frac_bits=t.frac_bits, quantization=q, overflow=o)
        return [_to_signed(b, t.bits) for b in out.to_bits()]
    # unsigned: through the signed type one bit wider (see the module docstring)
    wide = src.cast(int_bits=t.int_bits + 1, frac_bits=t.frac_bits, quantization=q, overflow=o)
    vals = [_to_signed(b, t.bits + 1) for b in wide.to_bits()]
    if t.overflow == "SAT":
        return [max(0, v) for v in vals]
    return [v % (1 << t.bits) for v in vals]


def _apy_quantize(raws: list[int], from_frac: int, t: FixedType) -> list[int]:
    """Raw words with ``from_frac`` fraction bits (any size) cast to ``t`` by apytypes."""
    width = max(max(abs(r) for r in raws).bit_length() + 2, 8)
    src = apytypes.APyFixedArray([r % (1 << width) for r in raws], int_bits=width - from_frac, frac_bits=from_frac)
    return _apy_cast(src, t)


def _apy_from_float(xs: list[float], t: FixedType) -> list[int]:
    """Exact real values of doubles (as binary fractions) cast to ``t`` by apytypes."""
    ratios = [Fraction(x) for x in xs]
    frac = max(max(r.denominator.bit_length() - 1 for r in ratios), 0)
    raws = [int(r * (1 << frac)) for r in ratios]  # exact: denominators are powers of two
    return _apy_quantize(raws, frac, t)


# --- inputs ----------------------------------------------------------------------------------

def _narrowing_inputs(t: FixedType, d: int, rng: random.Random) -> list[int]:
    """Raw words with ``t.frac_bits + d`` fraction bits: random, ties, rails, overflows."""
    one = 1 << d          # one LSB of t in the input scale
    half = one >> 1
    lo, hi = t.min_raw, t.max_raw
    ks = sorted({0, 1, 2, 3, -1, -2, -3, lo, lo + 1, hi, hi - 1, hi + 1, lo - 1, hi + 2, lo - 2,
                 (hi + 1) // 2, lo // 2})
    xs = []
    for k in ks:
        base = k * one
        xs += [base, base + 1, base - 1]
        if d >= 1:
            xs += [base + half, base - half, base + half + 1, base + half - 1, base - half + 1, base - half - 1]
    span = (hi - lo + 1) * one
    bound = 1 << 61  # keep raw words and their roundings inside int64
    xs += [rng.randint(lo * one - span, hi * one + span) for _ in range(400)]
    xs += [rng.randint(-bound, bound) for _ in range(50)]          # large overflows
    xs += [hi * one * 1000 + 7, lo * one * 1000 - 7, bound, -bound]
    # ties of random words (both signs)
    xs += [rng.randint(lo - 3, hi + 3) * one + half for _ in range(100)]
    return [x for x in xs if -bound <= x <= bound]


def _float_inputs(t: FixedType, rng: random.Random) -> list[float]:
    lsb = t.lsb
    lo, hi = t.min_raw, t.max_raw
    ks = sorted({0, 1, -1, 2, -2, 3, -3, lo, hi, lo - 1, hi + 1, lo + 1, hi - 1, hi + 2, lo - 2})
    xs = [0.0, -0.0]
    for k in ks:
        v = k * lsb
        xs += [v, v + lsb / 2, v - lsb / 2,  # exact ties
               math.nextafter(v + lsb / 2, math.inf), math.nextafter(v + lsb / 2, -math.inf),
               math.nextafter(v - lsb / 2, math.inf), math.nextafter(v - lsb / 2, -math.inf),
               v + lsb / 4, v - lsb / 4, v + 3 * lsb / 4, v - 3 * lsb / 4,
               v + lsb * 2.0 ** -40, v - lsb * 2.0 ** -40]  # sticky bits far below the guard bits
    span = (hi - lo + 1) * lsb
    xs += [rng.uniform(lo * lsb - span, hi * lsb + span) for _ in range(400)]
    xs += [(rng.randint(lo - 4, hi + 4) + 0.5) * lsb for _ in range(100)]  # random ties
    # large overflows, inside from_float's documented exact range |x| * 2**frac < 2**50
    big = 2.0 ** 49 * lsb
    xs += [big, -big, rng.uniform(-big, big), rng.uniform(-big, big)]
    return [x for x in xs if abs(x) < 2.0 ** 50 * lsb]


# --- quantize against the oracle --------------------------------------------------------

@pytest.mark.parametrize("t", TYPES, ids=_tid)
@pytest.mark.parametrize("overflow", OVERFLOWS)
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_quantize_narrowing_matches_apytypes(t, rounding, overflow):
    t = t.with_modes(rounding, overflow)
    rng = random.Random(f"{t}")
    for d in (1, 2, 3, 7, 20):
        raws = _narrowing_inputs(t, d, rng)
        got = quantize(torch.tensor(raws), t.frac_bits + d, t).tolist()
        want = _apy_quantize(raws, t.frac_bits + d, t)
        bad = [(r, g, w) for r, g, w in zip(raws, got, want) if g != w]
        assert not bad, f"{t} from {t.frac_bits + d} frac bits: (input, golden, apytypes) {bad[:5]}"


@pytest.mark.parametrize("t", TYPES, ids=_tid)
@pytest.mark.parametrize("overflow", OVERFLOWS)
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_quantize_widening_matches_apytypes(t, rounding, overflow):
    """Fewer source fraction bits: exact shift, then only the overflow mode acts."""
    t = t.with_modes(rounding, overflow)
    rng = random.Random(f"w{t}")
    for d in (0, 1, 3, 9):
        lo, hi = t.min_raw >> d, t.max_raw >> d
        raws = sorted({0, 1, -1, lo, hi, lo - 1, hi + 1, lo - 2, hi + 2, 4 * lo - 5, 4 * hi + 5})
        raws += [rng.randint(8 * lo - 8, 8 * hi + 8) for _ in range(300)]
        raws = [r for r in raws if abs(r) < 1 << (61 - d)]
        got = quantize(torch.tensor(raws), t.frac_bits - d, t).tolist()
        want = _apy_quantize(raws, t.frac_bits - d, t)
        bad = [(r, g, w) for r, g, w in zip(raws, got, want) if g != w]
        assert not bad, f"{t} from {t.frac_bits - d} frac bits: (input, golden, apytypes) {bad[:5]}"


@pytest.mark.parametrize("t", TYPES, ids=_tid)
@pytest.mark.parametrize("overflow", OVERFLOWS)
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_from_float_matches_apytypes(t, rounding, overflow):
    t = t.with_modes(rounding, overflow)
    xs = _float_inputs(t, random.Random(f"f{t}"))
    got = from_float(torch.tensor(xs, dtype=torch.float64), t).tolist()
    want = _apy_from_float(xs, t)
    bad = [(x, g, w) for x, g, w in zip(xs, got, want) if g != w]
    assert not bad, f"{t}: (input, golden, apytypes) {bad[:5]}"


def test_from_float_agrees_with_quantize_of_the_exact_words():
    """from_float(x) == quantize(exact words of x): the guard/sticky bits lose nothing."""
    rng = random.Random(7)
    for rounding in ROUNDINGS:
        t = FixedType(16, 4, True, rounding, "WRAP")
        fine = [rng.randint(-(1 << 40), 1 << 40) for _ in range(500)] + [k << 19 | (1 << 18) for k in range(-40, 40)]
        xs = [r * 2.0 ** -(t.frac_bits + 20) for r in fine]
        assert from_float(torch.tensor(xs, dtype=torch.float64), t).tolist() == \
            quantize(torch.tensor(fine), t.frac_bits + 20, t).tolist()


def test_from_float_rejects_non_finite():
    t = FixedType(16, 4)
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(FixedTypeError):
            from_float(torch.tensor([0.5, bad], dtype=torch.float64), t)


def test_to_float_inverts_from_float_on_representable_values():
    t = FixedType(12, -2, True, "RND", "SAT")
    raws = torch.arange(t.min_raw, t.max_raw + 1)
    assert torch.equal(from_float(to_float(raws, t), t), raws)
    assert to_float(torch.tensor([3]), 4).item() == 3 / 16


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_add_is_exact_then_one_cast(rounding):
    """fixed.add: a + b at the finer scaling, rounded once (checked through apytypes)."""
    rng = random.Random(rounding)
    t = FixedType(10, 4, True, rounding, "SAT")
    a = [rng.randint(-5000, 5000) for _ in range(300)] + [3, -3, 96, -96]
    b = [rng.randint(-300, 300) for _ in range(300)] + [1, -1, 0, 0]
    got = add(torch.tensor(a), 9, torch.tensor(b), 5, t).tolist()   # 9 and 5 fraction bits
    want = _apy_quantize([x + (y << 4) for x, y in zip(a, b)], 9, t)
    assert got == want
    assert add(torch.tensor(b), 5, torch.tensor(a), 9, t).tolist() == want


def test_align_and_overflow_fix_directly():
    # widening is an exact shift, narrowing rounds by the given mode
    assert align(torch.tensor([-3, 5]), 2, 5).tolist() == [-24, 40]
    assert align(torch.tensor([-6, 6, 10]), 2, 0, "RND_CONV").tolist() == [-2, 2, 2]
    assert align(torch.tensor([-6, 6, 10]), 2, 0, "TRN").tolist() == [-2, 1, 2]
    t = FixedType(4, 4, True, "TRN", "WRAP")
    assert overflow_fix(torch.tensor([7, 8, -8, -9, 23]), t).tolist() == [7, -8, -8, 7, 7]
    u = FixedType(4, 4, False, "TRN", "SAT")
    assert overflow_fix(torch.tensor([-1, 0, 15, 16]), u).tolist() == [0, 0, 15, 15]


# --- FixedType: spelling and validation --------------------------------------------------------

@pytest.mark.parametrize("t", TYPES, ids=_tid)
def test_parse_str_cpp_round_trip(t):
    for rounding in ROUNDINGS:
        for overflow in OVERFLOWS:
            u = t.with_modes(rounding, overflow)
            assert FixedType.parse(str(u)) == u
            assert FixedType.parse(u.cpp()) == u
            assert FixedType.parse(u) is u
            kind = "ap_fixed" if u.signed else "ap_ufixed"
            assert u.cpp() == f"{kind}<{u.bits},{u.int_bits},AP_{rounding},AP_{overflow}>"


def test_parse_spellings_and_defaults():
    assert FixedType.parse("ufixed<8,0>") == FixedType(8, 0, False, "TRN", "SAT")
    assert FixedType.parse(" ap_fixed < 16 , 2 , AP_RND > ") == FixedType(16, 2, True, "RND", "SAT")
    assert FixedType.parse("fixed<12,-2,rnd_conv,wrap>") == FixedType(12, -2, True, "RND_CONV", "WRAP")
    assert FixedType.parse("fixed<16,2>", default_rounding="RND", default_overflow="WRAP") == \
        FixedType(16, 2, True, "RND", "WRAP")
    assert str(FixedType(8, 3)) == "fixed<8,3,TRN,SAT>"


def test_derived_facts():
    t = FixedType(12, -2, True)
    assert (t.frac_bits, t.lsb, t.min_raw, t.max_raw) == (14, 2.0 ** -14, -2048, 2047)
    u = FixedType(10, 12, False)
    assert (u.frac_bits, u.lsb, u.min_raw, u.max_raw, u.max_value) == (-2, 4.0, 0, 1023, 4092.0)
    assert FixedType(8, 3).with_modes(overflow="WRAP") == FixedType(8, 3, True, "TRN", "WRAP")


@pytest.mark.parametrize("kwargs, field", [
    (dict(bits=0, int_bits=0), "bits"),
    (dict(bits=64, int_bits=10), "bits"),
    (dict(bits=MAX_BITS + 10, int_bits=10), "bits"),
    (dict(bits=-4, int_bits=0), "bits"),
    (dict(bits=8.0, int_bits=3), "bits"),
    (dict(bits=8, int_bits=3.5), "int_bits"),
    (dict(bits=8, int_bits=-MAX_BITS - 1), "int_bits"),
    (dict(bits=8, int_bits=2 * MAX_BITS + 1), "int_bits"),
    (dict(bits=8, int_bits=3, rounding="ROUND"), "rounding"),
    (dict(bits=8, int_bits=3, rounding="trn"), "rounding"),
    (dict(bits=8, int_bits=3, overflow="SAT_SYM"), "overflow"),
    (dict(bits=8, int_bits=3, overflow="CLAMP"), "overflow"),
])
def test_invalid_types_name_the_field(kwargs, field):
    with pytest.raises(FixedTypeError) as e:
        FixedType(**kwargs)
    assert str(e.value).startswith(f"{field} = ")
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("text, field", [
    ("fixed<0,0>", "bits"), ("fixed<64,10>", "bits"), ("ufixed<8,200>", "int_bits"),
    ("fixed<16,2,FLOOR>", "rounding"), ("fixed<16,2,RND,SAT_ZERO>", "overflow"),
])
def test_parse_invalid_values_name_the_field(text, field):
    with pytest.raises(FixedTypeError, match=f"^{field} = "):
        FixedType.parse(text)


@pytest.mark.parametrize("text", ["fixed<8>", "int<8,3>", "fixed 8,3", "", "fixed<8,3,RND,SAT,X>", "fixed<a,3>"])
def test_parse_garbage(text):
    with pytest.raises(FixedTypeError, match="is not a fixed-point type"):
        FixedType.parse(text)


# --- OverflowCounter -------------------------------------------------------------------------------

def test_overflow_counter_counts_per_tag_and_rail():
    t = FixedType(8, 8, True, "TRN", "SAT")      # -128..127
    w = FixedType(8, 8, True, "TRN", "WRAP")
    with OverflowCounter() as ovf:
        quantize(torch.tensor([-200, -129, -128, 0, 127, 128, 300, 1000]), 0, t, tag="a")
        quantize(torch.tensor([[1, 2], [3, 500]]), 0, w, tag="b")
        quantize(torch.tensor([1, 2, 3]), 0, t, tag="c")
        quantize(torch.tensor([999]), 0, t)      # no tag: not counted
        from_float(torch.tensor([-1000.0, 5.0]), t, tag="a")
    a, b, c = ovf.stats["a"], ovf.stats["b"], ovf.stats["c"]
    assert (a.total, a.overflows, a.high, a.low) == (10, 6, 3, 3)
    assert (b.total, b.overflows, b.high, b.low) == (4, 1, 1, 0)
    assert (c.total, c.overflows) == (3, 0)
    assert a.type == t and b.type == w
    assert a.rate == pytest.approx(0.6)
    assert set(ovf.stats) == {"a", "b", "c"}
    assert ovf.total_overflows == 7
    assert set(ovf.offenders()) == {"a", "b"}
    table = ovf.table()
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["a", "b"]
    assert str(t) in table
    assert "c" in ovf.table(only_overflows=False)


def test_overflow_counter_counts_after_rounding():
    """A value that rounds past the rail overflows; one that rounds back inside does not."""
    t = FixedType(8, 7, True, "RND", "SAT")      # LSB 0.5, max 63.5 (raw 127)
    with OverflowCounter() as ovf:
        # 63.75 is a tie: RND takes it up to 64.0, past the rail; 63.5 and 63.25 land on 63.5
        out = quantize(torch.tensor([255, 254, 253]), 2, t, tag="x")
    assert out.tolist() == [127, 127, 127]
    assert (ovf.stats["x"].high, ovf.stats["x"].overflows) == (1, 1)
    with OverflowCounter() as ovf:
        quantize(torch.tensor([255]), 2, t.with_modes("TRN"), tag="x")
    assert ovf.stats["x"].overflows == 0


def test_nothing_counted_outside_the_context():
    t = FixedType(4, 4)
    quantize(torch.tensor([100]), 0, t, tag="before")
    with OverflowCounter() as ovf:
        pass
    quantize(torch.tensor([100]), 0, t, tag="after")
    assert ovf.stats == {} and ovf.total_overflows == 0
    assert ovf.table() == "no overflows"


def test_nested_counters():
    t = FixedType(4, 4)
    with OverflowCounter() as outer:
        quantize(torch.tensor([100]), 0, t, tag="o")
        with OverflowCounter() as inner:
            quantize(torch.tensor([100, -100]), 0, t, tag="i")
        quantize(torch.tensor([-100]), 0, t, tag="o")
    assert set(inner.stats) == {"i"} and inner.stats["i"].overflows == 2
    # an outer counter sees everything counted inside it too
    assert (outer.stats["o"].high, outer.stats["o"].low) == (1, 1) and outer.stats["i"].overflows == 2
