"""Resource model of the generated accelerator: DSP, BRAM36/URAM, LUT, FF per unit.

Counts come from the same parameters the templates use (the kernel plan,
:class:`edgemoe.hls.plan.KernelPlan`: ``row_words``, ``cu_word_bits``, the
weight word width, the tables' lengths) and the precision profile's types, in the primitives of
:mod:`edgemoe.perf.primitives`:

* **Tables** (exp2, reciprocal, rsqrt, GELU): one ROM per unit instance
  (HLS duplicates a ROM per parallel reader), LUTROM when small, else BRAM.
* **LUT / FF**: rough per-MAC and per-unit figures (adder trees, casts, control,
  m_axi adapters); they are the least certain numbers here and say so.

``mode`` follows :mod:`edgemoe.perf.cycles`: ``"onchip"`` is the generated
kernel (activations in on-chip row buffers), ``"edgemoe-dram"`` Edge-MoE's
architecture (intermediates in DRAM, whole-layer weight ping-pong buffers).
With ``batch > 1`` and weight sharing, the on-chip kernel must hold every
image's rows at once (the buffers scale with the batch); in DRAM mode they do not.

Where the RTL units have yosys figures (read by the caller into a
:class:`~edgemoe.perf.measured.SimResults`), :func:`yosys_comparison` sets
model and yosys side by side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edgemoe.boards import BOARDS
from edgemoe.hls.plan import KernelPlan

from .measured import SimResults, yosys_figures
from .primitives import Memory, UnitResources, add_mac_array

#: default utilisation cap for "fits the board"
DEFAULT_CAP = 0.80

#: rough LUT / FF figures (not measured: order-of-magnitude per structure)
LUT_PER_CONTROL = 1500      # FSM + loop counters of one function
FF_PER_CONTROL = 2000
LUT_PER_MAXI = 1200         # one m_axi adapter, plus per data bit below
FF_PER_MAXI = 1500
LUT_PER_MAXI_BIT = 3
FF_PER_MAXI_BIT = 6


def _table_rom(name: str, entries: int, bits: int) -> Memory:
    return Memory(name, entries, bits)


def arithmetic_units(cfg, plan: KernelPlan | None = None) -> dict[str, UnitResources]:
    """One instance of each fixed-point unit (exp, recip, rsqrt, GELU): table ROM + multipliers.

    These are the RTL units of ``sim/`` too, so they are what yosys figures are
    compared against.
    """
    plan = plan or KernelPlan.from_config(cfg)
    rom = plan.table_entries
    p = cfg.precision
    board = BOARDS[cfg.hardware.board]
    tf = p.table_frac_bits
    units = {}

    u = UnitResources("exp")
    u.add_memory(_table_rom("exp2 table", rom["exp2"], tf + 1), board)
    u.add_mults("x*log2e", 1, p.attn_score.bits + 1, tf + 2)
    u.add_mults("interpolation", 1, tf + 2, tf - p.exp_table_bits + 1)
    u.lut += 3 * (tf + 8) + 200  # range reduction shifter, output cast
    u.ff += 4 * (tf + 8)
    units["exp"] = u

    u = UnitResources("recip")
    u.add_memory(_table_rom("reciprocal table", rom["recip"], tf + 1), board)
    u.add_mults("interpolation", 1, tf + 2, tf - p.recip_table_bits + 1)
    u.lut += 2 * p.softmax_sum.bits * 6 + 200  # leading-one detector + normalising shifters
    u.ff += 4 * (tf + 8)
    units["recip"] = u

    u = UnitResources("rsqrt")
    u.add_memory(_table_rom("rsqrt table", rom["rsqrt"], tf + 1), board)
    u.add_mults("interpolation", 1, tf + 2, tf - p.rsqrt_table_bits + 1)
    u.lut += 2 * 64 * 6 + 200  # 64-bit normaliser (wide_t input)
    u.ff += 4 * (tf + 8)
    units["rsqrt"] = u

    u = UnitResources("gelu")
    u.add_memory(_table_rom("GELU table", rom["gelu"], p.gelu_table.bits), board)
    u.add_mults("interpolation", 1, p.gelu_table.bits + 1, max(1, p.act.frac_bits - p.gelu_step_log2) + 1)
    u.lut += 3 * p.act.bits + 100
    u.ff += 3 * p.act.bits
    units["gelu"] = u
    return units


def rtl_unit_models(cfg, plan: KernelPlan | None = None, layernorm_plan=None) -> dict[str, UnitResources]:
    """The model's figure for each RTL unit of ``sim/`` (the structure that unit builds).

    The four table units of :func:`arithmetic_units`, and:

    * ``softmax``: the online-softmax state of ``P`` interleaved rows -- two exp
      datapaths (``exp(m - m')``, ``exp(s - m')``), the ``l * alpha``
      multiply-add, one reciprocal, ``P`` (max, sum) registers;
    * ``compute_tile``: ``cu_in x cu_out`` MACs with exact accumulators, one GELU
      datapath and one ``y * score`` product per neuron, the output casts;
    * ``layernorm``: the LayerNorm arithmetic (square, normalise, affine), two
      sequential dividers by D, one rsqrt, the unit's row slots
      (``layernorm_plan``, the RTL unit's own plan, passed in by the caller: S
      rows of D words, a copy per read port) and the gamma/beta RAM; only
      when ``layernorm_plan`` is given;
    * ``topk``: ``k`` sorted (logit, index) registers with their comparators and
      the per-expert queue RAM (E x 2**token_bits words);
    * ``attn_schedule``: counters only.

    These are what :func:`yosys_comparison` sets beside the yosys figures.
    """
    plan = plan or KernelPlan.from_config(cfg)
    m, p, h = cfg.model, cfg.precision, cfg.hardware
    board = BOARDS[h.board]
    units = arithmetic_units(cfg, plan)
    pp = h.attn_parallel

    u = UnitResources("softmax")
    for name in ("exp", "exp", "recip"):
        a = units[name]
        u.dsp += a.dsp
        u.lut += a.lut
        u.ff += a.ff
        u.bram36 += a.bram36
    u.add_mults("l * alpha", 1, p.softmax_sum.bits, p.exp.bits, a_signed=p.softmax_sum.signed,
                b_signed=p.exp.signed)
    u.ff += pp * (p.attn_score.bits + p.softmax_sum.bits)
    u.lut += 4 * (p.attn_score.bits + p.softmax_sum.bits) + 100  # max compare, subtracts, cast, interlock
    units["softmax"] = u

    u = UnitResources("compute_tile")
    k_bits = math.ceil(math.log2(max(2, plan.k_max)))
    add_mac_array(u, h.cu_in, h.cu_out, p.act.bits, p.weight.bits,
                  p.act.bits + p.weight.bits + k_bits)
    g = units["gelu"]
    u.dsp += h.cu_out * g.dsp
    u.lut += h.cu_out * g.lut
    u.ff += h.cu_out * g.ff
    u.bram36 += h.cu_out * g.bram36
    u.add_mults("y * score", h.cu_out, p.act.bits, p.gate_score.bits, b_signed=p.gate_score.signed)
    u.lut += h.cu_out * 4 * p.act.bits  # bias align + cast per neuron
    units["compute_tile"] = u

    plan = layernorm_plan
    if plan is not None:
        u = UnitResources("layernorm")
        u.add_mults("(x-mean)^2", 1, p.ln_centered.bits, p.ln_centered.bits)
        u.add_mults("(x-mean)*inv_std", 1, p.ln_centered.bits, p.ln_inv_std.bits, b_signed=p.ln_inv_std.signed)
        u.add_mults("norm*gamma", 1, p.ln_norm.bits, p.ln_gamma.bits)
        r = units["rsqrt"]
        u.dsp += r.dsp
        u.lut += r.lut
        u.ff += r.ff
        # S row slots, read by the statistics and the output pass (one copy per read port)
        u.add_memory(Memory(f"row slots ({plan.slots} rows)", plan.slots * m.embed_dim, p.act.bits), board, copies=2)
        u.add_memory(Memory("gamma/beta", m.embed_dim, p.ln_gamma.bits + p.ln_beta.bits), board)
        sum_bits, sq_bits = plan.sum_max.bit_length(), plan.sumsq_max.bit_length()
        # sequential dividers (shift + long division by D's odd part): a remainder subtract per quotient bit
        div_lut = sum(d.step_bits * (d.odd - 1).bit_length() * 2 for d in (plan.mean_div, plan.var_div))
        u.lut += div_lut + 2 * (sum_bits + sq_bits) + 4 * p.act.bits + 200
        u.ff += 2 * (sum_bits + sq_bits) + plan.slots * (p.ln_inv_std.bits + p.act.bits) \
            + (plan.rsqrt_depth + plan.out_depth) * 2 * p.act.bits
        u.detail.append(f"mean / var: shift + long division by {plan.mean_div.odd} ({plan.mean_div.cycles} and "
                        f"{plan.var_div.cycles} cycles), no DSP")
        units["layernorm"] = u

    u = UnitResources("topk")
    token_bits = max(1, math.ceil(math.log2(m.num_tokens)))
    expert_bits = max(1, math.ceil(math.log2(m.num_experts)))
    u.add_memory(Memory("expert queues", m.num_experts << token_bits, token_bits), board)
    u.ff += 2 * m.top_k * (p.gate_logit.bits + expert_bits) + m.num_experts * (token_bits + 1)
    u.lut += m.top_k * (p.gate_logit.bits + expert_bits) * 2 + m.num_experts * token_bits + 100
    units["topk"] = u

    u = UnitResources("attn_schedule")
    tok_bits = max(1, math.ceil(math.log2(m.num_tokens + 1)))
    u.ff += (pp + 2) * tok_bits
    u.lut += (pp + 2) * tok_bits * 2
    units["attn_schedule"] = u
    return units


# --- the whole design ---------------------------------------------------------------------

@dataclass
class ResourceEstimate:
    """Per-unit resources, totals and utilisation of a board."""

    cfg: object
    mode: str
    batch: int
    share_weights: bool
    units: list[UnitResources]
    board: str

    @property
    def totals(self) -> dict[str, float]:
        return {k: sum(getattr(u, k) for u in self.units) for k in ("dsp", "bram36", "uram", "lut", "ff")}

    @property
    def limits(self) -> dict[str, int]:
        b = BOARDS[self.board]
        return {"dsp": b.dsp, "bram36": b.bram36, "uram": b.uram, "lut": b.lut, "ff": b.ff}

    @property
    def utilisation(self) -> dict[str, float]:
        t, lim = self.totals, self.limits
        return {k: (t[k] / lim[k] if lim[k] else (0.0 if t[k] == 0 else math.inf)) for k in t}

    def fits(self, cap: float = DEFAULT_CAP, check=("dsp", "bram36", "uram", "lut")) -> bool:
        u = self.utilisation
        return all(u[k] <= cap for k in check)

    def violations(self, cap: float = DEFAULT_CAP, check=("dsp", "bram36", "uram", "lut")) -> list[str]:
        u = self.utilisation
        return [k for k in check if u[k] > cap]

    def table(self, details: bool = False) -> str:
        lines = [f"resources of {self.cfg.name} ({self.cfg.precision.name}, cu {self.cfg.hardware.cu_in}x"
                 f"{self.cfg.hardware.cu_out}, P={self.cfg.hardware.attn_parallel}) on {self.board}, mode {self.mode}, "
                 f"batch {self.batch}{' (weights shared)' if self.share_weights and self.batch > 1 else ''}",
                 f"  {'unit':<22}{'DSP':>8}{'BRAM36':>9}{'URAM':>6}{'LUT':>10}{'FF':>10}"]
        for u in self.units:
            lines.append(f"  {u.name:<22}{u.dsp:>8}{u.bram36:>9.1f}{u.uram:>6}{u.lut:>10}{u.ff:>10}")
            if details:
                lines += [f"      {d}" for d in u.detail]
        t, lim, ut = self.totals, self.limits, self.utilisation
        lines.append(f"  {'total':<22}{t['dsp']:>8.0f}{t['bram36']:>9.1f}{t['uram']:>6.0f}{t['lut']:>10.0f}{t['ff']:>10.0f}")
        lines.append(f"  {'board limit':<22}{lim['dsp']:>8}{lim['bram36']:>9}{lim['uram']:>6}{lim['lut']:>10}{lim['ff']:>10}")
        lines.append("  " + f"{'utilisation':<22}" + "".join(
            f"{100 * ut[k]:>{w - 1}.1f}%" if math.isfinite(ut[k]) else f"{'n/a':>{w}}"
            for k, w in (("dsp", 8), ("bram36", 9), ("uram", 6), ("lut", 10), ("ff", 10))))
        lines.append("  (LUT/FF are rough per-structure figures; DSP and memories follow the types and sizes)")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"board": self.board, "mode": self.mode, "batch": self.batch, "units": [u.as_dict() for u in self.units],
                "totals": self.totals, "limits": self.limits, "utilisation": self.utilisation}


def estimate_resources(cfg, mode: str = "onchip", batch: int = 1, share_weights: bool | None = None,
                       board: str | None = None) -> ResourceEstimate:
    """Resources of the accelerator for ``cfg`` on ``board`` (default: the config's board)."""
    if mode not in ("onchip", "edgemoe-dram"):
        raise ValueError(f"mode {mode!r}: must be 'onchip' or 'edgemoe-dram'")
    share = (batch > 1) if share_weights is None else bool(share_weights and batch > 1)
    plan = KernelPlan.from_config(cfg)
    m, p, h = cfg.model, cfg.precision, cfg.hardware
    bname = board or h.board
    brd = BOARDS[bname]
    wb = plan.weight_word_bits
    cub = plan.cu_word_bits
    rw = plan.row_words
    n, d, e = m.num_tokens, m.embed_dim, m.num_experts
    hd = m.head_dim
    per_img = batch if share else 1
    arith = arithmetic_units(cfg, plan)
    units: list[UnitResources] = []

    def arith_instances(u: UnitResources, name: str, count: int) -> None:
        a = arith[name]
        u.dsp += count * a.dsp
        u.lut += count * a.lut
        u.ff += count * a.ff
        u.bram36 += count * a.bram36
        u.uram += count * a.uram
        u.detail.append(f"{count} x {name} unit (table + interpolation): {count * a.dsp} DSP, "
                        f"{count * a.bram36:g} BRAM36, {count * a.lut} LUT")

    # compute unit ---------------------------------------------------------------------
    cu = UnitResources("compute unit")
    macs = h.cu_in * h.cu_out
    acc_bits = p.accum.bits
    add_mac_array(cu, h.cu_in, h.cu_out, cub, wb, acc_bits)
    cu.add_mults("score-scaled accumulate", 1, p.act.bits, p.gate_score.bits, b_signed=p.gate_score.signed)
    arith_instances(cu, "gelu", 1)
    cu.lut += 4 * acc_bits + LUT_PER_CONTROL  # output cast (round + saturate), control
    cu.ff += FF_PER_CONTROL
    if mode == "onchip":
        # static weight_word_t w[2][CU_OUT][ROW_WORDS]: dim 2 complete, dim 3 cyclic CU_IN
        cu.add_memory(Memory("weight tile ping-pong w[2][CU_OUT][ROW_WORDS]", 2 * math.ceil(rw / h.cu_in), wb,
                             banks=h.cu_out * h.cu_in), brd)
    else:
        # Edge-MoE: whole-layer ping-pong weight buffers of CU_OUT x CU_IN blocks (one block per address:
        # hls::vector, i.e. reshaped to a CU_IN*CU_OUT-word-wide memory)
        layer = max(d * d, d * m.mlp_hidden, d * m.expert_hidden, d * m.patch_dim)  # q, k, v are separate layers
        cu.add_memory(Memory("layer weights (ping + pong)", math.ceil(layer / macs), wb * macs), brd, copies=2)
        cu.add_memory(Memory("input row blocks", math.ceil(rw / h.cu_in), cub, banks=h.cu_in), brd)
    cu.add_memory(Memory("bias ping-pong b[2][CU_OUT]", 2, wb, banks=h.cu_out, registers=True), brd)
    units.append(cu)

    # attention ------------------------------------------------------------------------
    at = UnitResources("attention")
    pp = h.attn_parallel
    if mode == "onchip":
        at.add_mults("QK^T slot MAC", pp * h.cu_in, p.qkv.bits, p.qkv.bits)
        at.add_mults("A*V score MAC", h.cu_in, p.qkv.bits, p.qkv.bits)
        at.add_mults("A*V MAC", h.cu_in, p.attn_prob.bits, p.qkv.bits, a_signed=p.attn_prob.signed)
        at.add_mults("online softmax l*alpha", pp, p.softmax_sum.bits, p.exp.bits,
                     a_signed=p.softmax_sum.signed, b_signed=p.exp.signed)
        at.add_mults("probability exp*inv", 1, p.exp.bits, p.softmax_inv.bits, a_signed=False, b_signed=False)
        arith_instances(at, "exp", 2 * pp + 1)
        arith_instances(at, "recip", pp)
        at.add_memory(Memory("q[P][HEAD_DIM]", hd, p.qkv.bits, banks=pp), brd)
        at.add_memory(Memory("row_max[N]", n, p.attn_score.bits), brd)
        at.add_memory(Memory("row_inv[N]", n, p.softmax_inv.bits), brd)
        at.add_memory(Memory("A*V acc[HEAD_DIM]", 1, 64, banks=hd, registers=True), brd)
    else:
        blk = max(1, h.axi_width // p.act.bits)
        at.add_mults("QK^T slot MAC", pp * blk, p.qkv.bits, p.qkv.bits)
        at.add_mults("A*V MAC", pp * blk, p.attn_prob.bits, p.qkv.bits, a_signed=p.attn_prob.signed)
        arith_instances(at, "exp", 2 * pp)
        arith_instances(at, "recip", pp)
        at.add_memory(Memory("q blocks[P][DIM]", math.ceil(d / blk), p.qkv.bits * blk, banks=pp), brd)
        at.add_memory(Memory("A*V acc[P][DIM]", math.ceil(d / blk), 48 * blk, banks=pp), brd)
    at.lut += 2 * LUT_PER_CONTROL
    at.ff += 2 * FF_PER_CONTROL
    units.append(at)

    # LayerNorm, residual, gate --------------------------------------------------------
    ln = UnitResources("layernorm + residual")
    ln.add_mults("(x-mean)^2", 1, p.ln_centered.bits, p.ln_centered.bits)
    ln.add_mults("(x-mean)*inv_std", 1, p.ln_centered.bits, p.ln_inv_std.bits, b_signed=p.ln_inv_std.signed)
    ln.add_mults("norm*gamma", 1, p.ln_norm.bits, p.ln_gamma.bits)
    ln.add_mults("mean/var by constant", 2, 48, 18)
    arith_instances(ln, "rsqrt", 1)
    ln.add_memory(Memory("c[DIM]", d, p.ln_centered.bits), brd)
    ln.lut += 2 * LUT_PER_CONTROL + 3 * 64
    ln.ff += 2 * FF_PER_CONTROL
    units.append(ln)

    if m.moe_blocks:
        g = UnitResources("gate + top-k + queues")
        arith_instances(g, "exp", 1)
        arith_instances(g, "recip", 1)
        g.add_mults("exp*inv", 1, p.exp.bits, p.softmax_inv.bits, a_signed=False, b_signed=False)
        rq = per_img if mode == "onchip" else 1
        g.add_memory(Memory("route.queue[E][N]", e * n, 16), brd, copies=rq)
        g.add_memory(Memory("route.queue_score[E][N]", e * n, p.gate_score.bits), brd, copies=rq)
        g.add_memory(Memory("route.chosen[N][K] + score", n * m.top_k, 16 + p.gate_score.bits), brd, copies=rq)
        g.lut += 2 * LUT_PER_CONTROL + e * 40
        g.ff += 2 * FF_PER_CONTROL
        units.append(g)

    # work buffers -------------------------------------------------------------------
    buf = UnitResources("activation buffers")
    if mode == "onchip":
        # static rows_t x, hbuf, tbuf, big, logits: [N_TOKENS][ROW_WORDS] cu words, read CU_IN per
        # cycle by the MAC loop (cyclic partition by CU_IN for II=1)
        for name in ("x", "hbuf", "tbuf", "big", "logits"):
            buf.add_memory(Memory(f"rows_t {name}[N][ROW_WORDS]", n * math.ceil(rw / h.cu_in), cub, banks=h.cu_in),
                           brd, copies=per_img)
        if m.moe_blocks:
            buf.add_memory(Memory("moe_acc[N][DIM] (wide_t)", n * d, 64), brd, copies=per_img)
        buf.add_memory(Memory("identity/no_score[N]", n, 16 + p.gate_score.bits), brd)
    else:
        buf.add_memory(Memory("stream FIFOs", 64, cub * h.cu_in, banks=3), brd)
        buf.add_memory(Memory("softmax state rows", n, 2 * m.num_heads * p.act.bits), brd)
    units.append(buf)

    # AXI -----------------------------------------------------------------------------
    ax = UnitResources("m_axi adapters")
    nb = len(set(h.bundle_of.values())) + (3 if mode == "edgemoe-dram" else 0)
    ax.lut += nb * (LUT_PER_MAXI + LUT_PER_MAXI_BIT * h.axi_width)
    ax.ff += nb * (FF_PER_MAXI + FF_PER_MAXI_BIT * h.axi_width)
    ax.bram36 += nb * max(0.5, h.axi_width / 128)  # read/write burst buffers
    ax.lut += 2000  # s_axilite + top-level control
    ax.ff += 2500
    ax.detail.append(f"{nb} bundle(s) at {h.axi_width} bits + s_axilite control")
    units.append(ax)

    for u in units:
        u.lut, u.ff = int(round(u.lut)), int(round(u.ff))
    return ResourceEstimate(cfg, mode, batch, share, units, bname)


# --- yosys figures of the RTL units -------------------------------------------------------

def yosys_comparison(cfg, measured: SimResults | None) -> tuple[list[dict], str]:
    """Model vs yosys per RTL unit: (rows, text).  Empty rows when no yosys figures exist.

    Each row: ``unit``, ``model`` (:func:`rtl_unit_models`, None for a unit the
    model has no figure of, like the naive GELU reference), ``yosys`` and
    ``ratio`` (yosys / model per resource, None where the model says 0).
    """
    ys = yosys_figures(cfg, measured)
    plan = measured.layernorm_plan if measured is not None else None
    model = rtl_unit_models(cfg, layernorm_plan=plan(cfg) if plan is not None else None)
    rows = []
    for unit, fig in ys.items():
        m = model.get(unit)
        md = m.as_dict() if m else None
        ratio = {k: (fig[k] / md[k] if md and md.get(k) else None) for k in ("dsp", "lut", "ff", "bram36") if k in fig}
        rows.append({"unit": unit, "model": md, "yosys": fig, "ratio": ratio})
    if not rows:
        where = f"{measured.root}/{cfg.digest()[:12]}" if measured is not None else "the sim build folder"
        return [], (f"no yosys figures of the RTL units for this config under {where} "
                    f"(make sim-report, or edgemoe sim resources "
                    f"--config <this config>); model only")
    def cell(v):
        return "-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))

    def rat(v):
        return "-" if v is None else f"{v:.2f}x"

    head = f"  {'unit':<14}"
    for k in ("DSP", "LUT", "FF", "BRAM36"):
        head += f"{k + ' model':>13}{'yosys':>8}{'y/m':>7}"
    lines = [head]
    for r in rows:
        m, y, q = r["model"] or {}, r["yosys"], r["ratio"]
        line = f"  {r['unit']:<14}"
        for k in ("dsp", "lut", "ff", "bram36"):
            line += f"{cell(m.get(k)):>13}{cell(y.get(k)):>8}{rat(q.get(k)):>7}"
        lines.append(line)
    return rows, "\n".join(lines)


def model_comparison(cfg, measured) -> str:
    """Markdown: the resource model's figure of each RTL unit beside yosys's (``y/m`` = yosys / model),
    from the yosys figures in ``measured`` (:class:`~edgemoe.perf.measured.SimResults`); "" without any."""
    rows, _ = yosys_comparison(cfg, measured)
    if not rows:
        return ""

    def fmt(v) -> str:
        return f"{v:g}" if isinstance(v, float) else "-" if v is None else str(v)

    out = ["", f"### Resource model vs yosys: {cfg.name}, {cfg.precision.name}", "",
           "| unit | DSP model | DSP yosys | LUT model | LUT yosys | LUT y/m | FF model | FF yosys | FF y/m |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        m, y, q = r["model"], r["yosys"], r["ratio"]
        if m is None:
            continue
        ratio = {k: "-" if q.get(k) is None else f"{q[k]:.2f}x" for k in ("lut", "ff")}
        out.append(f"| {r['unit']} | {m['dsp']} | {fmt(y.get('dsp'))} | {m['lut']} | {fmt(y.get('lut'))} | "
                   f"{ratio['lut']} | {m['ff']} | {fmt(y.get('ff'))} | {ratio['ff']} |")
    return "\n".join(out) + "\n"
