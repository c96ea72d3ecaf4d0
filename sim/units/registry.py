"""The one registry of the RTL units: how to build each from a config, how to test it, what it must match.

Two kinds of unit, one dict (:data:`UNITS`, in this order; :func:`get_unit` /
:func:`all_units` read it):

* :data:`STREAM_UNITS` (:class:`StreamUnitSpec`) -- one word in, one word out
  (the :class:`~edgemoe.sim.units.base.StreamUnit` ports): ``exp``, ``recip``,
  ``rsqrt``, ``gelu``, ``gelu_naive``.  The spec names the port types and the
  golden function the unit must match bit for bit
  (:mod:`edgemoe.golden.numerics`); one generic testbench
  (``sim/tb/tb_stream_unit.py``) drives any of them with the vectors below.
* :data:`MULTI_FIELD_UNITS` (:class:`MultiFieldUnitSpec`) -- ports with several
  named fields, transactions that are not one word in, one word out; each has
  its own cocotb module in ``sim/tb/`` and the exact expectation functions of
  this module:

  * ``softmax`` -- :class:`.softmax.OnlineSoftmaxUnit`, golden
    ``softmax.online_init / online_step / online_finish`` and, for whole heads,
    ``online_softmax_state`` over ``attention.key_order``
    (:func:`softmax_expected`, :func:`schedule_expected`); ``tb_softmax``;
  * ``attn_schedule`` -- :class:`.attn_schedule.AttnScheduleUnit`, golden
    ``attention.key_order`` and the HLS kernel's STREAM loop / ``ATTN_CYCLES``
    (:func:`schedule_problems`); ``tb_attn_schedule``;
  * ``topk`` -- :class:`.topk.TopKQueueUnit`, golden ``numerics.topk.topk``
    and ``moe.Routing`` (``counts``, ``queue``) (:func:`topk_expected`); ``tb_topk``;
  * ``layernorm`` -- :class:`.layernorm.LayerNormUnit`, golden
    ``numerics.layernorm.layernorm`` (rows of ``embed_dim`` words, gamma/beta
    loaded through a parameter port) (:func:`layernorm_expected`); ``tb_layernorm``;
  * ``compute_tile`` -- :class:`.compute_tile.ComputeTileUnit`, cu_in x cu_out
    MACs: golden ``matmul.linear``, ``approx.gelu``, ``moe``'s y * score;
    ``tb_compute_tile``.

Both kinds of spec carry ``name``, ``top``, ``make``, ``test_module`` (the
cocotb module in ``sim/tb/``), ``vectors`` (the default random-vector count
of a run) and ``describe(cfg, component)`` (what ``unit.json`` records
besides latency and ROMs), so :func:`edgemoe.sim.build.generate`,
:func:`edgemoe.sim.runner.run_unit` and :mod:`edgemoe.sim.resources` take
any unit name:

    from edgemoe.sim.runner import run_unit
    run_unit("softmax", load_config("m3vit-micro"), "icarus")

or ``edgemoe sim units softmax topk --config m3vit-micro``.

This module imports torch and the golden model only, never Amaranth (the
builders import a unit's module on first use), so the testbenches import it.

Test vectors of a stream unit are raw input words in four groups:

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

import dataclasses
import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from edgemoe.golden.attention import key_order
from edgemoe.golden.moe import Routing
from edgemoe.golden.numerics import approx
from edgemoe.golden.numerics.fixed import FixedType
from edgemoe.golden.numerics.layernorm import layernorm
from edgemoe.golden.numerics.softmax import online_finish, online_init, online_softmax_state, online_step
from edgemoe.golden.numerics.topk import topk

from ..formats import NAIVE_STEP_LOG2, exp_input_type, layernorm_plan, naive_gelu, rsqrt_input_type

#: the sum recurrence of the softmax unit is split in this many register stages
SOFTMAX_RECURRENCE = 2

KIND_TOKEN, KIND_COUNT, KIND_QUEUE = 0, 1, 2     # = the topk unit's out_kind codes


def maker(module: str, cls: str, **kw) -> Callable[[object], object]:
    """``cfg -> unit`` importing the Amaranth module on first use (the testbenches never do);
    ``kw`` are passed on to ``cls.from_config``."""
    def make(cfg):
        import importlib
        return getattr(importlib.import_module(f"{__package__}.{module}"), cls).from_config(cfg, **kw)
    make.__name__ = f"{cls}.from_config"
    return make


@dataclass(frozen=True)
class StreamUnitSpec:
    """One stream unit (one word in, one word out): builder, port types, exact model, vectors."""

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


STREAM_UNITS: dict[str, StreamUnitSpec] = {s.name: s for s in (
    StreamUnitSpec("exp", "edgemoe_exp", maker("exp", "ExpUnit"), lambda c: exp_input_type(c.precision),
             lambda c: c.precision.exp, _exp_model, _exp_edges, log_uniform=True,
             perturb=_perturb_exp_table),
    StreamUnitSpec("recip", "edgemoe_recip", maker("recip", "RecipUnit"), lambda c: c.precision.softmax_sum,
             lambda c: c.precision.softmax_inv, _recip_model, _recip_edges, log_uniform=True),
    StreamUnitSpec("rsqrt", "edgemoe_rsqrt", maker("rsqrt", "RsqrtUnit"), lambda c: rsqrt_input_type(c.precision),
             lambda c: c.precision.ln_inv_std, _rsqrt_model, _rsqrt_edges, log_uniform=True),
    StreamUnitSpec("gelu", "edgemoe_gelu", maker("gelu", "GeluUnit"), lambda c: c.precision.act,
             lambda c: c.precision.act, _gelu_model, _gelu_edges),
    StreamUnitSpec("gelu_naive", "edgemoe_gelu_naive", maker("gelu_naive", "NaiveGeluUnit"), lambda c: c.precision.act,
             lambda c: c.precision.act, _gelu_naive_model, _naive_edges, golden=False),
)}


# --- parameters of the multi-field units ----------------------------------------------------------

def tile_k_max(cfg) -> int:
    """Longest dot product the compute tile accumulates (its accumulator width follows): the kernel
    plan's ``k_max`` (the patch embedding, the attention / MLP / expert layers of the model)."""
    from edgemoe.hls.plan import KernelPlan

    return KernelPlan.from_config(cfg).k_max


