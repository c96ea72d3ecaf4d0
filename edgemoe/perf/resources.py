"""Resource model of the generated accelerator: DSP, BRAM36/URAM, LUT, FF of what the kernel instantiates.

:func:`estimate_resources` lists every thing the kernel as written
(``hls/templates/edgemoe_vit.cpp.j2``) instantiates as an :class:`Item`:
an array, a ROM, a group of multipliers, a divider, logic or a function's
control, with where it is (function / loop label), how many copies, its
shape and its DSP / BRAM36 / URAM / LUT / FF.  Sizes come from the kernel
plan (:class:`edgemoe.hls.plan.KernelPlan`: ``row_words``, ``cu_word_bits``,
the weight word width, the tables' lengths) and the precision profile's types,
costs from the primitives of :mod:`edgemoe.perf.primitives`.  The rules:

* **Function instances.**  A function that is not inlined is one RTL instance
  per call site (in each instance of its caller) unless an ``ALLOCATION``
  pragma limits it: ``compute_unit`` is one instance shared by every layer
  and by the attention's two products, with one of each of its DATAFLOW
  processes, ``write_rows`` one shared by every tap, ``layernorm`` one for a
  block's two calls, ``softmax`` one (one call site, in the heads loop)
  (:data:`CALL_SITES`, :data:`ALLOCATION_LIMITS`; the tool may share the other
  functions' sequential calls too, which is not assumed).
* **Multipliers** are counted where the code unrolls them: ``MAC_O x MAC_I``
  in the compute unit, which runs the linear layers and, head by head, the
  attention's q . k (``CU_SCORES``, keys from on chip) and A*V (values from on
  chip); the softmax has no dot product, only its lanes' exps and products
  (``SM_LANES``: ``ATTN_P``, ``PROB_U``: ``PROB_LANES``).  A MAC is one
  multiplier that every pass uses, so it takes the DSPs of the widest operand
  pair any pass feeds it (:func:`mac_operand_pairs`).  A loop that misses its
  II may let the tool share some; that is not assumed.  DSPs per multiply
  follow the operand widths (:func:`~edgemoe.perf.primitives.dsp_per_mult`):
  a narrow type's width (``cu_word_t``, ``gate_score_t``, a table entry, a
  masked index); a ``wide_t`` (64-bit) where the operand is a ``wide_t``
  result the tool cannot narrow (a saturating ``to_<type>()`` still in a ``wide_t``;
  the kernel stores such a result in its own type before it multiplies);
  ``int`` address products are 32 x 32.
* **Arrays** are their declared element type and shape after the template's
  ARRAY_PARTITION pragmas: every ``rows_t`` is ``[N_TOKENS][ROW_WORDS]``
  ``cu_word_t`` in ``CU_IN`` cyclic banks (``x``, ``hbuf``, ``tbuf``, ``big``,
  and ``logits``, which holds a head's scores); a bank goes to registers,
  LUTRAM, URAM or BRAM36/BRAM18 by
  :meth:`Memory.cost <edgemoe.perf.primitives.Memory.cost>`.
* **The weight path**: the compute unit is a DATAFLOW region of ``load_tiles``
  and ``compute_tiles`` joined by a FIFO of ``TILE_BEATS`` bus words of
  ``AXI_WIDTH`` bits (``KernelPlan.tile_beats``, one tile: BRAM, never URAM);
  ``compute_tiles`` unpacks the next tile inside the MAC pipeline into the
  other half of the ping-pong tile buffer ``w[2][CU_OUT][ROW_WORDS]`` of
  ``cu_weight_t`` (a matrix element or a head's key / value word, whichever
  is wider; the half an address bit of each of its CU_OUT x CU_IN banks, so
  twice their depth; each bank's write port selecting among the UNPACK_FIELDS
  fields of a step, and the words of ``in`` the attention's passes unpack:
  ``W_KEYS`` CU_IN words of a key row, ``W_VALUES`` one value column of
  CU_OUT rows), ``CONSTS`` a bus word into WORDS_PER_BEAT banks of
  cls / pos / ln_par.
* **Tables** (exp2, reciprocal, rsqrt, GELU; declared ``long long``) are a ROM
  at the width their entries need (:func:`table_bits`) in each function
  instance that reads them.
* **Dividers**: ``/`` and ``%`` by a constant that is not a power of two are
  divider cores (LUT / FF only).
* **LUT / FF**: rough per-structure figures (casts, shifts, adder trees,
  control, m_axi adapters); the least certain numbers here, and they say so.

The estimate fits when every resource is at most :data:`DEFAULT_CAP` of the
board (:attr:`ResourceEstimate.fit`, :attr:`~ResourceEstimate.binding`,
:attr:`~ResourceEstimate.verdict`).

``mode`` follows :mod:`edgemoe.perf.cycles`: ``"onchip"`` is the generated
kernel (activations in on-chip row buffers), ``"edgemoe-dram"`` Edge-MoE's
architecture (intermediates in DRAM, whole-layer weight ping-pong buffers).
The kernel as written runs the images of a call with one image's row buffers
and the MoE state of a group of ``hardware.moe_batch`` images (``MOE_ROWS``
rows of moe_acc, x_keep, h_keep and the expert queues), so its resources
depend on ``moe_batch``, not on the batch.  ``share_weights`` is a what-if:
every weight shared by the whole batch would need every image's rows on chip
at once (the buffers scale with the batch); in DRAM mode they would not.

The RTL units of ``sim/`` have their own figures (:func:`rtl_unit_models`);
where yosys figures exist (read by the caller into a
:class:`~edgemoe.perf.measured.SimResults`), :func:`yosys_comparison` sets
model and yosys side by side.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from edgemoe.boards import BOARDS
from edgemoe.hls.interface import TOP, m_axi_bundles
from edgemoe.hls.plan import KernelPlan

from .measured import SimResults, yosys_figures
from .primitives import DSP_P_BITS, Memory, UnitResources, add_mac_array, dsp_per_mult

#: a design fits a board when every resource is used at most this fraction of the board's
DEFAULT_CAP = 0.80
#: the resources the verdict checks, and their names
RESOURCES = ("dsp", "bram36", "uram", "lut", "ff")
RESOURCE_NAMES = {"dsp": "DSP", "bram36": "BRAM36", "uram": "URAM", "lut": "LUT", "ff": "FF"}
#: the resources whose figures are rough per-structure estimates (the verdict says so when one binds)
ROUGH = ("lut", "ff")

#: rough LUT / FF figures (not measured: order-of-magnitude per structure)
LUT_PER_CONTROL = 1500      # FSM + loop counters of one function
FF_PER_CONTROL = 2000
LUT_PER_PIPELINE = 150      # one pipelined loop's controller
FF_PER_PIPELINE = 200
LUT_PER_CAST = 160          # round + saturate of a 64-bit value
LUT_PER_WIDE_SHIFT = 64 * 6  # a variable shift of a 64-bit value (barrel shifter)
LUT_PER_MSB = 150           # msb_index of a 64-bit value
LUT_PER_MAXI = 1200         # one m_axi adapter, plus per data bit below
FF_PER_MAXI = 1500
LUT_PER_MAXI_BIT = 3
FF_PER_MAXI_BIT = 6
LUT_S_AXILITE = 2000        # s_axilite registers + the top level's control
FF_S_AXILITE = 2500


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


# --- the kernel as written: what it instantiates --------------------------------------------

#: wide_t (edgemoe_numerics.h): ``long long``
WIDE_BITS = 64
#: C ``int``: loop counters, offsets, sizes
INT_BITS = 32

#: call sites of each kernel function that is not inlined, by caller (hls/templates/edgemoe_vit.cpp.j2;
#: the tests check them against the generated source)
CALL_SITES = {
    "run_images": {TOP: 1},
    "compute_unit": {"run_images": 11},
    "load_tiles": {"compute_unit": 1},
    "compute_tiles": {"compute_unit": 1},
    "layernorm": {"run_images": 2},
    "softmax": {"run_images": 1},
    "write_rows": {"run_images": 14},
    "pack_rows": {"run_images": 2},
}
#: ``ALLOCATION function instances=<f> limit=<n>`` of the template: f -> n
ALLOCATION_LIMITS = {"compute_unit": 1, "write_rows": 1, "pack_rows": 1, "layernorm": 1}


def function_instances() -> dict[str, int]:
    """RTL instances of each kernel function: one per call site in each instance of its caller (the
    tool's default), at most its ALLOCATION limit."""
    out = {TOP: 1}

    def count(name: str) -> int:
        if name not in out:
            n = sum(sites * count(caller) for caller, sites in CALL_SITES[name].items())
            out[name] = min(n, ALLOCATION_LIMITS.get(name, n))
        return out[name]

    for name in CALL_SITES:
        count(name)
    return out


def mac_operand_pairs(cfg, plan: KernelPlan) -> dict[str, tuple[int, bool, int, bool]]:
    """The operand pairs the compute unit's MACs multiply, by pass: ``{what: (a_bits, a_signed, b_bits,
    b_signed)}`` -- the linear layers' act x matrix element (the patch embedding's pixel, one bit more as a
    signed word, x matrix element), the score pass's q x k (qkv_t x qkv_t) and A*V's probability x v
    (attn_prob_t x qkv_t).  Every pass runs on the same CU_IN x CU_OUT multipliers, one per MAC, so a MAC
    takes the DSPs of the widest pair (:func:`mac_dsp`); the words travel in the ``cu_word_t`` /
    ``cu_weight_t`` containers."""
    p, mb = cfg.precision, plan.matrix_word_bits
    return {"linear: act x matrix element": (p.act.bits, p.act.signed, mb, True),
            "patch embedding: pixel x matrix element": (p.pixel.bits + 1, True, mb, True),
            "scores: qkv x qkv": (p.qkv.bits, p.qkv.signed, p.qkv.bits, p.qkv.signed),
            "A*V: attn_prob x qkv": (p.attn_prob.bits, p.attn_prob.signed, p.qkv.bits, p.qkv.signed)}


def mac_dsp(cfg, plan: KernelPlan) -> tuple[str, int]:
    """(the widest pair of :func:`mac_operand_pairs`, its DSPs per product): what one MAC costs.  Of pairs that
    take as many DSPs, the one of more bits is named."""
    pairs = mac_operand_pairs(cfg, plan)
    widest = max(pairs, key=lambda k: (dsp_per_mult(*pairs[k][::2], *pairs[k][1::2]),
                                       pairs[k][0] + pairs[k][2]))
    a, a_s, b, b_s = pairs[widest]
    return widest, dsp_per_mult(a, b, a_s, b_s)


def mac_chain_in_dsps(cfg, plan: KernelPlan) -> bool:
    """Whether the MACs' chains (``MAC_CHAIN`` products each, written in order with expression balancing off)
    stay in the DSP48E2s' post-adders: each product takes one slice (:func:`mac_dsp`) and the accumulator
    fits the slice's 48-bit P.  Otherwise a product spans slices and every add is a fabric adder."""
    return mac_dsp(cfg, plan)[1] == 1 and cfg.precision.accum.bits <= DSP_P_BITS


def _addr_bits(depth: int) -> int:
    """Bits of an address into ``depth`` words (at least 1)."""
    return max(1, math.ceil(math.log2(max(2, depth))))


def _lanes_per_bank(step: int, lanes: int, banks: int, starts=(0,)) -> int:
    """The most distinct lanes that write (or read) one of ``banks`` cyclic banks, when ``lanes`` consecutive
    words start at one of ``starts`` plus a multiple of ``step`` (``step`` a pass's stride, the lanes' offset
    moving by it): the inputs of that bank's data select (1: a fixed wire)."""
    offsets = {(s + t * step) % banks for s in starts for t in range(banks)}
    return max(len({o for off in offsets for o in range((b - off) % banks, lanes, banks)}) for b in range(banks))


def table_bits(cfg) -> dict[str, int]:
    """Bits of the widest entry of each numerics table (``exp2``, ``recip``, ``rsqrt``, ``gelu``): the ROM's
    width.  The tables are declared ``long long``; a constant array is kept at the width its entries need."""
    from edgemoe.golden.numerics.tables import entry_bits

    return entry_bits(cfg.precision)


@dataclass
class Item:
    """One thing the kernel instantiates: an array, a ROM, a FIFO, a group of multipliers, a divider, logic,
    control, an interface.

    ``where``: function[/loop label]; ``count``: copies of it (per instance of its function, times the
    instances); ``shape``: banks x depth x width, or the operand widths; resources are of all copies.
    """

    unit: str
    kind: str
    what: str
    where: str
    count: int
    shape: str
    dsp: int = 0
    bram36: float = 0.0
    uram: int = 0
    lut: int = 0
    ff: int = 0
    note: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Items:
    """Builds the :class:`Item` list; ``unit`` is the group the next items go to."""

    def __init__(self, board):
        self.board = board
        self.items: list[Item] = []
        self.unit = ""

    def add(self, kind, what, where, count, shape, note="", **res) -> Item:
        it = Item(self.unit, kind, what, where, count, shape, note=note, **res)
        self.items.append(it)
        return it

    def array(self, what, where, depth, width, banks=1, count=1, registers=False, kind="array", note="",
              lutram=False) -> Item:
        c = Memory(what, depth, width, banks, registers, lutram).cost(self.board)
        bank = "" if banks == 1 else f"{banks} banks x "
        return self.add(kind, what, where, count, f"{bank}{depth} x {width}b -> {c['kind']}", note,
                        bram36=count * c["bram36"], uram=count * c["uram"], lut=count * c["lut"], ff=count * c["ff"])

    def rom(self, what, where, entries, width, count=1, note="") -> Item:
        return self.array(what, where, entries, width, count=count, kind="ROM", note=note)

    def mults(self, what, where, count, a_bits, b_bits, a_signed=True, b_signed=True, note="") -> Item:
        u = UnitResources(what)
        u.add_mults(what, count, a_bits, b_bits, a_signed, b_signed)
        per = dsp_per_mult(a_bits, b_bits, a_signed, b_signed)
        sa, sb = "s" if a_signed else "u", "s" if b_signed else "u"
        return self.add("multipliers", what, where, count, f"{a_bits}{sa} x {b_bits}{sb}: {per} DSP each", note,
                        dsp=u.dsp, lut=u.lut)

    def divider(self, what, where, count, dividend_bits, divisor, pipelined, note="") -> Item | None:
        """``/`` or ``%`` by a constant: a divider core (a shift when the constant is a power of two)."""
        if divisor & (divisor - 1) == 0:
            return None
        d_bits = divisor.bit_length() + 1
        if pipelined:   # one subtract stage per quotient bit
            lut, ff = dividend_bits * d_bits, dividend_bits * (d_bits + dividend_bits // 2)
        else:           # one subtract stage, iterated
            lut, ff = 3 * (dividend_bits + d_bits), 3 * dividend_bits + d_bits
        return self.add("divider", what, where, count,
                        f"{dividend_bits}b / {divisor} ({'pipelined' if pipelined else 'sequential'})", note,
                        lut=count * lut, ff=count * ff)

    def logic(self, what, where, count, lut_each, ff_each=0, shape="", note="") -> Item:
        return self.add("logic", what, where, count, shape, note, lut=int(count * lut_each), ff=int(count * ff_each))

    def control(self, function, count, loops=0) -> Item:
        """The FSM of ``count`` instances of ``function`` and its ``loops`` pipelined loops."""
        return self.add("control", f"{function}(): FSM" + (f" + {loops} pipeline(s)" if loops else ""), function,
                        count, "", lut=count * (LUT_PER_CONTROL + loops * LUT_PER_PIPELINE),
                        ff=count * (FF_PER_CONTROL + loops * FF_PER_PIPELINE))


def _exp_neg(b: _Items, where: str, count: int, cfg, tb: dict, x_bits: int = WIDE_BITS) -> None:
    """``count`` inlined ``exp_neg``: the ``x * LOG2E_RAW`` product and the table interpolation."""
    from edgemoe.golden.numerics.tables import log2e_raw

    p = cfg.precision
    b.mults("exp_neg: x * LOG2E_RAW", where, count, x_bits, log2e_raw(p.table_frac_bits).bit_length(),
            b_signed=False, note="constant operand")
    b.mults("exp_neg: EXP2_TABLE interpolation", where, count, tb["exp2"] + 1,
            p.table_frac_bits - p.exp_table_bits, b_signed=False)
    # the final shift: exp_shift_round at the interpolation's width (EXP_V_BITS = the table's widest entry, +2),
    # its amount clamped to that width: a barrel shifter of that many bits and its rounding compare, then fix_exp
    w = tb["exp2"] + 2
    b.logic("exp_neg: range reduction, exp_shift_round, fix_exp", where, count,
            w * math.ceil(math.log2(w + 1)) + LUT_PER_CAST * w // WIDE_BITS + LUT_PER_CAST * p.exp.bits // WIDE_BITS,
            note=f"a {w}-bit shifter (not 64: the kernel's exp_shift_round)")


def _reciprocal(b: _Items, where: str, count: int, cfg, tb: dict) -> None:
    p = cfg.precision
    b.mults("reciprocal: RECIP_TABLE interpolation", where, count, tb["recip"] + 1,
            p.table_frac_bits - p.recip_table_bits, b_signed=False)
    b.logic("reciprocal: msb_index, shifts, fix_softmax_inv", where, count,
            LUT_PER_MSB + 2 * LUT_PER_WIDE_SHIFT + LUT_PER_CAST)


def _put_word(b: _Items, where: str, count: int, width: int) -> None:
    """``count`` inlined ``put_word``: the ``width``-bit bus word being filled (a register) and each output word
    place's write enable (a select per bit: keep, the new word, or zero at a bus word's start)."""
    b.logic("put_word: the bus word being filled", where, count, width, width,
            note="a debug tap's words a cycle into bus words of the activations")


def _axi(b: _Items, where: str, bundles: int, width: int, control: bool = True, what: str = "") -> None:
    """``bundles`` m_axi adapters of ``width`` bits (read and write channels, burst buffers) and the control."""
    b.add("interface", "m_axi adapter (read + write channels)" + what, where, bundles, f"{width}b",
          lut=bundles * (LUT_PER_MAXI + LUT_PER_MAXI_BIT * width), ff=bundles * (FF_PER_MAXI + FF_PER_MAXI_BIT * width),
          bram36=bundles * max(0.5, width / 128), note="burst buffers in BRAM")
    if control:
        b.add("interface", "s_axilite control + top level", where, 1, "", lut=LUT_S_AXILITE, ff=FF_S_AXILITE)


def _read_words(b: _Items, where: str, count: int, plan: KernelPlan, banks: int) -> None:
    """``count`` bursts of bus words into ``banks`` cyclic banks (a multiple of WORDS_PER_BEAT) of an array:
    every burst starts on a bus word, so field j of a bus word always goes to the banks j + k x WORDS_PER_BEAT, a
    wire; each bank's write enable (its bus word parity when there are more banks than fields, the end of the
    array)."""
    wpb = plan.words_per_beat
    b.logic("CONSTS: bus word -> WORDS_PER_BEAT banks", where, count, banks + 2 * INT_BITS,
            plan.weight_beat_bits, shape=f"{wpb} fields of {plan.weight_word_bits}b to {banks} banks: wires",
            note="a write enable a bank and the beat counter; no select among the fields")


def _onchip_items(cfg, plan: KernelPlan, brd, per_img: int, batch_note: str) -> list[Item]:
    """Every array, ROM, multiplier group, divider, logic and control block of the kernel as written."""
    m, p, h = cfg.model, cfg.precision, cfg.hardware
    n, d, e, P = m.num_tokens, m.embed_dim, m.num_experts, h.attn_parallel
    ci, co = h.cu_in, h.cu_out
    cu, wb, rw, W = plan.cu_word_bits, plan.weight_word_bits, plan.row_words, WIDE_BITS
    inst = function_instances()
    tb = table_bits(cfg)
    te = plan.table_entries
    b = _Items(brd)

    # compute unit: one instance (ALLOCATION limit in run_images), a DATAFLOW region of load_tiles and
    # compute_tiles joined by the FIFO of bus words ---------------------------------------------------
    b.unit = "compute unit"
    k = inst["compute_tiles"]
    mb, cw, wpb = plan.matrix_word_bits, plan.cu_weight_bits, plan.words_per_beat
    # one multiplier per MAC for every pass (the linear layers, the scores, A*V): sized for the widest pair
    pairs, widest = mac_operand_pairs(cfg, plan), mac_dsp(cfg, plan)[0]
    a, a_s, wbits, w_s = pairs[widest]
    b.mults("MAC: in[r][kin + c + i] * w[cur][o][kb + c + i]", "compute_tiles/MAC", k * co * ci, a, wbits,
            a_signed=a_s, b_signed=w_s,
            note=f"MAC_O x MAC_C x MAC_I unrolled under MAC's PIPELINE, every pass on them; the widest pair ({widest}) of "
            + ", ".join(f"{w} {pa}{'s' if sa else 'u'} x {pb}{'s' if sb else 'u'}: "
                        f"{dsp_per_mult(pa, pb, sa, sb)} DSP" for w, (pa, sa, pb, sb) in pairs.items())
            + f"; the words in cu_word_t ({cu}b) x cu_weight_t ({cw}b)")
    chains = ci // plan.mac_chain
    if mac_chain_in_dsps(cfg, plan):
        b.logic("MAC chains: their sums + accumulate", "compute_tiles/MAC", k * co, chains * p.accum.bits,
                shape=f"{chains} chains of {plan.mac_chain} into {p.accum.bits}b",
                note="MAC_C: a chain of MAC_CHAIN products adds in its DSPs' post-adders (P = A x B + C, the "
                "chain written in order, EXPRESSION_BALANCE off); the fabric adds each chain's sum to the "
                "accumulator")
    else:
        b.logic("MAC adder trees + accumulate", "compute_tiles/MAC", k * co, ci * (cu + cw) + p.accum.bits,
                shape=f"{ci} products of {cu + cw}b into {p.accum.bits}b",
                note=f"a product spans slices or the {p.accum.bits}b accumulator passes the {DSP_P_BITS}b P: "
                "every add in the fabric")
    b.array("acc[CU_OUT] (mac_t = accum_t)", "compute_tiles/MAC", 1, p.accum.bits, banks=co, count=k,
            registers=True)
    if plan.av_fold:   # A*V's keys past K_PAD: CU_OUT products more each, in a row's last chunk
        b.mults("FOLD_J: p_tail[r][j] * v_tail[cur][o][j]", "compute_tiles/MAC", k * co * plan.av_fold, a, wbits,
                a_signed=a_s, b_signed=w_s, note="A*V's folded keys: a product per output lane and folded key")
        b.array("v_tail[2][CU_OUT][AV_FOLD] (cu_weight_t)", "compute_tiles", 1, cw, banks=2 * co * plan.av_fold,
                count=k, registers=True, note="the folded keys' value words, two tiles")
        b.array("p_tail[N_TOKENS][AV_FOLD] (cu_word_t)", "run_images", n, cu, banks=plan.av_fold,
                note="the folded keys' probabilities, dim 2 complete")
    b.array("w[2][CU_OUT][ROW_WORDS] (cu_weight_t)", "compute_tiles", 2 * (rw // ci), cw, banks=co * ci,
            count=k, note="two tiles (ping-pong): dim 1 an address bit, dim 2 complete, dim 3 cyclic CU_IN; a "
            "matrix element or a head's key / value word (qkv_t), whichever is wider; BIND_STORAGE impl=lutram: "
            "distributed RAM at any size (a BRAM18 a bank would be CU_OUT x CU_IN of them)", lutram=True)
    # CU_SCORES (the attention's q . k): a row's CU_OUT sums are cast and stored in its last MAC iteration, no
    # epilogue: round and saturate per output lane at the constant fraction every score call has (2 QKV_FRAC +
    # SCORE_SHIFT: the shift is wiring, no barrel shifter), and sm_s[r][out_c0 + t * CU_OUT + o] in CU_IN cyclic
    # banks, out_c0 = hd * SCORE_COLS (the head's columns of logits): a bank's write data selects among the lanes
    # that meet it as the tile t and the head move (one, a wire, when CU_IN is a multiple of CU_OUT and every
    # head's first column is a multiple of CU_OUT modulo CU_IN)
    b.logic("MAC (CU_SCORES): to_attn_score(sum, 2 QKV_FRAC + SCORE_SHIFT) per output", "compute_tiles/MAC",
            k * co, LUT_PER_CAST, note="CU_OUT cast lanes at a constant fraction: a head's scores straight to S")
    lanes = _lanes_per_bank(co, co, ci, [hd * plan.score_cols for hd in range(m.num_heads)])
    if lanes > 1:
        b.logic("MAC (CU_SCORES): cast lane -> sm_s bank select", "compute_tiles/MAC", k * ci,
                cu * math.ceil(lanes / 4), shape=f"{ci} banks x {lanes} lanes",
                note="CU_OUT consecutive columns from out_c0 + t * CU_OUT: the lanes a bank meets move with t and "
                "the head's first column out_c0")
    if plan.weight_rows_aligned:
        bb = plan.layer_bias_banks
        b.array("b[2][MAX_N_OUT] (weight_word_t)", "compute_tiles", 2 * -(-plan.max_n_out // bb), wb, banks=bb,
                count=k, note="two layers' biases (one burst each: the call's, and the next call's, which its last "
                "pass prefetches), cyclic lcm(WORDS_PER_BEAT, EPI_LANES), the half an address bit")
    else:
        b.array("b[2][CU_OUT] (weight_word_t)", "compute_tiles", 1, wb, banks=2 * co, count=k, registers=True,
                note="two tiles' biases, complete")
    b.array("done[CU_OUT] (mac_t = accum_t)", "compute_tiles/MAC", 1, p.accum.bits, banks=co, count=k,
            registers=True, note="a row's sums, which the epilogue finishes over the next EPI_GROUPS iterations")
    # the epilogue (FINISH) in the MAC pipeline: EPI_LANES outputs per iteration
    E = plan.epilogue_lanes
    b.mults("FINISH: wide_t(y) * wide_t(row_score[r])", "compute_tiles/FINISH", k * E, cu, p.gate_score.bits,
            b_signed=p.gate_score.signed, note="cu_word_t x gate_score_t, one per epilogue lane")
    b.mults("gelu: GELU_TABLE interpolation", "compute_tiles/FINISH", k * E, tb["gelu"] + 1,
            p.act.frac_bits - p.gelu_step_log2, b_signed=False, note="one per epilogue lane")
    b.rom("GELU_TABLE", "compute_tiles/FINISH", te["gelu"], tb["gelu"], count=k * E,
          note="gelu_lane[EPI_LANES]: a copy per epilogue lane")
    b.logic("FINISH: shifts, cu_cast (3 casts), gelu cast, acc add", "compute_tiles/FINISH", k * E,
            2 * LUT_PER_WIDE_SHIFT + 4 * LUT_PER_CAST + 2 * W, 4 * W)
    b.logic("FINISH: done[po + e], b[cur][po + e] selects", "compute_tiles/FINISH", k * E,
            p.accum.bits * math.ceil(plan.epilogue_groups / 4) + wb * math.ceil(2 * plan.epilogue_groups / 4),
            shape=f"{plan.epilogue_groups}:1, {2 * plan.epilogue_groups}:1 muxes")
    # CU_RESID (proj, fc2): the residual add in the epilogue, x += y on the same EPI_LANES columns
    b.logic("FINISH (CU_RESID): x + y, to_act, lane-sum adder", "compute_tiles/FINISH", k * E,
            2 * W + LUT_PER_CAST, note="one per epilogue lane")
    b.logic("FINISH (CU_RESID): the row's running sum, x_sum[dr] add", "compute_tiles/MAC", k, 2 * W, W)
    b.control("compute_unit", inst["compute_unit"], loops=0)
    b.control("compute_tiles", k, loops=1)

    # the weight path: the loader, the FIFO of one tile's bus words, the unpacking into the tile buffers ----
    b.unit = "weight loads"
    lt = inst["load_tiles"]
    b.mults("span_of(.., row0 * k_dim, outs * k_dim)", "load_tiles/LOAD_TILES", 2 * lt, INT_BITS, INT_BITS,
            note="int x int tile offsets and sizes")
    b.divider("tiles = (n_out + CU_OUT - 1) / CU_OUT", "load_tiles", lt, INT_BITS, co, pipelined=False)
    b.control("load_tiles", lt, loops=3 if plan.weight_rows_aligned else 2)
    nofifo = dataclasses.replace(brd, uram=0)   # a stream is a FIFO in BRAM / LUTRAM / SRL, not URAM
    c = Memory("beats", plan.tile_beats, plan.weight_beat_bits).cost(nofifo)
    b.add("FIFO", "beats: hls::stream<weight_beat_t>", "compute_unit (DATAFLOW)", inst["compute_unit"],
          f"{plan.tile_beats} x {plan.weight_beat_bits}b -> {c['kind']}", "depth TILE_BEATS: one tile's bus words",
          bram36=inst["compute_unit"] * c["bram36"], lut=inst["compute_unit"] * c["lut"])
    # one pipeline over the layer's passes: the pass's counters step by constants and end on compares (no
    # span_of multiplies per pass, no tile count); rows not whole bus words: the next tile's first bias word
    # and weight element too, the tile's weight elements CU_OUT * k_dim once per call
    flat_counters = 4 if plan.weight_rows_aligned else 6
    b.logic("the pass's counters (t, rem, uouts, idle[, en, bn]) and its end", "compute_tiles/MAC", k,
            flat_counters * INT_BITS, flat_counters * INT_BITS, shape=f"{flat_counters} x {INT_BITS}b")
    if not plan.weight_rows_aligned and co & (co - 1):
        b.mults("tile_elems = CU_OUT * k_dim", "compute_tiles", k, INT_BITS, co.bit_length() + 1,
                note="once per call")
    uf, us = plan.unpack_fields, plan.unpack_steps
    if us > 1:
        b.logic("UNPACK_W: the step's fields of the bus word", "compute_tiles/UNPACK_W_J", k * uf,
                mb * math.ceil(us / 4), shape=f"{uf} x {us}:1 of {mb}b")
    if plan.weight_rows_aligned:
        # field j of a step goes to column k0 + j of row o0: a bank column takes one of ci / MATRIX_PER_BEAT
        # fields (1 when a bus word is whole CU_IN chunks), shared by the tile's rows; a row takes a write enable
        cands = max(1, ci // plan.matrix_per_beat)
        b.logic("UNPACK_W: (o0, k0) of the bus word", "compute_tiles/UNPACK_W_J", k, 2 * INT_BITS,
                shape="whole bus words per row: no wraps")
        if cands > 1:
            b.logic("UNPACK_W: field -> bank column select", "compute_tiles/UNPACK_W_J", k * ci,
                    mb * math.ceil(cands / 4), shape=f"{ci} bank columns x {cands} fields")
        b.logic("UNPACK_W: row write enables + bank addresses", "compute_tiles/UNPACK_W_J", k * co * ci,
                2, shape=f"{co * ci} banks", note="a row select and the word's address in its bank")
    else:
        b.logic("UNPACK_W: (o, k) of each field, row wraps", "compute_tiles/UNPACK_W_J", k * uf,
                (1 + 2 * plan.unpack_wraps) * INT_BITS, shape=f"{uf} fields of {mb}b per step")
        b.logic("UNPACK_W: field -> tile bank write select", "compute_tiles/UNPACK_W_J", k * co * ci,
                mb * math.ceil(uf / 4) + 2 * INT_BITS, shape=f"{co * ci} banks x {uf} fields",
                note="each bank's write port selects among the step's fields (both halves: the address bit)")
    b.logic("UNPACK_B: field -> bias register select", "compute_tiles/UNPACK_B_J", k * co,
            wb * math.ceil(wpb / 4) + INT_BITS, shape=f"{co} registers x {wpb} fields",
            note="shared by the two halves' registers (write enables)")
    b.logic("beat register", "compute_tiles/UNPACK_W_J", k, 0, plan.weight_beat_bits,
            note="the weight bus word held over its UNPACK_STEPS steps")
    # on-chip weights (the attention's passes): the unpack reads `in` itself, through each bank's second port
    # (the MACs' read takes the first). W_KEYS: CU_IN words of key row ub + o0 (wrapping past N_TOKENS) from
    # in's bank i to bank column i of w's row o0, the bus field's path and row enable; W_VALUES: key k0's CU_IN
    # value columns from the step's lanes to column k0 (one bank) of CU_IN rows, lane o % CU_IN to row o. So a
    # tile bank's write data is one of three words (a bus field, a key word, a value word), not a crossbar.
    srcs = 3
    b.logic("UNPACK_K / UNPACK_V: tile bank write data (bus field | key word | value word)",
            "compute_tiles/UNPACK_K", k * co * ci, cw * math.ceil(srcs / 4) + 1,
            shape=f"{co * ci} banks x {srcs} words of {cw}b",
            note="and a bank enable: W_VALUES writes the bank of column k0 in each of its rows")
    # lane u of W_VALUES reads in's bank (ub + u) % CU_IN, ub moving by CU_OUT a tile: a rotation of the lanes
    # unless CU_IN divides CU_OUT
    rot = ci // math.gcd(co, ci)
    if rot > 1:
        b.logic("UNPACK_V: in's bank -> value lane (rotation by ub % CU_IN)", "compute_tiles/UNPACK_V", k * ci,
                cw * math.ceil(rot / 4), shape=f"{ci} lanes x {rot} banks of {cw}b",
                note="CU_OUT not a multiple of CU_IN: a tile's first value column moves across the banks")
    in_addr = _addr_bits(n * rw // ci)
    b.logic("UNPACK_K / UNPACK_V: in's second read address per bank", "compute_tiles/UNPACK_K", k * ci, in_addr,
            shape=f"{ci} banks x {in_addr}b", note="the key row (W_KEYS) or key k0's row (W_VALUES), the column")
    b.logic("on-chip weights: (ub, vs, kin) counters, the key row's wrap", "compute_tiles/MAC", k,
            5 * INT_BITS, 3 * INT_BITS, shape=f"3 x {INT_BITS}b + compare / subtract")
    # the next call's first tile (on chip) in the last pass: the unpack's source, column and k switched to the
    # next call's, and the halves' offset (pf_half, hoff) carried to it
    b.logic("prefetch: (usrc, uw_c0, uk) selects, pf, pf_half, hoff", "compute_tiles/MAC", k,
            3 * INT_BITS + 4, 3 * INT_BITS + 3, shape=f"3 x {INT_BITS}b + flags")
    if plan.weight_rows_aligned:
        # from DRAM (rows of whole bus words): the next layer's biases and tile 0 in the last pass, the bias
        # unpack's bound (ob_end) and half (pf_bh, bcur); the loader's skip of what the call before streamed
        # (pf_beats) and the next layer's burst; run_images' pf_w compare and the next active expert
        b.logic("prefetch from DRAM: ob_end, bias halves; loader: pf_beats, skip, next burst", "compute_tiles/MAC",
                k, 3 * INT_BITS + 4, 2 * INT_BITS + 2, shape=f"3 x {INT_BITS}b + flags")
        b.logic("run_images: pf_w == w_off, next_active(q_count, e)", "run_images", 1,
                INT_BITS + 4 * m.num_experts, INT_BITS, shape=f"{INT_BITS}b compare, {m.num_experts}-way priority")

    # attention: its q . k and A*V run on the compute unit (above), the online softmax as the compute unit's side
    # job (its ATTN_P lanes in compute_tiles' MAC pipeline), the probabilities in the softmax: one instance (one
    # call site, in run_images' AV_LOOP) -----------------------------------------------------------------
    b.unit = "attention"
    sm, side = inst["softmax"], inst["compute_tiles"]
    G, PL = plan.attn_groups, plan.prob_lanes
    st, pr = "compute_tiles/MAC (side job)", "softmax/PROBS"
    H = m.num_heads
    b.array("sm_max[ATTN_P][SM_STATE_GROUPS] (attn_score_t)", "run_images", H * G, p.attn_score.bits, banks=P,
            note="a query's running max, a block's heads one after the other, dim 1 complete (lane p's bank)")
    b.array("sm_sum[ATTN_P][SM_STATE_GROUPS] (softmax_sum_t)", "run_images", H * G, p.softmax_sum.bits, banks=P,
            note="a query's running sum, a block's heads one after the other, dim 1 complete (lane p's bank)")
    b.array("row_inv[ATTN_P][ATTN_GROUPS] (softmax_inv_t)", "softmax", G, p.softmax_inv.bits, banks=P, count=sm,
            note="1/sum per query, formed in PROBS PROB_LEAD rows ahead; dim 1 complete")
    # the side job: ATTN_P lanes (SM_LANES unrolled), each an online_step a step on its own EXP2_TABLE copy. The
    # exps' arguments (m - m_new, s - m_new; PROBS: s - max) are differences of a score word of S (cu_word_t)
    # and a running max (attn_score_t) held in wide_t: sign-extended words, not a saturating cast's result, so
    # x * LOG2E_RAW is that difference's width (as the routing's logit - max)
    xd = max(cu, p.attn_score.bits) + 1
    _exp_neg(b, st, side * 2 * P, cfg, tb, x_bits=xd)
    b.mults("online_step: l * alpha", st, side * P, p.softmax_sum.bits, p.exp.bits, a_signed=p.softmax_sum.signed,
            b_signed=p.exp.signed, note="softmax_sum_t x exp_t: the stored sum times the exp word, one per lane")
    b.logic("online_step: max, shift, add, to_softmax_sum", st, side * P, 3 * W + LUT_PER_CAST)
    b.rom("exp2_lane[ATTN_P] (EXP2_TABLE copies)", st, te["exp2"], tb["exp2"], count=side * P,
          note="a ROM per lane (cyclic 2: even / odd entries), both ports of both banks: a step's two exps")
    # sm_s is the scores (logits) in every call but the gate's, which writes logits (tbuf there: a select of
    # two per lane word), and the side job's place (kept from call to call) and counters
    b.logic("SM_LANES: sm_s, a select of the row buffers (logits | tbuf) per lane", st, side * P, cu,
            shape=f"2 -> 1 of {cu}b")
    b.logic("side job: (sm_h, sm_it, ss, sg, sm_c0, sm_g0, sp) its place, its end", st, side, 8 * INT_BITS,
            8 * INT_BITS)
    # lane p reads column s + p of its query's row of S (logits: CU_IN cyclic banks), so its bank moves with s:
    # a CU_IN -> 1 select of the lane's word, and each bank's address is the lane's that reads it
    sa = _addr_bits(n * rw // ci)
    b.logic("SM_LANES: S[g * ATTN_P + p][s + p], lane p's word of S's CU_IN banks", st, side * P,
            cu * math.ceil(ci / 4), shape=f"{ci} -> 1 of {cu}b", note="the lanes' columns rotate across the banks")
    b.logic("SM_LANES: S's bank addresses (the lane that reads the bank)", st, side * ci,
            sa * math.ceil(min(P, ci) / 4), shape=f"{ci} banks x {min(P, ci)} lanes of {sa}b")
    b.divider("S[..][s + p]: column (s + p) / CU_IN, bank (s + p) % CU_IN", st, side * 2 * P, INT_BITS, ci,
              pipelined=True, note="a lane's column in the cyclic banks")
    # PROBS: one reciprocal a row (at its chunk 0, PROB_LEAD rows ahead); PROBS and TAP_SM take query (p, g) by
    # counters, so reading its [p][g] words of the ATTN_P banks is a select each
    _reciprocal(b, pr, sm, cfg, tb)
    b.rom("RECIP_TABLE", "softmax (reciprocal)", te["recip"], tb["recip"], count=sm)
    if P > 1:
        sel = p.attn_score.bits + p.softmax_sum.bits + p.softmax_inv.bits
        b.logic("TAP_SM, PROBS: row_max / row_sum / row_inv[p][g] selects", "softmax", sm,
                sel * math.ceil(P / 4) + P, shape=f"{P} -> 1 of {sel}b (the three words)",
                note="and row_inv's ATTN_P write enables")
    _put_word(b, "softmax/TAP_SM", sm, h.axi_width)
    # PROBS: PROB_LANES lanes (PROB_U unrolled), each an exp on its own EXP2_TABLE copy, exp_t x softmax_inv_t,
    # to_attn_prob, into big's PROB_COL columns (bank (j0 + u) % CU_IN: lane u always meets the banks u mod
    # PROB_LANES, a wire and a write enable each)
    # and AV_FOLD lanes more beside a row's last chunk: the folded keys' probabilities into p_tail
    FL = PL + plan.av_fold
    _exp_neg(b, pr, sm * FL, cfg, tb, x_bits=xd)
    b.rom("exp2_prob[PROB_LANES + AV_FOLD] (EXP2_TABLE copies)", pr, te["exp2"], tb["exp2"], count=sm * FL,
          note="a ROM per probability lane (cyclic 2): one exp a cycle")
    b.mults("PROB_U, FOLD_U: wide_t(e) * inv", pr, sm * FL, p.exp.bits, p.softmax_inv.bits, a_signed=p.exp.signed,
            b_signed=p.softmax_inv.signed, note="exp_t x softmax_inv_t, one per probability lane")
    b.logic("PROB_U, FOLD_U: to_attn_prob, zero past N_TOKENS", pr, sm * FL, LUT_PER_CAST + p.attn_prob.bits)
    b.logic("PROBS: the row's and the lead's counters", pr, sm, 6 * INT_BITS, 6 * INT_BITS)
    # lane u reads S[i][hd * SCORE_COLS + j0 + u]: the banks it meets, over the heads' first columns and the chunks
    rot = len({(hd * plan.score_cols + j0) % ci for hd in range(H) for j0 in range(0, plan.k_pad, PL)})
    if rot > 1:
        b.logic("PROB_U: S[i][c0 + j0 + u], lane u's word of S's banks", pr, sm * PL, cu * math.ceil(rot / 4),
                shape=f"{rot} -> 1 of {cu}b", note="the head's first column and j0 move lane u across the banks")
    # a folded key's lane reads S[i][hd * SCORE_COLS + K_PAD + u]: its bank moves with the head
    frot = len({(hd * plan.score_cols + plan.k_pad) % ci for hd in range(H)})
    if plan.av_fold and frot > 1:
        b.logic("FOLD_U: S[i][c0 + K_PAD + u], a folded key's word of S's banks", pr, sm * plan.av_fold,
                cu * math.ceil(frot / 4), shape=f"{frot} -> 1 of {cu}b", note="the head's first column moves it")
    b.divider("S[i][j], big[i][PROB_COL + j]: column j / CU_IN, bank j % CU_IN", pr, sm * 2 * PL, INT_BITS, ci,
              pipelined=True, note="a lane's column in the cyclic banks")
    b.control("softmax", sm, loops=3)

    # LayerNorm: one instance for its call sites (ALLOCATION) ---------------------------------------
    b.unit = "layernorm"
    ln = inst["layernorm"]
    L = plan.ln_lanes   # LN_LANES: columns per iteration of the LayerNorm's pipeline
    lanes = f"{L} per instance: LN_LANES columns per cycle"
    pb = plan.ln_param_banks
    b.array("ln_par[LN_WORDS] (weight_word_t)", "run_images (CONSTS)", -(-plan.ln_words // pb), wb, banks=pb,
            note="every LayerNorm's gamma and beta, on chip for the call; cyclic lcm(WORDS_PER_BEAT, LN_LANES)")
    _read_words(b, "run_images (CONSTS: ln_par)", 1, plan, pb)
    nb = plan.ln_skew + 1
    b.array("c[LN_SKEW + 1][DIM] (ln_centered_t)", "layernorm/LN_STEPS", -(-d // L), p.ln_centered.bits,
            banks=nb * L, count=ln, note="LN_SKEW + 1 rows (written, waiting, normalised), cyclic LN_LANES")
    b.mults("LN_VAR: wide_t(c[d]) * wide_t(c[d])", "layernorm/LN_STEPS", ln * L, p.ln_centered.bits,
            p.ln_centered.bits, a_signed=p.ln_centered.signed, b_signed=p.ln_centered.signed, note=lanes)
    # inv_std and n are kept in their types (ln_inv_std_t, ln_norm_t): the products are at the words' widths
    b.mults("LN_OUT: wide_t(c[d]) * wide_t(inv_std)", "layernorm/LN_STEPS", ln * L, p.ln_centered.bits,
            p.ln_inv_std.bits, a_signed=p.ln_centered.signed, b_signed=p.ln_inv_std.signed,
            note=f"ln_centered_t x ln_inv_std_t; {lanes}")
    b.mults("LN_OUT: wide_t(n) * wide_t(gamma[d])", "layernorm/LN_STEPS", ln * L, p.ln_norm.bits, wb,
            a_signed=p.ln_norm.signed, note=f"ln_norm_t x weight_word_t; {lanes}")
    b.mults("rsqrt: RSQRT_TABLE interpolation", "layernorm/LN_STEPS", ln, tb["rsqrt"] + 1,
            p.table_frac_bits - p.rsqrt_table_bits, b_signed=False)
    b.rom("RSQRT_TABLE", "layernorm (rsqrt)", te["rsqrt"], tb["rsqrt"], count=ln)
    b.divider("floor_div(sum | sq, DIM): / and %", "layernorm/LN_STEPS", 4 * ln, W, d, pipelined=True,
              note="in the pipeline: a new row's mean and a finished row's variance every LN_CHUNKS cycles")
    b.logic("rsqrt normalisation, running sums", "layernorm", ln, LUT_PER_MSB + 2 * LUT_PER_WIDE_SHIFT + 2 * W, 2 * W)
    b.logic("per lane: 3 casts, 2 lane-sum adders", "layernorm", ln * L, 3 * LUT_PER_CAST + 2 * W, 2 * W,
            note=lanes)
    b.logic("row_inv_std[LN_SKEW + 1], the buffer selects", "layernorm", ln, nb * p.ln_inv_std.bits,
            nb * p.ln_inv_std.bits)
    b.control("layernorm", ln, loops=3)

    # gating, top-k, routing: route_tokens, inlined in run_images (one GATE pipeline) ---------------------
    b.unit = "gate + top-k + queues"
    where, k = "route_tokens/GATE", m.top_k
    gl, xb, GL = p.gate_logit.bits, plan.expert_bits, plan.gate_lanes
    # GATE_LANES tokens a slot side by side: each lane its exp, reciprocal, tables, list, scores and delay line
    _exp_neg(b, where, GL, cfg, tb, x_bits=gl + 1)      # logit - max: a gate_logit_t difference
    _reciprocal(b, where, GL, cfg, tb)
    b.mults("GATE_PICK: wide_t(xj) * wide_t(inv)", "route_tokens/GATE_PICK", GL * k, p.exp.bits, p.softmax_inv.bits,
            a_signed=p.exp.signed, b_signed=p.softmax_inv.signed,
            note="exp_t x softmax_inv_t: the chosen experts' scores, one per top-k entry and lane")
    b.rom("exp2_gate[GATE_LANES] (EXP2_TABLE copies)", "route_tokens (exp_neg)", te["exp2"], tb["exp2"], count=GL,
          note="a ROM per lane (cyclic 2): one exp a cycle")
    b.rom("recip_gate[GATE_LANES] (RECIP_TABLE copies)", "route_tokens (reciprocal)", te["recip"], tb["recip"],
          count=GL, note="a ROM per lane (cyclic 2): one reciprocal a cycle")
    b.logic("GATE_INSERT: top-k list, compare + insert per entry", "route_tokens/GATE_INSERT", GL * k,
            gl + 2 * (gl + xb), 2 * (gl + xb), shape=f"{GL} x {k} x ({gl}b logit, {xb}b expert)",
            note="the lanes' lists and their latches for the exps' stage")
    b.logic("GATE_DELAY: a lane's logits, a slot later to the exps' stage", "route_tokens/GATE_DELAY", GL * e, 0, gl,
            shape=f"{GL} x {e} x {gl}b", note="shift registers (no select)")
    b.logic("GATE_PICK: the chosen exps (select), to_gate_score", "route_tokens/GATE_PICK", GL * k,
            xb + 2 * p.exp.bits + LUT_PER_CAST, p.exp.bits + xb + p.gate_score.bits)
    b.logic("GATE_SHIFT: the queue stage's entries (shift registers)", "route_tokens/GATE_SHIFT", GL * k, 0,
            xb + p.gate_score.bits)
    b.logic("GATE: max, exp sum, the stages' hand-off registers", where, GL,
            plan.gate_sum_bits + gl, gl + plan.gate_sum_bits + p.softmax_inv.bits)
    b.array("q_count[EXPERTS] (ap_uint<16>)", "run_images", 1, 16, banks=e, registers=True, count=per_img,
            note="registers: GATE increments the count of any expert each cycle")
    b.logic("q_count[e]++: the expert's count (select) + 1", where, 1, 16 * e // 4 + 16 + e)
    mr = plan.moe_rows   # the group's MoE state: N_TOKENS rows an image of MOE_BATCH
    group = f"MOE_ROWS = {plan.moe_batch} images x N_TOKENS"
    b.array("route.queue[EXPERTS][MOE_ROWS] (ap_uint<16>)", "run_images", e * mr, 16, count=per_img,
            note=batch_note or group)
    b.array("route.queue_score[EXPERTS][MOE_ROWS] (gate_score_t)", "run_images", e * mr, p.gate_score.bits,
            count=per_img, note=batch_note or group)
    b.logic("GATE: the kept rows' address (base + cr)", where, 1, INT_BITS, INT_BITS,
            note="moe_acc cleared, x and the norm2 rows kept: EW_LANES words a cycle")
    b.array("route.chosen[N_TOKENS][TOP_K] (ap_uint<16>)", "run_images", n * m.top_k, 16, count=per_img,
            note=batch_note)
    b.array("route.chosen_score[N_TOKENS][TOP_K] (gate_score_t)", "run_images", n * m.top_k, p.gate_score.bits,
            count=per_img, note=batch_note)
    b.array("route.ex[N_TOKENS][EXPERTS] (exp_t)", "run_images", n * e, p.exp.bits, count=per_img,
            note="for the gate-score tap")
    b.array("route.inv[N_TOKENS] (softmax_inv_t)", "run_images", n, p.softmax_inv.bits, count=per_img,
            note="for the gate-score tap")
    b.mults("TAP_GS: wide_t(ex) * wide_t(inv)", "run_images/TAP_GS", 1, p.exp.bits, p.softmax_inv.bits,
            a_signed=p.exp.signed, b_signed=p.softmax_inv.signed, note="exp_t x softmax_inv_t")
    b.logic("TAP_GS: to_gate_score", "run_images/TAP_GS", 1, LUT_PER_CAST)
    # the small taps' put_word (inlined in each loop): the bus word being filled, a word's write enable per place
    _put_word(b, "run_images: TAP_GS, TAP_TK, TAP_EC", 3, h.axi_width)

    # the row buffers --------------------------------------------------------------------------------
    b.unit = "activation buffers"
    for name in ("x", "hbuf", "tbuf", "big"):   # big: q / k / v columns, then a head's probabilities
        b.array(f"rows_t {name}[N_TOKENS][ROW_WORDS] (cu_word_t)", "run_images", n * rw // ci, cu, banks=ci,
                count=per_img, note="cyclic CU_IN on dim 2" + (f"; {batch_note}" if batch_note else ""))
    b.array("rows_t logits[N_TOKENS][ROW_WORDS] (cu_word_t)", "run_images", n * rw // ci, cu, banks=ci,
            count=per_img, note="cyclic CU_IN on dim 2: a head's scores, CU_OUT a cycle in, read by the softmax's "
            "ATTN_P and PROB_LANES lanes" + (f"; {batch_note}" if batch_note else ""))
    E = plan.moe_acc_banks
    b.array("moe_acc[MOE_ROWS][DIM] (moe_acc_t)", "run_images", -(-mr * d // E), plan.moe_acc_bits, banks=E,
            count=per_img, note="cyclic lcm(EPI_LANES, EW_LANES) on dim 2: the epilogue's read-modify-writes, the "
            f"clear's and the cast's words per cycle; {group}" + (f"; {batch_note}" if batch_note else ""))
    ew = plan.elementwise_lanes
    for name in ("x_keep", "h_keep"):
        b.array(f"{name}[MOE_ROWS][DIM] (cu_word_t)", "run_images", -(-mr * d // ew), cu, banks=ew, count=per_img,
                note=f"cyclic EW_LANES on dim 2; {group}" + (f"; {batch_note}" if batch_note else ""))
    b.array("pass_row[N_TOKENS] (ap_uint<16>)", "run_images/GATHER", n, 16, note="an expert pass's moe_acc rows")
    b.array("pass_score[N_TOKENS] (gate_score_t)", "run_images/GATHER", n, p.gate_score.bits,
            note="an expert pass's gate scores")
    b.array("identity[N_TOKENS] (ap_uint<16>)", "run_images", n, 16)
    b.array("no_score[N_TOKENS] (gate_score_t)", "run_images", n, p.gate_score.bits)
    # the patch gather: an image word's IMAGE_LANES pixels to consecutive columns of big; lane j always meets
    # the banks j mod IMAGE_LANES (IMAGE_LANES divides CU_IN), so no crossbar: a bank write enable each, the
    # word's patch position counters
    il = plan.image_lanes
    b.logic("PATCH_PIX: image word -> IMAGE_LANES of big's CU_IN banks, patch counters", "run_images/PATCH_PIX", 1,
            ci + 5 * INT_BITS, 5 * INT_BITS, shape=f"{il} lanes of {plan.pixel_word_bits}b")
    # the pixels tap: an image word's pixels, zero-extended, to output words of the activations' bus words
    opb, pb = plan.out_per_beat, plan.pixel_word_bits
    if il >= opb and plan.pix_beats > 1:   # PIX_BEATS bus words an image word, one written a cycle: a select
        b.logic("PIX: the image word's bus word of pixels (pixels tap)", "run_images/PIX", 1,
                opb * pb * math.ceil(plan.pix_beats / 4), shape=f"{plan.pix_beats} -> 1 of {opb} x {pb}b")
    elif il < opb:   # an image word into the bus word being filled: a word's place, the register
        b.logic("PIX: the bus word being filled, IMAGE_LANES words at a time (pixels tap)", "run_images/PIX", 1,
                opb * pb, h.axi_width, shape=f"{opb // il} places of {il} x {pb}b")
    # the embedding: the cls token and the position table, on chip for the call (CONSTS, one burst with the
    # LayerNorms': field j of a bus word to bank j of the array it is in, no select), then CAST_LANES columns per
    # cycle
    wpb, C = plan.words_per_beat, plan.cast_lanes
    b.array("cls[DIM] (weight_word_t)", "run_images (CONSTS)", -(-d // wpb), wb, banks=wpb, note="cyclic WORDS_PER_BEAT")
    b.array("pos[N_TOKENS * DIM] (weight_word_t)", "run_images (CONSTS)", -(-n * d // wpb), wb, banks=wpb,
            note="the position table; cyclic WORDS_PER_BEAT")
    _read_words(b, "run_images (CONSTS: cls, pos)", 2, plan, plan.words_per_beat)
    b.logic("CONSTS: the bus word's array (cls | pos | ln_par), the beat counter", "run_images/CONSTS", 1,
            3 * INT_BITS, INT_BITS)
    b.logic("EMBED_D: add + to_act + lane-sum adder per lane, cls | tbuf select", "run_images/EMBED_D", C,
            2 * W + LUT_PER_CAST + cu // 2, note="CAST_LANES columns per cycle")
    b.logic("EMBED_D: the row's running sum, (r, d0) counters", "run_images/EMBED_D", 1, W + 2 * INT_BITS, W)
    b.array("x_sum[N_TOKENS] (wide_t)", "run_images", n, W, count=per_img,
            note="each row's sum, from the step that writes x to the next LayerNorm")
    if m.moe_blocks:
        b.logic("MOE_OUT_D: to_act(moe_acc), x + y, to_act, lane-sum adder per lane", "run_images/MOE_OUT_D",
                plan.cast_lanes, 2 * LUT_PER_CAST + 2 * W, note="CAST_LANES columns per cycle")
        b.logic("MOE_OUT_D: the row's running sum", "run_images/MOE_OUT_D", 1, W, W)
    b.control("run_images", inst["run_images"], loops=12)

    # the m_axi side: adapters, the output writers, the top ------------------------------------------
    b.unit = "m_axi adapters"
    lanes = plan.lanes
    if lanes.count == 1:
        _axi(b, TOP, len(set(h.bundle_of.values())), h.axi_width)
    else:   # the other buffers' bundles at the bus width, each weight lane's at the lane width
        others = {bd for arg, bd in m_axi_bundles(cfg).items() if arg not in lanes.names}
        _axi(b, TOP, len(others), h.axi_width, control=False)
        _axi(b, TOP, lanes.count, lanes.lane_bits, what=": weight lanes")
    wr = inst["write_rows"]
    sites = CALL_SITES["write_rows"]["run_images"]
    opb, cu = plan.out_per_beat, plan.cu_word_bits
    b.mults("write_rows: rows * cols", "write_rows", wr, INT_BITS, INT_BITS,
            note=f"{wr} instance(s) for {sites} call sites (ALLOCATION limit)")
    if wr < sites:   # the shared writer reads its src through a select of the row buffers, bank by bank
        n_src = 4    # x, hbuf, tbuf, big
        b.logic("write_rows: src select of the row buffers", "write_rows", wr,
                h.cu_in * cu * math.ceil(n_src / 4), note=f"{n_src} row buffers, {h.cu_in} banks each")
    # a bus word of OUT_PER_BEAT lanes, the words sign-extended into it (wires). Rows of whole bus words: lane j's
    # column is j modulo OUT_PER_BEAT, so it meets CU_IN / gcd(CU_IN, OUT_PER_BEAT) banks; (r, cb) counters.
    # Otherwise a lane's word comes from any of the CU_IN banks (its column is a counter) and each lane has its
    # (r, c) counters (compare, both sums, the selects; the past-the-region compare)
    if plan.write_rows_aligned:
        meets = h.cu_in // math.gcd(h.cu_in, opb)
        if meets > 1:
            b.logic("write_rows: each lane's bank select", "write_rows", wr * opb, cu * math.ceil(meets / 4),
                    shape=f"{opb} lanes, {meets} -> 1 of {cu}b", note="lane j meets the banks = j mod gcd")
        b.logic("write_rows: (r, cb) counters", "write_rows", wr, 2 * INT_BITS, 2 * INT_BITS)
    else:
        b.logic("write_rows: each lane's CU_IN -> 1 bank select", "write_rows", wr * opb,
                cu * math.ceil(h.cu_in / 4), shape=f"{opb} lanes, {h.cu_in} -> 1 of {cu}b")
        b.logic("write_rows: each lane's (r, c) counters", "write_rows", wr * opb, 5 * INT_BITS, 2 * INT_BITS)
    b.control("write_rows", wr, loops=1)
    # pack_rows: logits' rows a word a cycle into bus words (its one instance reads logits only)
    pk = inst["pack_rows"]
    b.logic("pack_rows: CU_IN -> 1 bank select, (r, c) counters", "pack_rows", pk,
            cu * math.ceil(h.cu_in / 4) + 2 * INT_BITS, 2 * INT_BITS)
    _put_word(b, "pack_rows", pk, h.axi_width)
    b.control("pack_rows", pk, loops=1)
    b.mults("GROUPS: g * words", f"{TOP}/GROUPS", 1, INT_BITS, INT_BITS)
    return b.items


def _dram_items(cfg, plan: KernelPlan, brd) -> list[Item]:
    """Edge-MoE's architecture (intermediates in DRAM, whole-layer weight ping-pong, three more bundles):
    a design the generated kernel is compared with, modelled structure by structure."""
    m, p, h = cfg.model, cfg.precision, cfg.hardware
    n, d, hd, P = m.num_tokens, m.embed_dim, m.head_dim, h.attn_parallel
    ci, co = h.cu_in, h.cu_out
    cu, wb, rw = plan.cu_word_bits, plan.weight_word_bits, plan.row_words
    tb = table_bits(cfg)
    te = plan.table_entries
    b = _Items(brd)
    macs = ci * co

    b.unit = "compute unit"
    b.mults("MAC", "compute unit", macs, cu, wb)
    b.logic("MAC adder trees + accumulate", "compute unit", co, ci * (cu + wb) + p.accum.bits)
    b.mults("score-scaled accumulate", "compute unit", 1, p.act.bits, p.gate_score.bits, b_signed=p.gate_score.signed)
    b.mults("gelu: GELU_TABLE interpolation", "compute unit", 1, tb["gelu"] + 1,
            p.act.frac_bits - p.gelu_step_log2, b_signed=False)
    b.rom("GELU_TABLE", "compute unit", te["gelu"], tb["gelu"])
    # whole-layer ping-pong weight buffers of CU_OUT x CU_IN blocks (one block per address: hls::vector)
    layer = max(d * d, d * m.mlp_hidden, d * m.expert_hidden, d * m.patch_dim)  # q, k, v are separate layers
    b.array("layer weights (ping + pong)", "compute unit", math.ceil(layer / macs), wb * macs, count=2)
    b.array("input row blocks", "compute unit", math.ceil(rw / ci), cu, banks=ci)
    b.array("bias ping-pong", "compute unit", 2, wb, banks=co, registers=True)
    b.logic("output cast", "compute unit", 1, 4 * p.accum.bits)
    b.control("compute unit", 1)

    b.unit = "attention"
    blk = max(1, h.axi_width // p.act.bits)
    b.mults("QK^T slot MAC", "attention", P * blk, p.qkv.bits, p.qkv.bits)
    b.mults("A*V MAC", "attention", P * blk, p.attn_prob.bits, p.qkv.bits, a_signed=p.attn_prob.signed)
    _exp_neg(b, "attention", 2 * P, cfg, tb)
    _reciprocal(b, "attention", P, cfg, tb)
    b.rom("EXP2_TABLE", "attention", te["exp2"], tb["exp2"])
    b.rom("RECIP_TABLE", "attention", te["recip"], tb["recip"])
    b.array("q blocks[P][DIM]", "attention", math.ceil(d / blk), p.qkv.bits * blk, banks=P)
    b.array("A*V acc[P][DIM]", "attention", math.ceil(d / blk), 48 * blk, banks=P)
    b.control("attention", 2)

    b.unit = "layernorm + residual"
    b.mults("(x-mean)^2", "layernorm", 1, p.ln_centered.bits, p.ln_centered.bits)
    b.mults("(x-mean)*inv_std", "layernorm", 1, p.ln_centered.bits, p.ln_inv_std.bits, b_signed=p.ln_inv_std.signed)
    b.mults("norm*gamma", "layernorm", 1, p.ln_norm.bits, p.ln_gamma.bits)
    b.mults("rsqrt: RSQRT_TABLE interpolation", "layernorm", 1, tb["rsqrt"] + 1,
            p.table_frac_bits - p.rsqrt_table_bits, b_signed=False)
    b.rom("RSQRT_TABLE", "layernorm", te["rsqrt"], tb["rsqrt"])
    b.array("c[DIM]", "layernorm", d, p.ln_centered.bits)
    b.control("layernorm", 2)

    if m.moe_blocks:
        b.unit = "gate + top-k + queues"
        _exp_neg(b, "gate", 1, cfg, tb)
        _reciprocal(b, "gate", 1, cfg, tb)
        b.mults("exp*inv", "gate", 1, p.exp.bits, p.softmax_inv.bits, a_signed=False, b_signed=False)
        b.rom("EXP2_TABLE", "gate", te["exp2"], tb["exp2"])
        b.rom("RECIP_TABLE", "gate", te["recip"], tb["recip"])
        b.array("route.queue[E][N]", "gate", m.num_experts * n, 16)
        b.array("route.queue_score[E][N]", "gate", m.num_experts * n, p.gate_score.bits)
        b.array("route.chosen[N][K] + score", "gate", n * m.top_k, 16 + p.gate_score.bits)
        b.control("gate", 2)

    b.unit = "activation buffers"
    b.array("stream FIFOs", "dataflow", 64, cu * ci, banks=3)
    b.array("softmax state rows", "attention", n, 2 * m.num_heads * p.act.bits)

    b.unit = "m_axi adapters"
    nb = len(set(h.bundle_of.values())) + 3
    _axi(b, "top", nb, h.axi_width)
    return b.items


# --- the whole design ---------------------------------------------------------------------

@dataclass
class ResourceEstimate:
    """Per-item and per-unit resources, totals, utilisation of a board and the fit verdict.

    ``items``: every :class:`Item`; ``units``: the items summed per unit (one
    :class:`~edgemoe.perf.primitives.UnitResources` each, a detail line per item).
    """

    cfg: object
    mode: str
    batch: int
    share_weights: bool
    units: list[UnitResources]
    board: str
    items: list[Item] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, float]:
        return {k: sum(getattr(u, k) for u in self.units) for k in RESOURCES}

    @property
    def limits(self) -> dict[str, int]:
        b = BOARDS[self.board]
        return {"dsp": b.dsp, "bram36": b.bram36, "uram": b.uram, "lut": b.lut, "ff": b.ff}

    @property
    def utilisation(self) -> dict[str, float]:
        """used / available per resource (inf where the board has none and the design uses some)."""
        t, lim = self.totals, self.limits
        return {k: (t[k] / lim[k] if lim[k] else (0.0 if t[k] == 0 else math.inf)) for k in t}

    def fits(self, cap: float = DEFAULT_CAP, check=RESOURCES) -> bool:
        u = self.utilisation
        return all(u[k] <= cap for k in check)

    def violations(self, cap: float = DEFAULT_CAP, check=RESOURCES) -> list[str]:
        u = self.utilisation
        return [k for k in check if u[k] > cap]

    @property
    def fit(self) -> bool:
        """Every resource at most :data:`DEFAULT_CAP` of the board."""
        return self.fits()

    @property
    def binding(self) -> str:
        """The resource with the highest utilisation (the one that binds)."""
        u = self.utilisation
        return max(RESOURCES, key=lambda k: u[k])

    @property
    def verdict(self) -> str:
        u = self.utilisation
        over = self.violations()
        head = f"binding: {RESOURCE_NAMES[self.binding]} at {_pct(u[self.binding])}"
        if self.binding in ROUGH:
            head += ", a rough figure"
        if not over:
            return f"fits the {self.board} at <= {DEFAULT_CAP:.0%} of every resource ({head})"
        return (f"does not fit the {self.board} at <= {DEFAULT_CAP:.0%}: "
                + ", ".join(f"{RESOURCE_NAMES[k]} {_pct(u[k])}" for k in over) + f" ({head})")

    def table(self, details: bool = False) -> str:
        """Units and their items (with ``details`` every item and its note; else the items that use DSPs or
        block memories), totals, the board, utilisation and the verdict."""
        h = self.cfg.hardware
        lines = [f"resources of {self.cfg.name} ({self.cfg.precision.name}, cu {h.cu_in}x{h.cu_out}, "
                 f"P={h.attn_parallel}) on {self.board}, mode {self.mode}, batch {self.batch}"
                 f"{' (weights shared)' if self.share_weights and self.batch > 1 else ''}",
                 f"  {'unit / item':<{_W_WHAT}} {'where':<{_W_WHERE}} {'count':>5}  {'shape':<{_W_SHAPE}}"
                 f"{'DSP':>7}{'BRAM36':>8}{'URAM':>6}{'LUT':>9}{'FF':>9}"]
        for u in self.units:
            lines.append(f"  {u.name:<{_W_WHAT + _W_WHERE + _W_SHAPE + 9}}{u.dsp:>7}{u.bram36:>8.1f}{u.uram:>6}"
                         f"{u.lut:>9}{u.ff:>9}")
            for it in self.items:
                if it.unit != u.name or not (details or it.dsp or it.bram36 or it.uram):
                    continue
                name = f"{_KIND[it.kind]}: {it.what}"
                lines.append(f"    {name:<{_W_WHAT - 2}} {it.where:<{_W_WHERE}} {it.count:>5}  {it.shape:<{_W_SHAPE}}"
                             f"{it.dsp:>7}{it.bram36:>8.1f}{it.uram:>6}{it.lut:>9}{it.ff:>9}")
                if details and it.note:
                    lines.append(f"      ({it.note})")
        t, lim, ut = self.totals, self.limits, self.utilisation
        pad = _W_WHAT + _W_WHERE + _W_SHAPE + 9
        lines.append(f"  {'total':<{pad}}{t['dsp']:>7.0f}{t['bram36']:>8.1f}{t['uram']:>6.0f}{t['lut']:>9.0f}"
                     f"{t['ff']:>9.0f}")
        lines.append(f"  {'board limit':<{pad}}{lim['dsp']:>7}{lim['bram36']:>8}{lim['uram']:>6}{lim['lut']:>9}"
                     f"{lim['ff']:>9}")
        lines.append(f"  {'utilisation':<{pad}}" + "".join(
            f"{_pct(ut[k]):>{w}}" for k, w in (("dsp", 7), ("bram36", 8), ("uram", 6), ("lut", 9), ("ff", 9))))
        lines.append(f"  verdict: {self.verdict}")
        lines.append("  (DSPs from operand widths, memories from the buffer shapes; LUT/FF are rough "
                     "per-structure figures)")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"board": self.board, "mode": self.mode, "batch": self.batch, "units": [u.as_dict() for u in self.units],
                "items": [it.as_dict() for it in self.items], "totals": self.totals, "limits": self.limits,
                "utilisation": self.utilisation, "fits": self.fit, "binding": self.binding, "verdict": self.verdict}


#: column widths of :meth:`ResourceEstimate.table`
_W_WHAT, _W_WHERE, _W_SHAPE = 60, 24, 32
#: the item kinds as the table prints them
_KIND = {"multipliers": "mul", "array": "array", "ROM": "ROM", "divider": "div", "logic": "logic",
         "control": "ctrl", "interface": "axi", "FIFO": "FIFO"}


def _pct(u: float) -> str:
    return f"{100 * u:.1f}%" if math.isfinite(u) else "n/a"


def _units(items: list[Item]) -> list[UnitResources]:
    units: dict[str, UnitResources] = {}
    for it in items:
        u = units.setdefault(it.unit, UnitResources(it.unit))
        u.dsp += it.dsp
        u.bram36 += it.bram36
        u.uram += it.uram
        u.lut += it.lut
        u.ff += it.ff
        amount = ", ".join(f"{v:g} {k}" for k, v in (("DSP", it.dsp), ("BRAM36", it.bram36), ("URAM", it.uram),
                                                      ("LUT", it.lut), ("FF", it.ff)) if v)
        u.detail.append(f"{it.count} x {it.kind} {it.what} @ {it.where} [{it.shape}] -> {amount or 'nothing'}")
    return list(units.values())


def estimate_resources(cfg, mode: str = "onchip", batch: int = 1, share_weights: bool = False,
                       board: str | None = None) -> ResourceEstimate:
    """Resources of the accelerator for ``cfg`` on ``board`` (default: the config's board).

    ``onchip``: the generated kernel as written, item by item; it runs the images of a call in the same row
    buffers (the MoE state sized by ``hardware.moe_batch``), so ``batch`` changes nothing.  ``share_weights``
    (with ``batch > 1``): a what-if, every weight shared by the whole batch: every image's row buffers and
    routing on chip at once (per-image copies).  ``edgemoe-dram``: Edge-MoE's architecture (buffers
    independent of the batch).
    """
    if mode not in ("onchip", "edgemoe-dram"):
        raise ValueError(f"mode {mode!r}: must be 'onchip' or 'edgemoe-dram'")
    share = bool(share_weights and batch > 1)
    plan = KernelPlan.from_config(cfg)
    bname = board or cfg.hardware.board
    brd = BOARDS[bname]
    if mode == "onchip":
        per_img = batch if share else 1
        note = f"one copy per image of the batch of {batch} (weights shared)" if per_img > 1 else ""
        items = _onchip_items(cfg, plan, brd, per_img, note)
    else:
        items = _dram_items(cfg, plan, brd)
    units = _units(items)
    for u in units:
        u.lut, u.ff = int(round(u.lut)), int(round(u.ff))
    return ResourceEstimate(cfg, mode, batch, share, units, bname, items)


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
