"""Registry of the attention / routing / LayerNorm RTL units, their golden expectations, and their runs.

Four units whose transactions are not one word in, one word out (so they do
not fit :class:`edgemoe.sim.units.UnitSpec` and the generic stream
testbench); each has its own cocotb module in ``sim/tb/``:

* ``softmax`` -- :class:`.unit_softmax.OnlineSoftmaxUnit`, golden
  ``softmax.online_init / online_step / online_finish`` and, for whole heads,
  ``online_softmax_state`` over ``attention.key_order``; testbench ``tb_softmax``;
* ``attn_schedule`` -- :class:`.unit_attn_schedule.AttnScheduleUnit`, golden
  ``attention.key_order`` and the HLS kernel's STREAM loop / ``ATTN_CYCLES``;
  testbench ``tb_attn_schedule``;
* ``topk`` -- :class:`.unit_topk.TopKQueueUnit`, golden ``numerics.topk.topk``
  and ``moe.Routing`` (``counts``, ``queue``); testbench ``tb_topk``;
* ``layernorm`` -- :class:`.unit_layernorm.LayerNormUnit`, golden
  ``numerics.layernorm.layernorm`` (rows of ``embed_dim`` words, gamma/beta
  loaded through a parameter port); testbench ``tb_layernorm``.

This module holds the registry and the exact expectations (torch + golden
only, no Amaranth: the testbenches import it).  Generation, simulation and
synthesis are the shared entry points, which find these units through
:func:`edgemoe.sim.units.get_unit`: :func:`edgemoe.sim.build.generate`,
:func:`edgemoe.sim.runner.run_unit` (raises
:class:`~edgemoe.sim.runner.SimulationFailed`; each spec names its test
module and its default vector count) and :mod:`edgemoe.sim.resources`:

    from edgemoe.sim.runner import run_unit
    run_unit("softmax", load_config("m3vit-micro"), "icarus")

or ``python -m edgemoe.sim.runner softmax topk --config m3vit-micro``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from edgemoe.golden.attention import key_order
from edgemoe.golden.moe import Routing
from edgemoe.golden.numerics.layernorm import layernorm
from edgemoe.golden.numerics.softmax import online_finish, online_init, online_softmax_state, online_step
from edgemoe.golden.numerics.topk import topk

from .units import maker

#: the sum recurrence of the softmax unit is split in this many register stages
SOFTMAX_RECURRENCE = 2

KIND_TOKEN, KIND_COUNT, KIND_QUEUE = 0, 1, 2     # = unit_topk's out_kind codes


@dataclass(frozen=True)
class AttnUnitSpec:
    """One multi-word unit: builder, testbench module, parameters it reads from the config."""

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
    from .formats import layernorm_plan

    p = cfg.precision
    return {**layernorm_plan(cfg).params(), "act": str(p.act), "ln_centered": str(p.ln_centered),
            "ln_inv_std": str(p.ln_inv_std), "ln_norm": str(p.ln_norm), "ln_gamma": str(p.ln_gamma),
            "ln_beta": str(p.ln_beta), "table_frac_bits": p.table_frac_bits, "rsqrt_table_bits": p.rsqrt_table_bits}


ATTENTION_UNITS: dict[str, AttnUnitSpec] = {s.name: s for s in (
    AttnUnitSpec("softmax", "edgemoe_softmax", maker("unit_softmax", "OnlineSoftmaxUnit",
                                                      recurrence=SOFTMAX_RECURRENCE),
                 "tb_softmax", _softmax_params, "online softmax: (max, 1/sum) per row, P interleaved rows"),
    AttnUnitSpec("attn_schedule", "edgemoe_attn_schedule", maker("unit_attn_schedule", "AttnScheduleUnit"),
                 "tb_attn_schedule", _schedule_params, "reordered attention: key stream and query slots"),
    AttnUnitSpec("topk", "edgemoe_topk", maker("unit_topk", "TopKQueueUnit"),
                 "tb_topk", _topk_params, "gate routing: top-k per token, per-expert token queues"),
    AttnUnitSpec("layernorm", "edgemoe_layernorm", maker("unit_layernorm", "LayerNormUnit"),
                 "tb_layernorm", _layernorm_params, "LayerNorm with rsqrt: rows of D words, gamma/beta RAM",
                 vectors=40),
)}


# --- exact expectations (golden) ------------------------------------------------------------------

def attn_cycles(num_tokens: int, parallel: int) -> int:
    """``ATTN_CYCLES`` of the generated kernel (the formula of ``hls/writer.py``)."""
    n, par = num_tokens, parallel
    return ((n - 1) // par) * n + (n - 1) % par + n


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