def _tile_params(cfg) -> dict:
    p, h = cfg.precision, cfg.hardware
    return {"cu_in": h.cu_in, "cu_out": h.cu_out, "k_max": tile_k_max(cfg), "act": str(p.act),
            "weight": str(p.weight), "bias": str(p.bias), "gate_score": str(p.gate_score)}


@dataclass(frozen=True)
class MultiFieldUnitSpec:
    """One unit with multi-field ports: builder, its testbench module, the parameters it reads from the config."""

    name: str
    top: str                                   #: Verilog module name
    make: Callable[[object], object]            #: cfg -> Amaranth component
    test_module: str                           #: cocotb module in sim/tb/
    params: Callable[[object], dict]            #: cfg -> the parameters the design depends on
    doc: str = ""
    vectors: int = 200                         #: default random part of a run (rows / images)

    def describe(self, cfg, component) -> dict:
        """What ``unit.json`` records besides latency and ROMs: RAMs, parameters, ports."""
        rams = getattr(component, "rams", {})
        return {"ram_bits": sum(d * w for d, w in rams.values()), "rams": {k: list(v) for k, v in rams.items()},
                "params": self.params(cfg), "ports": _ports(component)}


def _ports(component) -> dict:
    from amaranth import Shape

    out = {}
    for name, member in component.signature.members.items():
        shape = Shape.cast(member.shape)
        out[name] = {"dir": "in" if member.flow.name == "In" else "out", "bits": shape.width,
                     "signed": shape.signed}
    return out


def _softmax_params(cfg) -> dict:
    p = cfg.precision
    return {"parallel": cfg.hardware.attn_parallel, "recurrence": SOFTMAX_RECURRENCE,
            "score": str(p.attn_score), "exp": str(p.exp), "softmax_sum": str(p.softmax_sum),
            "softmax_inv": str(p.softmax_inv), "table_frac_bits": p.table_frac_bits,
            "exp_table_bits": p.exp_table_bits, "recip_table_bits": p.recip_table_bits}


def _schedule_params(cfg) -> dict:
    return {"num_tokens": cfg.model.num_tokens, "parallel": cfg.hardware.attn_parallel,
            "attn_cycles": attn_cycles(cfg.model.num_tokens, cfg.hardware.attn_parallel)}


