"""Registry of the RTL stream units: how to build each from a config, its port
formats, its exact expectation, and its test vectors.

:func:`get_unit` / :func:`all_units` cover every RTL unit: the stream units
here (:data:`UNITS`) and the attention / routing units of
:mod:`edgemoe.sim.units_attention` (:data:`~edgemoe.sim.units_attention.ATTENTION_UNITS`).
Both kinds of spec carry ``name``, ``top``, ``make``, ``test_module`` (the
cocotb module in ``sim/tb/``), ``vectors`` (the default random-vector count
of a run) and ``describe(cfg, component)`` (what ``unit.json`` records
besides latency and ROMs), so :func:`edgemoe.sim.build.generate`,
:func:`edgemoe.sim.runner.run_unit` and :mod:`edgemoe.sim.resources` take
any unit name.

Each :class:`UnitSpec` ties an Amaranth unit to the golden function it must
match bit for bit (:mod:`edgemoe.golden.numerics`), so the generator, the
cocotb testbench and the reports all read the same facts.  Test vectors are
raw input words in four groups:

* ``edge``    -- zero, +-1 LSB, both rails and one LSB inside them, and the
  unit's own edges (table segment and exponent boundaries, the GELU span...);
* ``tie``     -- inputs where the output cast is an exact half-LSB tie, or
  rounds up, or saturates: found by evaluating the golden function with the
  output type's rounding / overflow mode swapped (RND vs RND_MIN_INF differ
  exactly on ties, RND vs TRN on round-ups, SAT vs WRAP on overflows) over a
  large candidate pool;
* ``random``  -- uniform over the input type, plus log-uniform magnitudes
  (every exponent, both signs) for units whose input spans many octaves.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from edgemoe.golden.numerics import approx
from edgemoe.golden.numerics.fixed import FixedType

from .formats import NAIVE_STEP_LOG2, exp_input_type, naive_gelu, rsqrt_input_type


def maker(module: str, cls: str, **kw) -> Callable[[object], object]:
    """``cfg -> unit`` importing the Amaranth module on first use (the testbenches never do);
    ``kw`` are passed on to ``cls.from_config``."""
    def make(cfg):
        import importlib
        return getattr(importlib.import_module(f"{__package__}.{module}"), cls).from_config(cfg, **kw)
    make.__name__ = f"{cls}.from_config"
    return make


@dataclass(frozen=True)
class UnitSpec:
    """One stream unit: builder, port types, exact model, vectors."""

    name: str
    top: str                                   #: Verilog module name
    make: Callable[[object], object]            #: cfg -> Amaranth StreamUnit
    in_type: Callable[[object], FixedType]      #: cfg -> type of in_data words
    out_type: Callable[[object], FixedType]     #: cfg -> type of out_data words
    model: Callable[[object, torch.Tensor, FixedType], torch.Tensor]  #: (cfg, x raw, out type) -> raw
    edges: Callable[[object], list[int]]        #: cfg -> unit-specific edge inputs
    log_uniform: bool = False                  #: draw random magnitudes log-uniformly too
    golden: bool = True                        #: model is the golden spec (False: a reference design)
    perturb: Callable[[], object] | None = None  #: context manager breaking the model (self-test)
    test_module: str = "tb_stream_unit"        #: cocotb module in sim/tb/
    vectors: int = 1000                        #: default random words of a run

    def describe(self, cfg, component) -> dict:
        """What ``unit.json`` records besides latency and ROMs: the port formats."""
        return unit_formats(self, cfg)

    def expected(self, cfg, x) -> torch.Tensor:
        return self.model(cfg, torch.as_tensor(x, dtype=torch.int64), self.out_type(cfg))


# --- models ----------------------------------------------------------------------------

def _exp_model(cfg, x, out):
    p = cfg.precision
    return approx.exp_neg(x, exp_input_type(p).frac_bits, out, p.table_frac_bits, p.exp_table_bits)


def _recip_model(cfg, x, out):
    p = cfg.precision
    return approx.reciprocal(x, p.softmax_sum.frac_bits, out, p.table_frac_bits, p.recip_table_bits)


def _rsqrt_model(cfg, x, out):
    p = cfg.precision
    return approx.rsqrt(x, rsqrt_input_type(p).frac_bits, out, p.table_frac_bits, p.rsqrt_table_bits)


def _gelu_model(cfg, x, out):
    p = cfg.precision
    # gelu casts to its activation type; swapping out's modes keeps its format
    return approx.gelu(x, out, p.gelu_table, p.gelu_step_log2, p.gelu_range)


def _gelu_naive_model(cfg, x, out):
    p = cfg.precision
    return naive_gelu(x, out, NAIVE_STEP_LOG2, p.gelu_range)


# --- unit-specific edges ------------------------------------------------------------------

def _near(values, t: FixedType, spread: int = 1) -> list[int]:
    out = []
    for v in values:
        for d in range(-spread, spread + 1):
            if t.min_raw <= v + d <= t.max_raw:
                out.append(v + d)
    return out


def _exp_edges(cfg) -> list[int]:
    p = cfg.precision
    t = exp_input_type(p)
    F, L, xf = p.table_frac_bits, p.exp_table_bits, t.frac_bits
    from edgemoe.golden.numerics.tables import log2e_raw
    c = log2e_raw(F)
    # x where t = x*log2e crosses an integer (n changes) and where f crosses a segment
    cuts = []
    k = 0
    while True:
        x = -((k << (F + xf)) // c)
        if x < t.min_raw:
            break
        cuts.append(x)
        k = k + 1 if k < 40 else k * 2
    seg = [-(((j << (F - L + xf)) + c - 1) // c) for j in range(0, 1 << L, max(1, (1 << L) // 16))]
    return _near(cuts + seg, t, 2)


def _pow2_edges(t: FixedType) -> list[int]:
    vals = []
    for b in range(t.bits - (1 if t.signed else 0)):
        vals += [1 << b, (1 << b) - 1, (1 << b) + 1, (3 << b) >> 1]
    return [v for v in vals if t.min_raw <= v <= t.max_raw]


def _recip_edges(cfg) -> list[int]:
    return _pow2_edges(cfg.precision.softmax_sum)


def _rsqrt_edges(cfg) -> list[int]:
    t = rsqrt_input_type(cfg.precision)
    from edgemoe.golden.numerics.layernorm import eps_raw
    return _pow2_edges(t) + _near([eps_raw(cfg.model.ln_eps, cfg.precision)], t, 1)


def _gelu_edges(cfg) -> list[int]:
    p = cfg.precision
    t = p.act
    lb = t.frac_bits - p.gelu_step_log2
    from edgemoe.golden.numerics.tables import gelu_table
    seg = len(gelu_table(p.gelu_table, p.gelu_step_log2, p.gelu_range)) - 1
    bounds = [i << lb for i in (0, 1, 2, 7, 24, seg // 2, seg - 2, seg - 1, seg, seg + 1)]
    mids = [(i << lb) + (1 << lb) // 2 for i in (0, 5, seg - 1)] if lb > 0 else []
    vals = bounds + mids
    return _near(vals + [-v for v in vals], t, 1)


def _naive_edges(cfg) -> list[int]:
    t = cfg.precision.act
    span = int(cfg.precision.gelu_range * 2 ** t.frac_bits)
    return _near([span, -span, 0], t, 2)


@contextmanager
def _perturb_exp_table() -> Iterator[None]:
    """Self-test: the exp model reads a wrong exp2 table (entry 0 raised by 2**-8)."""
    from edgemoe.golden.numerics import tables
    original = approx.exp2_table

    def broken(frac_bits: int, segments_log2: int):
        t = list(tables.exp2_table(frac_bits, segments_log2))
        t[0] += 1 << max(frac_bits - 8, 0)
        return tuple(t)

    approx.exp2_table = broken
    try:
        yield
    finally:
        approx.exp2_table = original


UNITS: dict[str, UnitSpec] = {s.name: s for s in (
    UnitSpec("exp", "edgemoe_exp", maker("unit_exp", "ExpUnit"), lambda c: exp_input_type(c.precision),
             lambda c: c.precision.exp, _exp_model, _exp_edges, log_uniform=True,
             perturb=_perturb_exp_table),
    UnitSpec("recip", "edgemoe_recip", maker("unit_recip", "RecipUnit"), lambda c: c.precision.softmax_sum,
             lambda c: c.precision.softmax_inv, _recip_model, _recip_edges, log_uniform=True),
    UnitSpec("rsqrt", "edgemoe_rsqrt", maker("unit_rsqrt", "RsqrtUnit"), lambda c: rsqrt_input_type(c.precision),
             lambda c: c.precision.ln_inv_std, _rsqrt_model, _rsqrt_edges, log_uniform=True),
    UnitSpec("gelu", "edgemoe_gelu", maker("unit_gelu", "GeluUnit"), lambda c: c.precision.act,
             lambda c: c.precision.act, _gelu_model, _gelu_edges),
    UnitSpec("gelu_naive", "edgemoe_gelu_naive", maker("unit_gelu_naive", "NaiveGeluUnit"), lambda c: c.precision.act,
             lambda c: c.precision.act, _gelu_naive_model, _naive_edges, golden=False),
)}


def _registry() -> dict:
    from .units_attention import ATTENTION_UNITS
    return {**UNITS, **ATTENTION_UNITS, **_tile_units()}


def all_units() -> list[str]:
    """Every RTL unit name: the stream units, the attention / routing units, the compute tile."""
    return list(_registry())


def get_unit(name: str):
    """The spec of any RTL unit: a :class:`UnitSpec`, or an
    :class:`~edgemoe.sim.units_attention.AttnUnitSpec` for the attention / routing units and ``compute_tile``."""
    registry = _registry()
    if name in registry:
        return registry[name]
    raise KeyError(f"unknown RTL unit {name!r}; units: {', '.join(all_units())}")


# --- vectors -------------------------------------------------------------------------------

def rail_edges(t: FixedType) -> list[int]:
    """Zero, +-1 LSB, the rails and one / two LSBs inside them."""
    vals = {0, 1, 2, t.max_raw, t.max_raw - 1, t.max_raw - 2, t.min_raw, t.min_raw + 1, t.min_raw + 2}
    if t.signed:
        vals |= {-1, -2}
    return sorted(v for v in vals if t.min_raw <= v <= t.max_raw)


def random_words(t: FixedType, rng: random.Random, n: int, log_uniform: bool) -> list[int]:
    """``n`` words of ``t``: uniform, and (if ``log_uniform``) half with log-uniform magnitude."""
    out = []
    for i in range(n):
        if log_uniform and i % 2:
            mag_bits = rng.randint(0, t.bits - (1 if t.signed else 0))
            v = rng.getrandbits(mag_bits) | ((1 << mag_bits) >> 1) if mag_bits else 0
            if t.signed and rng.random() < 0.5:
                v = -v
        else:
            v = rng.randint(t.min_raw, t.max_raw)
        out.append(max(t.min_raw, min(t.max_raw, v)))
    return out


def _mode_variants(t: FixedType) -> list[tuple[str, FixedType, FixedType]]:
    return [("tie", t.with_modes(rounding="RND"), t.with_modes(rounding="RND_MIN_INF")),
            ("roundup", t.with_modes(rounding="RND"), t.with_modes(rounding="TRN")),
            ("overflow", t.with_modes(overflow="SAT"), t.with_modes(overflow="WRAP"))]


def tie_vectors(spec: UnitSpec, cfg, rng: random.Random, per_kind: int = 48, pool: int = 20000) -> list[int]:
    """Inputs whose output cast hits a tie, rounds up, or saturates (see module doc)."""
    t = spec.in_type(cfg)
    out = spec.out_type(cfg)
    cand = torch.tensor(random_words(t, rng, pool, True) + _near(spec.edges(cfg), t, 3), dtype=torch.int64)
    picked: list[int] = []
    for _, a, b in _mode_variants(out):
        diff = (spec.model(cfg, cand, a) != spec.model(cfg, cand, b)).nonzero().flatten().tolist()
        rng.shuffle(diff)
        picked += [int(cand[i]) for i in diff[:per_kind]]
    return picked


def unit_vectors(spec: UnitSpec, cfg, seed: int = 1, n_random: int = 1000) -> dict[str, list[int]]:
    """The vector groups for one unit and config (deterministic in ``seed``)."""
    rng = random.Random(seed)
    t = spec.in_type(cfg)
    edge = sorted(set(rail_edges(t) + _near(spec.edges(cfg), t, 0)))
    return {"edge": edge, "tie": tie_vectors(spec, cfg, rng),
            "random": random_words(t, rng, n_random, spec.log_uniform)}


def unit_formats(spec: UnitSpec, cfg) -> dict:
    """Port formats, for reports and the testbench."""
    ti, to = spec.in_type(cfg), spec.out_type(cfg)
    return {"in": str(ti), "out": str(to), "in_bits": ti.bits, "in_signed": ti.signed,
            "out_bits": to.bits, "out_signed": to.signed}


# --- the compute tile (multi-field ports; its own testbench) ---------------------------------------

def tile_k_max(cfg) -> int:
    """Longest dot product the compute tile accumulates (its accumulator width follows):
    the patch embedding, the attention / MLP / expert layers of the model."""
    m = cfg.model
    return max(m.in_chans * m.patch_size ** 2, m.embed_dim, int(m.embed_dim * m.mlp_ratio), m.expert_hidden)


def _tile_params(cfg) -> dict:
    p, h = cfg.precision, cfg.hardware
    return {"cu_in": h.cu_in, "cu_out": h.cu_out, "k_max": tile_k_max(cfg), "act": str(p.act),
            "weight": str(p.weight), "bias": str(p.bias), "gate_score": str(p.gate_score)}


def _tile_units() -> dict:
    from .units_attention import AttnUnitSpec
    return {"compute_tile": AttnUnitSpec(
        "compute_tile", "edgemoe_compute_tile", maker("unit_compute_tile", "ComputeTileUnit"), "tb_compute_tile",
        _tile_params, "cu_in x cu_out MAC tile: linear + cast, GELU, or y * score", vectors=40)}