def _topk_params(cfg) -> dict:
    m = cfg.model
    return {"gate_logit": str(cfg.precision.gate_logit), "num_experts": m.num_experts, "top_k": m.top_k,
            "num_tokens": m.num_tokens}


def _layernorm_params(cfg) -> dict:
    p = cfg.precision
    return {**layernorm_plan(cfg).params(), "act": str(p.act), "ln_centered": str(p.ln_centered),
            "ln_inv_std": str(p.ln_inv_std), "ln_norm": str(p.ln_norm), "ln_gamma": str(p.ln_gamma),
            "ln_beta": str(p.ln_beta), "table_frac_bits": p.table_frac_bits, "rsqrt_table_bits": p.rsqrt_table_bits}


MULTI_FIELD_UNITS: dict[str, MultiFieldUnitSpec] = {s.name: s for s in (
    MultiFieldUnitSpec("softmax", "edgemoe_softmax", maker("softmax", "OnlineSoftmaxUnit",
                                                            recurrence=SOFTMAX_RECURRENCE),
                       "tb_softmax", _softmax_params, "online softmax: (max, 1/sum) per row, P interleaved rows"),
    MultiFieldUnitSpec("attn_schedule", "edgemoe_attn_schedule", maker("attn_schedule", "AttnScheduleUnit"),
                       "tb_attn_schedule", _schedule_params, "reordered attention: key stream and query slots"),
    MultiFieldUnitSpec("topk", "edgemoe_topk", maker("topk", "TopKQueueUnit"),
                       "tb_topk", _topk_params, "gate routing: top-k per token, per-expert token queues"),
    MultiFieldUnitSpec("layernorm", "edgemoe_layernorm", maker("layernorm", "LayerNormUnit"),
                       "tb_layernorm", _layernorm_params, "LayerNorm with rsqrt: rows of D words, gamma/beta RAM",
                       vectors=40),
    MultiFieldUnitSpec("compute_tile", "edgemoe_compute_tile", maker("compute_tile", "ComputeTileUnit"),
                       "tb_compute_tile", _tile_params, "cu_in x cu_out MAC tile: linear + cast, GELU, or y * score",
                       vectors=40),
)}


#: every RTL unit: the stream units, then the multi-field units
UNITS: dict[str, StreamUnitSpec | MultiFieldUnitSpec] = {**STREAM_UNITS, **MULTI_FIELD_UNITS}


def all_units() -> list[str]:
    """Every RTL unit name, in registry order: the stream units, then the multi-field units."""
    return list(UNITS)


def get_unit(name: str) -> StreamUnitSpec | MultiFieldUnitSpec:
    """The spec of any RTL unit (a :class:`StreamUnitSpec` or a :class:`MultiFieldUnitSpec`)."""
    if name in UNITS:
        return UNITS[name]
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


def tie_vectors(spec: StreamUnitSpec, cfg, rng: random.Random, per_kind: int = 48, pool: int = 20000) -> list[int]:
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


def unit_vectors(spec: StreamUnitSpec, cfg, seed: int = 1, n_random: int = 1000) -> dict[str, list[int]]:
    """The vector groups for one unit and config (deterministic in ``seed``)."""
    rng = random.Random(seed)
    t = spec.in_type(cfg)
    edge = sorted(set(rail_edges(t) + _near(spec.edges(cfg), t, 0)))
    return {"edge": edge, "tie": tie_vectors(spec, cfg, rng),
            "random": random_words(t, rng, n_random, spec.log_uniform)}


def unit_formats(spec: StreamUnitSpec, cfg) -> dict:
    """Port formats, for reports and the testbench."""
    ti, to = spec.in_type(cfg), spec.out_type(cfg)
    return {"in": str(ti), "out": str(to), "in_bits": ti.bits, "in_signed": ti.signed,
            "out_bits": to.bits, "out_signed": to.signed}


# --- exact expectations (golden) ------------------------------------------------------------------

def attn_cycles(num_tokens: int, parallel: int) -> int:
    """``ATTN_CYCLES`` of the generated kernel (the kernel plan's, :func:`edgemoe.hls.plan.attn_cycles`)."""
    from edgemoe.hls.plan import attn_cycles as kernel_attn_cycles

    return kernel_attn_cycles(num_tokens, parallel)


def softmax_expected(words: list[tuple[int, int, int]], p, perturb: bool = False) -> list[tuple[int, int, int]]:
    """(slot, max, 1/sum) per finished row, in the order of the rows' last words.

    ``words`` are (score, last, slot) in stream order; each slot's rows are
    folded with the golden online_init / online_step / online_finish.
    ``perturb``: the self-test's wrong model (the 1/sum cast rounds by another mode).
    """
    if perturb:
        p = dataclasses.replace(p, softmax_inv=p.softmax_inv.with_modes(
            rounding="TRN" if p.softmax_inv.rounding != "TRN" else "RND"))
    state: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    out = []
    for s, last, slot in words:
        m, l = state.get(slot) or online_init((), p)
        m, l = online_step(m, l, torch.tensor(s, dtype=torch.int64), p)
        if last:
            out.append((slot, int(m), int(online_finish(l, p))))
            state.pop(slot, None)
        else:
            state[slot] = (m, l)
    return out


def schedule_stream(scores: torch.Tensor, parallel: int) -> tuple[list[tuple[int, int, int]], list[int]]:
    """The softmax unit's input for one head in the hardware's schedule, and the row order.

    ``scores`` [N, N] raw attn_score (query, key).  At each schedule cycle,
    every active slot (ascending) sends its query's score for the current key
    (``last`` at step N-1).  Returns the words and the queries in the order
    their rows finish.
    """
    n = scores.shape[0]
    order = key_order(n, parallel).tolist()
    rows = scores.tolist()
    words, done = [], []
    for t in range(attn_cycles(n, parallel)):
        key = t % n
        for o in range(parallel):
            if t < o:
                continue
            q, step = ((t - o) // n) * parallel + o, (t - o) % n
            if q >= n:
                continue
            assert key == order[q][step]
            words.append((rows[q][key], int(step == n - 1), o))
            if step == n - 1:
                done.append(q)
    return words, done


def schedule_expected(scores: torch.Tensor, parallel: int, p) -> list[tuple[int, int, int]]:
    """(slot, max, 1/sum) rows of :func:`schedule_stream`, from the golden attention's own
    :func:`~edgemoe.golden.numerics.softmax.online_softmax_state` over :func:`key_order`."""
    n = scores.shape[0]
    m, inv = online_softmax_state(scores, key_order(n, parallel), p)
    _, done = schedule_stream(scores, parallel)
    return [(q % parallel, int(m[q]), int(inv[q])) for q in done]


def schedule_problems(words: list[dict], n: int, par: int, perturb: bool = False, max_report: int = 12) -> list[str]:
    """Check one recorded schedule (one dict of output fields per cycle) against the golden order.

    Every query meets every key once, in :func:`key_order`'s order; slot ``o``
    holds query ``((t-o)//N)*P + o`` at step ``(t-o)%N`` (the HLS kernel's
    STREAM loop); one key per cycle (``t % N``), at most one refill (query
    read) per cycle; done at step N-1; ``last`` on cycle ``ATTN_CYCLES - 1``
    only, and exactly ``ATTN_CYCLES`` cycles.
    """
    order = key_order(n, par)
    if perturb:                                # self-test: a wrong golden order
        order = (order + 1) % n
    order = order.tolist()
    probs: list[str] = []
    cycles = attn_cycles(n, par)
    if len(words) != cycles:
        probs.append(f"{len(words)} schedule cycles, ATTN_CYCLES = {cycles}")
    seen: dict[int, list[int]] = {}
    refills: dict[int, int] = {}
    dones: dict[int, int] = {}
    for t, w in enumerate(words):
        if w["key"] != t % n:
            probs.append(f"t={t}: key {w['key']} != {t % n}")
        if w["last"] != int(t == cycles - 1):
            probs.append(f"t={t}: last = {w['last']}")
        nref = 0
        for o in range(par):
            q, step = ((t - o) // n) * par + o, (t - o) % n
            want = t >= o and q < n
            a = w["active"][o]
            if a != int(want):
                probs.append(f"t={t} slot {o}: active {a}, expected {int(want)}")
                continue
            if not a:
                if w["refill"][o] or w["done"][o]:
                    probs.append(f"t={t} slot {o}: refill/done on an idle slot")
                continue
            gq, gs = w["query"][o], w["step"][o]
            if (gq, gs) != (q, step):
                probs.append(f"t={t} slot {o}: query/step {gq}/{gs}, HLS schedule {q}/{step}")
            if not 0 <= gq < n or not 0 <= gs < n:
                continue
            if order[gq][gs] != w["key"]:
                probs.append(f"t={t} slot {o}: query {gq} step {gs} meets key {w['key']}, golden {order[gq][gs]}")
            seen.setdefault(gq, []).append(w["key"])
            if w["refill"][o] != int(gs == 0):
                probs.append(f"t={t} slot {o}: refill {w['refill'][o]} at step {gs}")
            if w["done"][o] != int(gs == n - 1):
                probs.append(f"t={t} slot {o}: done {w['done'][o]} at step {gs}")
            if w["refill"][o]:
                nref += 1
                refills[gq] = refills.get(gq, 0) + 1
                if w["load_query"] != gq:
                    probs.append(f"t={t}: load_query {w['load_query']} != refilled query {gq}")
            if w["done"][o]:
                dones[gq] = dones.get(gq, 0) + 1
        if nref > 1:
            probs.append(f"t={t}: {nref} queries read in one cycle")
        if w["load"] != int(nref > 0):
            probs.append(f"t={t}: load {w['load']} with {nref} refills")
    for q in range(n):
        if seen.get(q) != order[q]:
            probs.append(f"query {q}: keys {seen.get(q)} != golden order {order[q]}")
        if refills.get(q) != 1 or dones.get(q) != 1:
            probs.append(f"query {q}: {refills.get(q, 0)} refills, {dones.get(q, 0)} dones")
    if len(probs) > max_report:
        probs = probs[:max_report] + [f"... {len(probs) - max_report} more problems"]
    return probs


def topk_expected(logits: torch.Tensor, k: int, perturb: bool = False) -> list[tuple]:
    """The topk unit's output words for images ``logits`` [B, T, E] (raw gate_logit).

    Per token (kind 0): (0, token, experts best first, their logits) from the
    golden :func:`~edgemoe.golden.numerics.topk.topk`; per image, per expert
    (kind 1): (1, expert, count) from :meth:`Routing.counts`, then (kind 2)
    (2, expert, position, token) for :meth:`Routing.queue`.
    ``perturb``: the self-test's wrong model (ties go to the higher index).
    """
    b, t, e = logits.shape
    if perturb:
        experts = (e - 1) - topk(logits.flip(-1), k)
    else:
        experts = topk(logits, k)
    chosen = torch.gather(logits, -1, experts)
    r = Routing(logits, logits, experts, chosen)
    counts = r.counts(e)
    out: list[tuple] = []
    for i in range(b):
        for n in range(t):
            out.append((KIND_TOKEN, n, tuple(experts[i, n].tolist()), tuple(chosen[i, n].tolist())))
        for x in range(e):
            out.append((KIND_COUNT, x, int(counts[i, x])))
            out += [(KIND_QUEUE, x, pos, tok) for pos, tok in enumerate(r.queue(i, x).tolist())]
    return out


def layernorm_expected(rows, gamma, beta, cfg, perturb: bool | str = False) -> list[list[int]]:
    """The layernorm unit's output rows: golden :func:`~edgemoe.golden.numerics.layernorm.layernorm`
    of ``rows`` [R, D] raw ``act`` with ``gamma`` / ``beta`` [D] raw ``ln_gamma`` / ``ln_beta`` and
    ``eps = model.ln_eps``.  ``perturb``: the self-test's wrong model -- ``"eps"``: twice the
    epsilon (only rows of small variance change); any other true value: the ln_norm cast rounds
    by another mode."""
    p, eps = cfg.precision, cfg.model.ln_eps
    if perturb == "eps":
        eps = 2 * eps
    elif perturb:
        p = dataclasses.replace(p, ln_norm=p.ln_norm.with_modes(
            rounding="TRN" if p.ln_norm.rounding != "TRN" else "RND"))
    x = torch.as_tensor(rows, dtype=torch.int64).reshape(-1, cfg.model.embed_dim)
    y = layernorm(x, torch.as_tensor(gamma, dtype=torch.int64), torch.as_tensor(beta, dtype=torch.int64), eps, p)
    return y.tolist()
