"""Loop-level model of the generated kernel as written (``hls/templates/edgemoe_vit.cpp.j2``).

Every labelled loop of the kernel (``LABEL: for ...``) is a :class:`LoopSpec`:
its function, parent loop, pragma, trip count (a formula of the kernel's
constants and the call's arguments) and, per iteration, what constrains its
initiation interval: accesses to each on-chip array and the banks they spread
over, m_axi accesses per pointer (burst or not), loop-carried recurrences and
their operators, multipliers.  :func:`loop_estimate` computes each loop's
achievable II from those constraints separately, names the one that binds,
counts the loop's entries and iterations per image by walking the kernel's
call structure (depth, MoE blocks, active experts per routing) and returns
cycles per loop and per step.  Nothing here assumes a pragma is met.

The scheduling rules (how Vitis HLS builds the hardware):

* **Bank ports.**  A BRAM / LUTRAM bank (and a ROM: the numerics' global
  tables) has 2 ports: ``k`` accesses of one bank per iteration need
  ``II >= ceil(k / 2)``.  ``ARRAY_PARTITION cyclic factor=F`` / ``complete``
  gives F banks along that dimension; ``a[r][k0 + i]``, ``i < F`` hits F banks.
  Only the template's partition pragmas count (the tool's throughput-driven
  automatic partitioning is not assumed).  Reads of one address by unrolled
  copies of an inlined function or unrolled lanes (the row's max and 1/sum
  every PROBS lane takes) are one read.
* **m_axi.**  A bundle performs at most one read and one write transaction
  per cycle.  Only an unconditional, sequential read of one array in a
  pipelined loop becomes a burst; any other access is a transaction of its
  own (one issued only in a debug-tap call still takes its port slot in the
  schedule, but moves no data in an inference call).  In a pipelined loop at most :data:`MAXI_OUTSTANDING` transactions are
  in flight, so single-beat accesses cost ``latency / outstanding`` cycles
  each (Little's law; the latency is ``KernelPlan.m_axi_latency``, the board's
  DRAM latency at the kernel clock, which the project also tells the tool); outside
  a pipeline each access pays the whole latency.  A beat is the pointer's
  element: a whole bus word (``weight_beat_t``, ``hardware.axi_width`` bits,
  ``WORDS_PER_BEAT`` weight words) for the weights, or one lane of it per
  lane pointer (``hardware.weight_lanes``, each on its own bundle), an image
  word (``IMAGE_LANES`` pixels), a whole bus word of ``OUT_PER_BEAT`` output
  words for the activations (``act_beat_t``; the small debug taps put a word
  a cycle into one and write it when full: a conditional write, no burst,
  ``1 / OUT_PER_BEAT`` of a transaction per iteration).  Every
  bundle reaches memory through a port of its own (``Board.port_gbps``; a
  ZCU102 HP port is 128 bits, so a 256-bit beat takes two of its cycles) and all share the DDR (``Board.mem_gbps x
  mem_efficiency``: a loop's bytes on every bundle together); bursts are :data:`MAXI_BURST_BEATS` beats long.
* **Recurrence.**  A value carried from one iteration to the next through
  an operator chain of latency L (``l * alpha + e`` of the online softmax, a
  read-modify-write through a RAM) forces ``II >= L``.  A register latched
  under a condition and read by later iterations (the routing's hand-offs
  between its stages) is a recurrence of one select: what is computed before
  the latch deepens the pipeline, it does not raise the II.
* **DSPs.**  An iteration's multipliers beyond the board's DSPs must share
  slices: ``II >= ceil(DSPs per iteration / board DSPs)``.
* **Unrolling.**  PIPELINE fully unrolls every loop inside it, UNROLL with a
  factor inside a pipelined loop included.  A loop without PIPELINE (the
  project sets ``config_compile -pipeline_loops 0``) runs sequentially: each
  iteration takes its body's latency plus one cycle for the exit test, and an
  inner pipelined loop pays its depth on every entry.
* **Calls.**  Function calls in a sequential region run one after the other;
  a call inside a loop pays its latency per iteration.  The compute unit is a
  DATAFLOW region of two processes, ``load_tiles`` and ``compute_tiles``, joined
  by a FIFO that holds one tile: a call takes max(loader, compute) + the
  shorter process's share of one tile (the fill), and the shorter process's
  loops count only that fill (``LoopRecord.hidden`` holds the rest).  Where
  the compute binds and the layer is one burst, the compute's first pass
  unpacks the first tile's bus words as they arrive, so the fill is only what
  of their arrival that pass does not cover (:func:`first_tile_fill`).
  ``compute_tiles`` unpacks tile t + 1 inside tile t's MACs (a ping-pong
  tile buffer), all a layer's ``tiles + 1`` passes in one pipeline: a pass
  runs max(MAC iterations of the tile before, PASS_LEAD + unpack steps of the
  tile + PASS_TAIL) iterations (:meth:`edgemoe.hls.plan.KernelPlan.mac_passes`), only the first tile's
  unpack is in front of the MACs, and the pipeline's depth is paid once per
  layer call.  With rows of whole bus words a call also streams and unpacks
  the next call's biases and first tile (its last pass lasts at least that
  unpack), so the next starts with its MACs: no first tile in front, and a
  fill only where its second tile arrives after its first pass's MACs.

Operator latencies come from :data:`edgemoe.perf.primitives.OP_LATENCY` (the
RTL units' measurements replace them when given).  A loop's cycles per image
are ``entries x (trip x II + depth)`` when pipelined and ``iterations x
(body + 1)`` when not, less what runs beside the other process of a DATAFLOW
region; the totals are sums of the loops and the functions' call overheads,
nothing else.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from edgemoe.boards import BOARDS
from edgemoe.hls.interface import TOP, m_axi_bundles
# BANK_PORTS: ports of one BRAM / LUTRAM / ROM bank (true dual port), the plan's, which sets write_rows' II too
from edgemoe.hls.plan import BANK_PORTS, KernelPlan  # noqa: F401  (BANK_PORTS: used and re-exported)

from .primitives import OP_LATENCY, dsp_per_mult

#: m_axi transactions a bundle keeps in flight (the tool's default num_read_outstanding / num_write_outstanding)
MAXI_OUTSTANDING = 16
#: beats per burst (the tool's default max_read_burst_length / max_write_burst_length)
MAXI_BURST_BEATS = 16
#: cycles from ap_start to the first loop and from the last write to ap_done
CALL_OVERHEAD = 200
#: the constraint names, in the order the table lists them
CONSTRAINTS = ("bank ports", "m_axi", "recurrence", "DSPs")


# --- what a loop does per iteration ----------------------------------------------------------------

@dataclass(frozen=True)
class Port:
    """Accesses of one on-chip array per iteration, spread evenly over ``spread`` of its banks."""

    array: str
    reads: int = 0
    writes: int = 0
    spread: int = 1

    @property
    def per_bank(self) -> int:
        return math.ceil((self.reads + self.writes) / max(1, self.spread))


@dataclass(frozen=True)
class Axi:
    """m_axi accesses of one pointer argument per iteration.

    ``burst``: the tool infers a burst (unconditional, sequential, one array, pipelined loop);
    ``why``: what prevents it otherwise.
    """

    arg: str
    reads: int = 0
    writes: int = 0
    burst: bool = False
    why: str = ""
    when: str = ""   # a condition on the call's arguments (e.g. ``has_bias``); empty: every iteration
    tap_only: bool = False   # issued only in a debug-tap call: holds its port slot, moves no data otherwise


@dataclass(frozen=True)
class Recurrence:
    """A value carried through the operators ``ops`` (names of OP_LATENCY) to the iteration ``distance``
    iterations later (1: the next): ``II >= ceil(latency / distance)``."""

    what: str
    ops: tuple[str, ...]
    distance: int = 1


@dataclass(frozen=True)
class Mults:
    """``count`` multipliers of ``a_bits`` x ``b_bits`` per iteration."""

    count: int
    a_bits: int
    b_bits: int


@dataclass(frozen=True)
class LoopSpec:
    """One labelled loop of the kernel as written.

    pragma: as the template writes it (``PIPELINE II=1``, ``PIPELINE``, ``UNROLL``,
    ``UNROLL factor=16``, ``-``).  trip: a formula over the kernel constants
    (``N_TOKENS``, ``CU_IN``, ...) and the call's arguments (``rows``, ``k_dim``,
    ``tiles``, ...).  ops: the critical path of one iteration (the pipeline's
    depth, or a sequential body's latency).  tap_only: runs only in a debug-tap
    call.  step: the estimate step its cycles count to (None: the caller's).
    inlined_in: for a loop of an inlined function, the pipelined loops it is
    inlined (and so fully unrolled) into.  units: table units the loop runs off
    its depth path (the compute unit's side job: the online softmax's exps),
    whose measured II bounds the loop as those on it do.
    """

    label: str
    function: str
    parent: str | None
    pragma: str
    trip: str
    ports: tuple[Port, ...] = ()
    axi: tuple[Axi, ...] = ()
    recurrences: tuple[Recurrence, ...] = ()
    mults: tuple[Mults, ...] = ()
    ops: tuple[str, ...] = ()
    tap_only: bool = False
    step: str | None = None
    inlined_in: str | None = None
    units: tuple[str, ...] = ()

    @property
    def pipelined(self) -> bool:
        return self.pragma.startswith("PIPELINE")

    @property
    def target_ii(self) -> int:
        if not self.pipelined:
            return 0
        return int(self.pragma.split("II=")[1]) if "II=" in self.pragma else 1


@dataclass(frozen=True)
class FunctionSpec:
    """A kernel function that is not inlined: its call overhead and straight-line code (ops)."""

    name: str
    ops: tuple[str, ...] = ("call",)


@dataclass
class LoopII:
    """A loop's achievable II, each constraint separately, the binding one and the pipeline depth.

    For a loop without PIPELINE ``ii`` is the cycles of one iteration (body + exit test),
    ``maxi`` of them the DRAM round trips of its m_axi accesses (paid only in the
    iterations that make them); for a loop unrolled into a pipeline it is 0 (its
    work is its parent's).
    """

    ii: float
    binding: str
    depth: float
    constraints: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    unrolled_in: str | None = None
    maxi: float = 0.0


# --- the kernel as written -------------------------------------------------------------------------

def _log2c(x: int) -> int:
    return max(0, math.ceil(math.log2(max(1, x))))


#: the operators from a LayerNorm row's last chunk to the first use of its 1/std (plan.LN_HANDOFF covers them)
LN_HANDOFF_OPS = ("add", "div_const", "add", "rsqrt", "store")
#: the operators from the PROBS iteration that forms a row's 1/sum to its first use (plan.PROB_HANDOFF covers them)
RECIP_HANDOFF_OPS = ("bram", "recip", "store")
#: the online softmax's sum recurrence: read l, l * alpha, + e, cast, store (plan.SM_RECURRENCE covers them)
SM_SUM_OPS = ("bram", "mul", "add", "cast", "store")


def kernel_constants(cfg, plan: KernelPlan) -> dict:
    """The kernel's constants (``edgemoe_config.h``) the trip formulas read."""
    m, h = cfg.model, cfg.hardware
    return {"N_TOKENS": m.num_tokens, "DIM": m.embed_dim, "HEADS": m.num_heads, "HEAD_DIM": m.head_dim,
            "EXPERTS": m.num_experts, "TOP_K": m.top_k, "DEPTH": m.depth, "NUM_PATCHES": m.num_patches,
            "PATCH": m.patch_size, "IN_CHANS": m.in_chans, "IMG_H": m.img_height, "IMG_W": m.img_width,
            "PATCH_DIM": m.patch_dim, "MLP_HIDDEN": m.mlp_hidden, "EXPERT_HIDDEN": m.expert_hidden,
            "CU_IN": h.cu_in, "CU_OUT": h.cu_out, "MAC_CHAIN": plan.mac_chain, "ATTN_P": h.attn_parallel,
            "ATTN_GROUPS": plan.attn_groups, "SCORE_COLS": plan.score_cols, "PROB_COL": plan.prob_col,
            "K_PAD": plan.k_pad, "AV_FOLD": plan.av_fold, "PROB_LANES": plan.prob_lanes,
            "PROB_CHUNKS": plan.prob_chunks,
            "PROB_LEAD": plan.prob_lead, "PROB_PAD_LANES": plan.prob_pad_lanes, "EW_LANES": plan.elementwise_lanes,
            "CAST_LANES": plan.cast_lanes, "LN_LANES": plan.ln_lanes, "LN_PARAM_BEATS": plan.ln_param_beats, "LN_CHUNKS": plan.ln_chunks,
            "CONST_BEATS": plan.const_beats, "CLS_BEATS": plan.cls_beats, "LN_WORDS": plan.ln_words,
            "LN_SKEW": plan.ln_skew,
            "EPI_LANES": plan.epilogue_lanes, "EPI_GROUPS": plan.epilogue_groups,
            "ROW_WORDS": plan.row_words, "WORDS_PER_BEAT": plan.words_per_beat,
            "MATRIX_PER_BEAT": plan.matrix_per_beat, "UNPACK_STEPS": plan.unpack_steps,
            "UNPACK_FIELDS": plan.unpack_fields, "GATE_STEPS": plan.gate_steps, "GATE_LANES": plan.gate_lanes,
            "GATE_SLOTS": plan.gate_slots, "IMAGE_LANES": plan.image_lanes,
            "IMAGE_WORDS": plan.image_words, "POS_BEATS": plan.pos_beats, "OUT_PER_BEAT": plan.out_per_beat,
            "PIX_BEATS": plan.pix_beats, "MOE_COUNT": len(plan.moe_blocks), "MOE_BATCH": plan.moe_batch}


def array_banks(cfg, plan: KernelPlan) -> dict[str, int]:
    """Banks of each on-chip array after the template's ARRAY_PARTITION pragmas (1: unpartitioned)."""
    m, h = cfg.model, cfg.hardware
    wpb = plan.words_per_beat  # cls, pos (the position table): cyclic WORDS_PER_BEAT
    rows = h.cu_in  # x, hbuf, tbuf, big: cyclic CU_IN on the row dimension
    # logits (the softmax's S: a head's scores) is cyclic CU_IN too
    return {"x": rows, "hbuf": rows, "tbuf": rows, "big": rows, "in": rows, "logits": rows, "S": rows, "src": rows,
            "w": h.cu_out * h.cu_in, "b": 2 * h.cu_out, "moe_acc": plan.moe_acc_banks, "gelu_lane": plan.epilogue_lanes,
            # the softmax's per-query state: complete on the lane
            "row_max": h.attn_parallel, "row_sum": h.attn_parallel, "row_inv": h.attn_parallel,
            "out": rows, "y": rows, "ln_par": plan.ln_param_banks,
            "c": 3 * plan.ln_lanes, "x_sum": 1,
            "cls": wpb, "pos": wpb, "q_count": m.num_experts,
            "route.queue": 1, "route.queue_score": 1, "route.chosen": 1, "route.chosen_score": 1,
            "route.ex": 1, "route.inv": 1, "sm_s": rows, "sm_max": h.attn_parallel, "sm_sum": h.attn_parallel,
            # the group's kept rows: cyclic EW_LANES (the routing keeps a chunk of them a cycle)
            "x_keep": plan.elementwise_lanes, "h_keep": plan.elementwise_lanes, "pass_row": 1, "pass_score": 1,
            "EXP2_TABLE": 1, "RECIP_TABLE": 1, "RSQRT_TABLE": 1, "GELU_TABLE": 1,
            "exp2_gate": 2 * plan.gate_lanes, "recip_gate": 2 * plan.gate_lanes,
            "exp2_lane": 2 * h.attn_parallel, "exp2_prob": 2 * (plan.prob_lanes + plan.av_fold)}


def kernel_functions() -> tuple[FunctionSpec, ...]:
    """The kernel's functions that are not inlined, with their straight-line code."""
    return (FunctionSpec("compute_unit"), FunctionSpec("load_tiles", ("call", "add")),
            FunctionSpec("compute_tiles", ("call", "add", "add")),
            FunctionSpec("layernorm"), FunctionSpec("softmax"),
            FunctionSpec("write_rows"), FunctionSpec("pack_rows"), FunctionSpec("run_images"))


def kernel_loops(cfg, plan: KernelPlan) -> tuple[LoopSpec, ...]:
    """Every labelled loop of the kernel, in source order, with what constrains it."""
    m, h = cfg.model, cfg.hardware
    banks = array_banks(cfg, plan)
    ci, co, P, hd = h.cu_in, h.cu_out, h.attn_parallel, m.head_dim
    E = plan.epilogue_lanes
    L = plan.elementwise_lanes   # the elementwise copies' and clears' columns per iteration
    # a bus word of weights: one read of each lane's pointer (its own bundle) per iteration
    weight_reads = tuple(Axi(name, reads=1, burst=True) for name in plan.lanes.names)
    C = plan.cast_lanes          # and of those that cast every column
    wpb, mpb = plan.words_per_beat, plan.matrix_per_beat
    cu, wb = plan.cu_word_bits, plan.cu_weight_bits   # the MACs' operands: cu_word_t x cu_weight_t
    PL, fold, GL = plan.prob_lanes, plan.av_fold, plan.gate_lanes
    acc_bits = 64  # wide_t

    def spread(n, array):
        return min(n, banks[array])

    # a MAC output: MAC_CHAIN-long chains of DSP post-adders (a stage a slice), then the chains' sums added to the
    # accumulator in order (MAC_C: one fabric adder a chain)
    mac_tree = ("add",) * (plan.mac_chain - 1) + ("add",) * (ci // plan.mac_chain)
    cast_tree = ("add",) * _log2c(C)   # a lane sum (adder tree) before the running sum
    LN = plan.ln_lanes                 # the LayerNorm's columns per iteration
    ln_tree = ("add",) * _log2c(LN)
    p = cfg.precision
    opb = plan.out_per_beat
    # a debug tap's words a cycle into a bus word of the activations, written when full (put_word): a write of
    # its own (conditional: no burst) every OUT_PER_BEAT iterations
    packed = Axi("activations", writes=1 / opb, why="a bus word written when full (conditional)", tap_only=True)
    S = LoopSpec
    return (
        # load_tiles: the compute unit's loader process; rows of whole bus words: the layer's biases and its
        # weight rows in one burst (the layout puts them back to back), else per tile
        # (less the first pre_beats, which the call before streamed: its prefetch), then the next call's biases and
        # tile 0 (LOAD_NEXT, a burst of their own: next_beats)
        # (where the layout has them right after it, the same burst goes on: join_beats)
        *((S("LOAD_W", "load_tiles", None, "PIPELINE II=1", "bias_beats + weight_beats - pre_beats + join_beats",
             axi=weight_reads, ops=("store",)),
           S("LOAD_NEXT", "load_tiles", None, "PIPELINE II=1", "next_beats", axi=weight_reads, ops=("store",)))
          if plan.weight_rows_aligned else
          (S("LOAD_TILES", "load_tiles", None, "-", "tiles", ops=("add", "add")),
           S("LOAD_B", "load_tiles", "LOAD_TILES", "PIPELINE II=1", "bias_beats / tiles",
             axi=weight_reads, ops=("store",)),
           S("LOAD_W", "load_tiles", "LOAD_TILES", "PIPELINE II=1", "weight_beats / tiles",
             axi=weight_reads, ops=("store",)))),
        # compute_tiles: the compute unit's compute process; one pipeline over the layer's passes: pass p runs
        # tile p - 1's MACs and unpacks tile p (a FIFO bus word per UNPACK_STEPS MAC iterations) into the other
        # half of the ping-pong buffer
        # (the attention's passes unpack on-chip weights instead: W_KEYS a key row's CU_IN words, W_VALUES CU_IN
        # value columns of one key, from `in` beside the MACs' read: two reads a bank of in, one write a bank of w)
        S("MAC", "compute_tiles", None, "PIPELINE II=1", "mac_iters",
          ports=(Port("in", reads=2 * ci, spread=spread(ci, "in")),
                 # the MACs read CU_IN consecutive k of every row, one word of each bank (half cur); the
                 # unpack writes UNPACK_FIELDS consecutive (o, k) into half nxt of the same banks,
                 # ceil(UNPACK_FIELDS / banks along k) to a bank: the busiest bank's accesses
                 Port("w", reads=co * ci, writes=co * ci * math.ceil(plan.unpack_fields / (banks["w"] // co)),
                      spread=co * ci),
                 # the epilogue: EPI_LANES consecutive columns of out / acc_rows per iteration
                 Port("b", reads=E, spread=spread(E, "b")),
                 Port("b", writes=min(wpb, co), spread=spread(min(wpb, co), "b")),   # the bias unpack
                 # the epilogue's EPI_LANES consecutive columns: ceil(EPI_LANES / CU_IN) writes on a bank
                 Port("out", writes=ci * math.ceil(E / ci), spread=ci),
                 Port("moe_acc", reads=E, writes=E, spread=spread(E, "moe_acc")),
                 Port("gelu_lane", reads=2 * E, spread=spread(E, "gelu_lane")),
                 # CU_RESID (proj, fc2): x += y on the same EPI_LANES columns of the residual stream, and the
                 # row's last group read-modify-writes its x_sum
                 Port("x", reads=E, writes=E, spread=spread(E, "x")), Port("x_sum", reads=1, writes=1),
                 # the side job (the online softmax, a step every SM_PACE iterations): lane p reads column s + p of
                 # its query's row of sm_s (ATTN_P consecutive columns), and CU_SCORES stores a row's CU_OUT scores
                 # in its last MAC iteration (consecutive columns): the busiest bank takes ceil(ATTN_P / CU_IN) +
                 # ceil(CU_OUT / CU_IN); each lane its bank of sm_max / sm_sum, its exp2_lane ROM (two exps, an
                 # interpolation's two reads each, one per even / odd bank)
                 Port("sm_s", reads=ci * math.ceil(P / ci), writes=ci * math.ceil(co / ci), spread=ci),
                 *((Port("p_tail", reads=fold, spread=fold),) if fold else ()),   # A*V's folded keys, a row's
                 Port("sm_max", reads=P, writes=P, spread=banks["sm_max"]),
                 Port("sm_sum", reads=P, writes=P, spread=banks["sm_sum"]),
                 Port("exp2_lane", reads=2 * 2 * P, spread=banks["exp2_lane"])),
          recurrences=(Recurrence("acc[o] = (kb ? acc[o] : 0) + sum of CU_IN products", ("add",)),
                       Recurrence("(r, kb), (et, dr, po): the MACs' and the epilogue's positions", ("add",)),
                       # the pass ends on compares of registers; its counters step by constants (no multiplies)
                       Recurrence("(t, rem, idle[, en, bn]): the pass, its tile's outputs, the unpack's gaps",
                                  ("add",)),
                       # a half's unpack write and the next pass's MAC read of it (and a read and the next
                       # write): PASS_GAP iterations apart, as the DEPENDENCE pragmas on w and b state
                       Recurrence("w, b: a write to a half and the next pass's read (a BRAM write, a read)",
                                  ("store", "bram"), distance=plan.pass_gap),
                       Recurrence("xs += lane sum (CU_RESID: the row's new x words in this tile)", ("add",)),
                       # CU_RESID: x_sum[dr] is read, added to and written once a row per tile; the same row's
                       # next update is a pass later (the DEPENDENCE pragma on x_sum states plan.pass_min)
                       Recurrence("x_sum[dr] += xs (a row per tile: a pass apart)", ("bram", "add", "store"),
                                  distance=plan.pass_min),
                       # whole bus words per row: one add and compare; otherwise one per possible row wrap
                       Recurrence("(o0, k0, h): the unpack's bus word, its row and column, its step",
                                  ("add",) * (1 if plan.weight_rows_aligned else plan.unpack_wraps)),
                       # the side job: a query's state, revisited every ATTN_GROUPS steps of SM_PACE iterations: its
                       # sum through l * alpha (softmax_sum_t x exp_t) + e and the cast; its max through a compare
                       # and select. alpha = exp(m - m') hangs off the max's recurrence (read m, exp, into the
                       # product), not on a cycle: the scheduler reads l as late as it needs
                       Recurrence("side job: a query's sum l = cast(l * alpha + e), ATTN_GROUPS x SM_PACE iterations "
                                  "apart", SM_SUM_OPS, distance=plan.attn_groups * plan.sm_pace),
                       Recurrence("side job: a query's max m = max(m, s)", ("bram", "add", "store"),
                                  distance=plan.attn_groups * plan.sm_pace),
                       Recurrence("side job: (ss, sg, sp), the step, group and pace", ("add",))),
          # and the side job's per lane: l * alpha, and each exp's x * LOG2E_RAW and interpolation
          mults=(Mults(co * ci + co * fold, cu, wb), Mults(E, cu, 18), Mults(E, acc_bits, 16),
                 Mults(P, p.softmax_sum.bits, p.exp.bits), Mults(2 * P, acc_bits, 18)),
          # after the cast, GELU and the score accumulate's path (gelu, mul, bram, add, store) is longer than
          # CU_RESID's (add, cast, the lane sum's adder tree, the running sum, x_sum's add, store)
          ops=("bram", "mul") + mac_tree + ("add", "add", "cast", "gelu", "mul", "bram", "add", "store"),
          units=("exp",)),
        S("FINISH", "compute_tiles", "MAC", "-", "EPI_LANES"),
        # the side job's ATTN_P lanes, in the iterations that take a step
        S("SM_LANES", "compute_tiles", "MAC", "UNROLL", "ATTN_P * sm_steps / mac_iters"),
        S("MAC_O", "compute_tiles", "MAC", "-", "CU_OUT"),
        S("MAC_C", "compute_tiles", "MAC_O", "-", "CU_IN / MAC_CHAIN"),
        S("MAC_I", "compute_tiles", "MAC_C", "-", "MAC_CHAIN"),
        # A*V's folded keys, in a row's last chunk (counted as if every iteration had them: unrolled, no cycles)
        *((S("FOLD_J", "compute_tiles", "MAC_O", "-", "AV_FOLD"),) if fold else ()),
        # the unpack's fields, unrolled: a bias bus word's in one iteration, UNPACK_FIELDS of a weight bus word's
        # in each of UNPACK_STEPS (per MAC iteration: averaged over the pass)
        # (the bus words the call's compute pops: its own less what the call before unpacked, and the next call's
        # biases and tile 0 in its last pass)
        S("UNPACK_B_J", "compute_tiles", "MAC", "-", "WORDS_PER_BEAT * pop_bias_beats / mac_iters"),
        S("UNPACK_W_J", "compute_tiles", "MAC", "-", "UNPACK_FIELDS * UNPACK_STEPS * pop_weight_beats / mac_iters"),
        # the on-chip unpacks (attention): CU_IN words a step, key_steps / value_steps steps a call
        S("UNPACK_K", "compute_tiles", "MAC", "-", "CU_IN * key_steps / mac_iters"),
        S("UNPACK_V", "compute_tiles", "MAC", "-", "CU_IN * value_steps / mac_iters"),
        # layernorm: rows x chunks of CAST_LANES columns in one pipeline, skewed by LN_SKEW rows (centre and
        # square row r, normalise row r - LN_SKEW); the row's sum comes with x (x_sum, from the embedding or a
        # residual add)
        S("LN_STEPS", "layernorm", None, "PIPELINE II=1", "(N_TOKENS + LN_SKEW) * LN_CHUNKS",
          ports=(Port("x", reads=LN, spread=spread(LN, "x")), Port("x_sum", reads=1),
                 Port("c", reads=LN, writes=LN, spread=2 * spread(LN, "c")),   # two of its LN_SKEW + 1 row buffers
                 # gamma's and beta's LN_LANES consecutive words in ln_par: distinct banks each
                 Port("ln_par", reads=2 * LN, spread=spread(LN, "ln_par")),
                 Port("y", writes=LN, spread=spread(LN, "y")), Port("RSQRT_TABLE", reads=2)),
          recurrences=(Recurrence("sq += lane sum of c * c", ("add",)),
                       Recurrence("a row's 1/std to its normalisation, (LN_SKEW - 1) x LN_CHUNKS + 1 iterations "
                                  "later", LN_HANDOFF_OPS, distance=(plan.ln_skew - 1) * plan.ln_chunks + 1),
                       Recurrence("(r, d0), the buffers: the position", ("add",))),
          mults=(Mults(LN, p.ln_centered.bits, p.ln_centered.bits), Mults(LN, p.ln_centered.bits, p.ln_inv_std.bits),
                 Mults(LN, p.ln_norm.bits, plan.weight_word_bits)),
          # the longer of the two stages: centre, square, sum, 1/std (the normalisation is shorter)
          ops=("bram", "div_const", "add", "cast", "mul") + ln_tree + ("add", "div_const", "add", "rsqrt", "store")),
        S("LN_VAR_U", "layernorm", "LN_STEPS", "-", "LN_LANES"),
        S("LN_OUT_U", "layernorm", "LN_STEPS", "-", "LN_LANES"),
        # PROBS: row i x PROB_LANES keys per iteration: each lane its exp (its exp2_prob ROM) and its product with
        # the row's 1/sum, into PROB_LANES consecutive columns of big (distinct banks); the row's last chunk zeroes
        # its padded keys' PROB_PAD_LANES columns beside (one CU_IN window with the chunk's); a row's 1/sum formed
        # PROB_LEAD rows ahead (at chunk 0)
        S("PROBS", "softmax", None, "PIPELINE II=1", "(N_TOKENS + PROB_LEAD) * PROB_CHUNKS",
          # (and beside a row's last chunk AV_FOLD lanes more: the folded keys' probabilities into p_tail)
          ports=(Port("S", reads=PL + fold, spread=spread(PL + fold, "S")),
                 *((Port("p_tail", writes=fold, spread=fold),) if fold else ()),
                 Port("big", writes=PL + plan.prob_pad_lanes, spread=spread(PL + plan.prob_pad_lanes, "big")),
                 Port("row_max", reads=1), Port("row_inv", reads=1, writes=1, spread=banks["row_inv"]),
                 Port("row_sum", reads=1), Port("RECIP_TABLE", reads=2),
                 Port("exp2_prob", reads=2 * (PL + fold), spread=banks["exp2_prob"])),
          recurrences=(Recurrence("(i, p, g, j0), (lp, lg): the row, its chunk, the lead's query", ("add",)),
                       Recurrence("a row's 1/sum to its first use, PROB_LEAD x PROB_CHUNKS iterations later",
                                  RECIP_HANDOFF_OPS, distance=plan.prob_lead * plan.prob_chunks)),
          mults=(Mults(PL + fold, acc_bits, 18), Mults(PL + fold, p.exp.bits, p.softmax_inv.bits)),
          ops=("bram", "add", "exp", "mul", "cast", "store"), step="attn"),
        S("PROB_U", "softmax", "PROBS", "-", "PROB_LANES", step="attn"),
        *((S("PROB_PAD", "softmax", "PROBS", "-", "PROB_PAD_LANES / PROB_CHUNKS", step="attn"),)
          if plan.prob_pad_lanes else ()),
        *((S("FOLD_U", "softmax", "PROBS", "-", "AV_FOLD / PROB_CHUNKS", step="attn"),) if fold else ()),
        S("TAP_SM", "softmax", None, "PIPELINE II=1", "N_TOKENS", tap_only=True,
          ports=(Port("row_max", reads=1), Port("row_inv", reads=1)), axi=(packed,)),
        # route_tokens (inlined in run_images): the count clear, then gate softmax, top-k, queue fill and the image's
        # rows of the MoE state (moe_acc cleared, x and the norm2 rows kept) in one pipeline of token slots (top-k
        # of token s, exps of s - 1, queue writes of s - GATE_SKEW)
        S("Q_CLEAR", "route_tokens", None, "UNROLL", "EXPERTS", ops=("store",), step="gate_topk"),
        # next_active (inlined in run_images): the first expert after e with rows queued, a priority encoder
        S("NEXT_ACTIVE", "next_active", None, "UNROLL", "EXPERTS", step="expert_gather"),
        S("GATE", "route_tokens", None, "PIPELINE II=1", "GATE_STEPS",
          # logits: the GATE_LANES tokens of a slot (stage A; stage B takes its logits from the lanes' delay lines),
          # one column, so one bank's two ports; per lane a write of the exps and 1/sum (the scores tap) and its
          # exp and reciprocal ROMs; the queue stage's one entry a cycle (the queue and the top-k taps' words)
          ports=(Port("logits", reads=GL), Port("route.ex", writes=GL), Port("route.inv", writes=GL),
                 Port("route.queue", writes=1), Port("route.queue_score", writes=1),
                 Port("route.chosen", writes=1), Port("route.chosen_score", writes=1),
                 Port("q_count", reads=1, writes=1, spread=banks["q_count"]),
                 Port("moe_acc", writes=L, spread=spread(L, "moe_acc")),
                 Port("x", reads=L, spread=spread(L, "x")), Port("hbuf", reads=L, spread=spread(L, "hbuf")),
                 Port("x_keep", writes=L, spread=spread(L, "x_keep")),
                 Port("h_keep", writes=L, spread=spread(L, "h_keep")),
                 Port("exp2_gate", reads=2 * GL, spread=banks["exp2_gate"]),
                 Port("recip_gate", reads=2 * GL, spread=banks["recip_gate"])),
          # the hand-offs between the stages are registers latched at a slot's last expert (a select each): the
          # exp, 1/sum and the scores ahead of a latch are depth (ops), not a recurrence; each lane's list, sum
          # and delay line are its own
          recurrences=(Recurrence("a lane's top-k list: compare and insert (registers)", ("add",)),
                       Recurrence("a lane's sum += exp (an exact integer)", ("add",)),
                       Recurrence("q_count[e]++ (registers, e varies)", ("add",)),
                       Recurrence("(s, e), the tokens' counters, the clear's (cr, cd): the position", ("add",))),
          # per lane exp_neg's (logit - max) x LOG2E_RAW and its interpolation, the reciprocal's, the chosen scores
          mults=(Mults(GL, p.gate_logit.bits + 1, p.table_frac_bits + 2),
                 Mults(2 * GL, p.table_frac_bits + 2, p.table_frac_bits + 1),
                 Mults(GL * m.top_k, p.exp.bits, p.softmax_inv.bits)),
          ops=("bram", "add", "exp", "add", "recip", "mul", "cast", "store"), step="gate_topk"),
        # its unrolled loops, per iteration of their parents (GATE: averaged over the loop): the queue stage's
        # shift in a slot's first GATE_LANES x TOP_K iterations; the lanes' stage A every iteration (the insert
        # and the delay line), stage B in the slots after the first
        S("GATE_SHIFT", "route_tokens", "GATE",
          "-", "GATE_SLOTS * GATE_LANES * TOP_K * (GATE_LANES * TOP_K - 1) / GATE_STEPS"),
        S("GATE_B", "route_tokens", "GATE", "-", "GATE_SLOTS * EXPERTS * GATE_LANES / GATE_STEPS"),
        S("GATE_PICK", "route_tokens", "GATE_B", "-", "TOP_K"),
        S("GATE_A", "route_tokens", "GATE", "-", "GATE_LANES"),
        S("GATE_DELAY", "route_tokens", "GATE_A", "-", "EXPERTS - 1"),
        S("GATE_INSERT", "route_tokens", "GATE_A", "-", "TOP_K"),
        S("GATE_CLEAR_U", "route_tokens", "GATE", "-", "N_TOKENS * DIM / GATE_STEPS"),
        # write_rows: a bus word (OUT_PER_BEAT words) an iteration in one pipeline, one burst; the busiest of src's
        # CU_IN banks takes write_bank_reads reads a bus word (with OUT_PER_BEAT <= CU_IN: 1 in a row, 2 across a
        # row end), two ports a bank: II write_ii. Rows of whole bus words: (r, cb) counters; otherwise each lane
        # its (r, c) counters, set by the unrolled WRITE_LANES (a counter step a lane)
        *(() if plan.write_rows_aligned else
          (S("WRITE_LANES", "write_rows", None, "UNROLL", "OUT_PER_BEAT", ops=("add",) * opb),)),
        S("WRITE_W", "write_rows", None, f"PIPELINE II={plan.write_ii}", "beats",
          ports=(Port("src", reads=plan.write_bank_reads * banks["src"], spread=banks["src"]),),
          axi=(Axi("activations", writes=1, burst=True),),
          recurrences=((Recurrence("(r, cb): the row and its bus word", ("add",)),) if plan.write_rows_aligned else
                       (Recurrence("(lr, lc)[j]: each lane's position (compare and both sums at once, a select)",
                                   ("add",)),)),
          ops=("bram", "add", "store")),
        S("WRITE_J", "write_rows", "WRITE_W", "-", "OUT_PER_BEAT"),
        # pack_rows: logits' rows (a head's scores, the gate logits) a word a cycle into bus words (put_word)
        S("PACK_W", "pack_rows", None, "PIPELINE II=1", "rows * cols", tap_only=True, ports=(Port("src", reads=1),),
          axi=(packed,), recurrences=(Recurrence("(r, c): the position; the bus word being filled", ("add",)),),
          ops=("bram", "store")),
        # run_image
        *((S("PIX", "run_images", "IMG", f"PIPELINE II={plan.pix_ii}", "IMAGE_WORDS", tap_only=True,
             axi=(Axi("image", reads=1, burst=True), Axi("activations", writes=plan.pix_beats, burst=True))),
           S("PIX_B", "run_images", "PIX", "-", "PIX_BEATS", tap_only=True),
           S("PIX_J", "run_images", "PIX_B", "-", "OUT_PER_BEAT", tap_only=True))
          if plan.image_lanes >= opb else
          # an image word a cycle into the bus word being filled, written every OUT_PER_BEAT / IMAGE_LANES words
          (S("PIX", "run_images", "IMG", f"PIPELINE II={plan.pix_ii}", "IMAGE_WORDS", tap_only=True,
             axi=(Axi("image", reads=1, burst=True),
                  Axi("activations", writes=plan.image_lanes / opb, why="a bus word written when full (conditional)",
                      tap_only=True))),
           S("PIX_J", "run_images", "PIX", "-", "IMAGE_LANES", tap_only=True))),
        # the image in its own order, an image word (IMAGE_LANES pixels of one patch row) per cycle, one burst;
        # counters give the word's patch position, its pixels go to IMAGE_LANES consecutive columns of big
        S("PATCH_PIX", "run_images", "IMG", "PIPELINE II=1", "IMAGE_WORDS",
          ports=(Port("big", writes=plan.image_lanes, spread=spread(plan.image_lanes, "big")),),
          axi=(Axi("image", reads=1, burst=True),),
          recurrences=(Recurrence("(c, gy, py, gx, pw): the word's patch position", ("add",)),),
          ops=("add", "store"), step="patch_gather"),
        S("PATCH_PIX_U", "run_images", "PATCH_PIX", "-", "IMAGE_LANES", step="patch_gather"),
        # rows x chunks of CAST_LANES columns in one pipeline
        S("EMBED_D", "run_images", "IMG", "PIPELINE II=1", "N_TOKENS * (DIM / CAST_LANES)",
          ports=(Port("cls", reads=C, spread=spread(C, "cls")), Port("pos", reads=C, spread=spread(C, "pos")),
                 Port("tbuf", reads=C, spread=spread(C, "tbuf")), Port("x", writes=C, spread=spread(C, "x")),
                 Port("x_sum", writes=1)),
          recurrences=(Recurrence("sum += lane sum (norm1's row sum)", ("add",)),
                       Recurrence("(r, d0): the position", ("add",))),
          ops=("bram", "add", "cast") + cast_tree + ("add", "store"), step="embed"),
        S("EMBED_U", "run_images", "EMBED_D", "-", "CAST_LANES", step="embed"),
        # a group's segments (each to a MoE block's routing, the last to the output), the group's images in each
        # the call's constants (its first group): the cls token, the position table and every LayerNorm's gamma and
        # beta in one burst, a bus word per cycle into the WORDS_PER_BEAT banks of the array it is in
        S("CONSTS", "run_images", None, "PIPELINE II=1", "CONST_BEATS",
          ports=(Port("cls", writes=wpb, spread=spread(wpb, "cls")), Port("pos", writes=wpb, spread=spread(wpb, "pos")),
                 Port("ln_par", writes=wpb, spread=spread(wpb, "ln_par"))),
          axi=weight_reads, ops=("add", "store"), step="embed"),
        S("CONSTS_J", "run_images", "CONSTS", "-", "WORDS_PER_BEAT", step="embed"),
        S("SEGMENTS", "run_images", None, "-", "MOE_COUNT + 1", step="norm1"),
        S("IMG", "run_images", "SEGMENTS", "-", "nb", step="norm1"),
        S("BLOCKS", "run_images", "IMG", "-", "blocks", step="norm1"),
        # a block's heads: every head's score pass, then per head its probabilities (softmax) and A*V pass
        S("SCORES_LOOP", "run_images", "BLOCKS", "-", "HEADS", step="attn"),
        S("AV_LOOP", "run_images", "BLOCKS", "-", "HEADS", step="attn"),
        S("TAP_GS", "run_images", "BLOCKS", "PIPELINE II=1", "N_TOKENS * EXPERTS", tap_only=True,
          ports=(Port("route.ex", reads=1), Port("route.inv", reads=1)),
          axi=(packed,), mults=(Mults(1, p.exp.bits, p.softmax_inv.bits),)),
        S("TAP_TK", "run_images", "BLOCKS", "PIPELINE II=1", "N_TOKENS * TOP_K", tap_only=True,
          ports=(Port("route.chosen", reads=1), Port("route.chosen_score", reads=1)), axi=(packed,)),
        S("TAP_EC", "run_images", "BLOCKS", "PIPELINE II=1", "EXPERTS", tap_only=True, axi=(packed,)),
        # after a segment's images: the experts of its MoE block for the whole group, an active expert's queued
        # rows in passes of up to N_TOKENS
        S("EXPERT_LOOP", "run_images", "SEGMENTS", "-", "EXPERTS", ops=("add",), step="expert_gather"),
        S("EXPERT_PASS", "run_images", "EXPERT_LOOP", "-", "passes", ops=("add",), step="expert_gather"),
        # a pass's queued rows: rows x chunks of EW_LANES columns of h_keep in one pipeline, the row read from the
        # queue each iteration, and its moe_acc row and score written beside (a row's first chunk)
        S("GATHER", "run_images", "EXPERT_PASS", "PIPELINE II=1", "rows * (DIM / EW_LANES)",
          ports=(Port("route.queue", reads=1), Port("route.queue_score", reads=1),
                 Port("h_keep", reads=L, spread=spread(L, "h_keep")), Port("tbuf", writes=L, spread=spread(L, "tbuf")),
                 Port("pass_row", writes=1), Port("pass_score", writes=1)),
          recurrences=(Recurrence("(r, d0): the row and chunk", ("add",)),),
          ops=("bram", "bram", "store"), step="expert_gather"),
        S("GATHER_U", "run_images", "GATHER", "-", "EW_LANES", step="expert_gather"),
        # the MoE output and the residual add: rows x chunks of CAST_LANES columns in one pipeline
        # a segment's start (after the first): the previous MoE block's output and the residual add on the image's
        # kept x, rows x chunks of CAST_LANES columns in one pipeline
        S("MOE_OUT_D", "run_images", "IMG", "PIPELINE II=1", "N_TOKENS * (DIM / CAST_LANES)",
          ports=(Port("moe_acc", reads=C, spread=spread(C, "moe_acc")),
                 Port("x_keep", reads=C, spread=spread(C, "x_keep")),
                 Port("tbuf", writes=C, spread=spread(C, "tbuf")), Port("x", writes=C, spread=spread(C, "x")),
                 Port("x_sum", writes=1)),
          recurrences=(Recurrence("sum += lane sum (the next LayerNorm's row sum)", ("add",)),
                       Recurrence("(r, d0): the position", ("add",))),
          ops=("bram", "cast", "add", "cast") + cast_tree + ("add", "store"), step="moe_out"),
        S("MOE_OUT_U", "run_images", "MOE_OUT_D", "-", "CAST_LANES", step="moe_out"),
        # the top function: a call's images in groups of MOE_BATCH (a tap call: one by one)
        S("GROUPS", TOP, None, "-", "groups", step="write_tokens"),
    )


def source_loops(source: str) -> list[tuple[str, str, str | None]]:
    """(label, function, parent label) of every ``LABEL: for`` loop of a generated kernel source.

    Functions start at column 0 (``static ... name(`` / ``void name(``); a loop's parent is the
    nearest enclosing labelled loop, by indentation (the templates indent every body).
    """
    func_re = re.compile(r"^(?:static\s+)?[A-Za-z_][\w:<>, ]*?\b([A-Za-z_]\w*)\s*\(")
    loop_re = re.compile(r"^(\s*)([A-Z][A-Z0-9_]*)\s*:\s*for\s*\(")
    out, stack, func = [], [], None
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "//")):
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0 and not stripped.startswith("}"):
            f = func_re.match(line)
            if f and not stripped.startswith(("typedef", "enum", "struct")):
                func, stack = f.group(1), []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        lp = loop_re.match(line)
        if lp:
            out.append((lp.group(2), func, stack[-1][1] if stack else None))
            stack.append((indent, lp.group(2)))
    return out


# --- constraints -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Memory:
    """The m_axi side: DRAM latency (cycles), bytes per cycle of one port and of the DDR, word bits per pointer."""

    latency: float
    port_bpc: float
    ddr_bpc: float
    word_bits: dict
    bundle_of: dict


def memory_of(cfg, plan: KernelPlan, port_limit: bool | None = None) -> Memory:
    """The memory facts of ``cfg``'s board at its clock; ``port_limit`` None: per port on Zynq boards."""
    h = cfg.hardware
    board = BOARDS[h.board]
    clock = h.clock_mhz * 1e6
    per_port = board.flow == "zynq" if port_limit is None else (port_limit or board.flow == "zynq")
    return Memory(latency=float(plan.m_axi_latency),
                  port_bpc=board.port_gbps * 1e9 / clock if per_port else math.inf,
                  ddr_bpc=board.mem_gbps * board.mem_efficiency * 1e9 / clock,
                  word_bits={"image": plan.image_word_bits, "activations": cfg.hardware.axi_width,
                             **dict.fromkeys(plan.lanes.names, plan.lanes.lane_bits)},
                  bundle_of=m_axi_bundles(cfg))


def analyse(spec: LoopSpec, specs: dict, mem: Memory, lat: dict, board_dsp: int) -> LoopII:
    """The achievable II of one loop and what binds it (see the module docstring for the rules)."""
    if spec.inlined_in:
        return LoopII(0.0, f"unrolled into {spec.inlined_in}", 0.0, unrolled_in=spec.inlined_in)
    up = spec.parent
    while up is not None:
        if specs[up].pipelined:
            return LoopII(0.0, f"unrolled into {up}", 0.0, unrolled_in=up)
        up = specs[up].parent
    path = float(sum(lat[o] for o in spec.ops))
    if not spec.pipelined:
        # sequential: body latency (+ a whole DRAM round trip per m_axi access) + the exit test
        maxi = sum((a.reads + a.writes) * (mem.latency + lat["loop"]) for a in spec.axi)
        if spec.pragma.startswith("UNROLL"):
            return LoopII(0.0, "unrolled (sequential region)", max(1.0, path),
                          detail={"body": max(1.0, path)})
        why = "sequential (no PIPELINE)" + (": DRAM round trip per access" if maxi > path else "")
        detail = {why: f"body {max(1.0, path):g} + exit {lat['loop']:g}"
                  + (f" + m_axi {maxi:g} cycles" if maxi else "") + " per iteration"}
        return LoopII(max(1.0, path) + maxi + lat["loop"], why, 0.0, detail=detail, maxi=maxi)
    cons = {c: float(spec.target_ii) if c == "bank ports" else 0.0 for c in CONSTRAINTS}
    detail: dict = {}
    for p in spec.ports:
        need = math.ceil(p.per_bank / BANK_PORTS)
        if need > cons["bank ports"]:
            cons["bank ports"] = float(need)
            detail["bank ports"] = f"{p.array}: {p.reads + p.writes} accesses on {p.spread} bank(s)"
    maxi_depth = 0.0
    per_bundle: dict[str, list] = {}
    for a in spec.axi:
        per_bundle.setdefault(mem.bundle_of.get(a.arg, a.arg), []).append(a)
    # every bundle has a port of its own, all share the DDR: what the loop moves on all of them per iteration
    ddr_bytes = sum((a.reads + a.writes) * mem.word_bits[a.arg] / 8 for a in spec.axi if not a.tap_only)
    for bundle, accs in per_bundle.items():
        reads, writes = sum(a.reads for a in accs), sum(a.writes for a in accs)
        moved = [a for a in accs if not a.tap_only]   # what an inference call issues
        beats = sum(a.reads + a.writes for a in moved)
        nbytes = sum((a.reads + a.writes) * mem.word_bits[a.arg] / 8 for a in moved)
        single = sum(a.reads + a.writes for a in moved if not a.burst)
        terms = {"one read + one write per cycle": max(reads, writes),
                 "port bandwidth": nbytes / mem.port_bpc,
                 "DDR bandwidth": ddr_bytes / mem.ddr_bpc,
                 "latency / outstanding": single * mem.latency / MAXI_OUTSTANDING
                 + (beats - single) * mem.latency / (MAXI_OUTSTANDING * MAXI_BURST_BEATS)}
        what, ii = max(terms.items(), key=lambda kv: kv[1])
        if ii > cons["m_axi"]:
            cons["m_axi"] = ii
            whys = sorted({a.why for a in accs if not a.burst and a.why})
            detail["m_axi"] = f"{bundle}: {what}" + (f" ({'; '.join(whys)})" if whys and single else "")
        maxi_depth = max(maxi_depth, mem.latency)
    for r in spec.recurrences:
        L = float(sum(lat[o] for o in r.ops))
        need = float(math.ceil(L / max(1, r.distance)))
        if need > cons["recurrence"]:
            cons["recurrence"] = need
            detail["recurrence"] = f"{r.what}: {'+'.join(r.ops)} = {L:g}" + (
                f" over {r.distance} iterations" if r.distance > 1 else "")
    dsp = sum(mu.count * dsp_per_mult(mu.a_bits, mu.b_bits) for mu in spec.mults)
    cons["DSPs"] = float(math.ceil(dsp / board_dsp)) if dsp else 0.0
    if dsp:
        detail["DSPs"] = f"{dsp} DSP per iteration of {board_dsp}"
    binding = max(CONSTRAINTS, key=lambda c: cons[c])
    ii = max(cons.values())
    if ii <= spec.target_ii:
        binding = "pragma II met"
    return LoopII(ii, binding, path + maxi_depth + lat["loop"], cons, detail)


# --- per image: entries and iterations of every loop --------------------------------------------------

@dataclass
class LoopRecord:
    """One loop of the kernel with its constraints and its work per image."""

    spec: LoopSpec
    ii: LoopII
    entries: float = 0.0
    iterations: float = 0.0
    axi_iterations: float = 0.0                   # iterations of a sequential loop that make its m_axi accesses
    hidden: float = 0.0                           # cycles run beside the other process of a DATAFLOW region
    #: (step, block) -> [entries, iterations, axi_iterations, hidden cycles]
    by_step: dict = field(default_factory=dict)

    def raw_cycles(self, entries: float, iterations: float, axi_iterations: float, ii: float | None = None) -> float:
        """Cycles of the loop's iterations and entries, overlap with a concurrent process not subtracted."""
        if self.ii.unrolled_in is not None:
            return 0.0
        if self.spec.pragma.startswith("UNROLL"):
            return entries * self.ii.depth
        if not self.spec.pipelined:
            return iterations * (self.ii.ii - self.ii.maxi) + axi_iterations * self.ii.maxi
        return iterations * (self.ii.ii if ii is None else ii) + entries * self.ii.depth

    def cycles_of(self, entries: float, iterations: float, axi_iterations: float, hidden: float = 0.0,
                  ii: float | None = None) -> float:
        """Cycles the loop adds to the kernel's run: its raw cycles less those ``hidden`` behind the other
        process of its DATAFLOW region."""
        return self.raw_cycles(entries, iterations, axi_iterations, ii) - hidden

    @property
    def cycles(self) -> float:
        return self.cycles_of(self.entries, self.iterations, self.axi_iterations, self.hidden)

    @property
    def cycles_target(self) -> float:
        """Cycles if the PIPELINE pragma's II were met (the loop as intended; the same overlap)."""
        return self.cycles_of(self.entries, self.iterations, self.axi_iterations, self.hidden,
                              float(self.spec.target_ii))

    @property
    def trip(self) -> float:
        return self.iterations / self.entries if self.entries else 0.0


@dataclass
class FunctionRecord:
    spec: FunctionSpec
    latency: float
    calls: float = 0.0
    by_step: dict = field(default_factory=dict)

    @property
    def cycles(self) -> float:
        return self.calls * self.latency


@dataclass
class LoopEstimate:
    """Cycles per image of every loop and function of the kernel as written (one image; overlap only within
    the compute unit's DATAFLOW region)."""

    cfg: object
    loops: dict          # label -> LoopRecord, in source order
    functions: dict      # name -> FunctionRecord
    batch: int
    clock_mhz: float

    @property
    def call_overhead(self) -> float:
        return CALL_OVERHEAD / self.batch

    @property
    def cycles_per_image(self) -> float:
        return (sum(r.cycles for r in self.loops.values()) + sum(f.cycles for f in self.functions.values())
                + self.call_overhead)

    @property
    def ms_per_image(self) -> float:
        return self.cycles_per_image / (self.clock_mhz * 1e3)

    def by_step(self) -> dict:
        """(step, block) -> cycles per image (the call overhead counts to the output step)."""
        out: dict = {}
        for r in self.loops.values():
            for key, v in r.by_step.items():
                out[key] = out.get(key, 0.0) + r.cycles_of(*v)
        for f in self.functions.values():
            for key, c in f.by_step.items():
                out[key] = out.get(key, 0.0) + c * f.latency
        key = ("write_tokens", self.cfg.model.depth)
        out[key] = out.get(key, 0.0) + self.call_overhead
        return out

    def maxi_cycles(self) -> dict:
        """(step, block) -> cycles per image of the loops that access an m_axi pointer."""
        out: dict = {}
        for r in self.loops.values():
            if r.spec.axi:
                for key, v in r.by_step.items():
                    out[key] = out.get(key, 0.0) + r.cycles_of(*v)
        return out

    def rows(self) -> list[dict]:
        """One row per loop and per function body, sorted by cycles per image (largest first)."""
        total = self.cycles_per_image
        out = []
        for r in self.loops.values():
            s = r.spec
            out.append({"label": s.label, "function": s.function, "parent": s.parent, "pragma": s.pragma,
                        "trip": s.trip, "trip_mean": r.trip, "entries": r.entries, "iterations": r.iterations,
                        "ii": r.ii.ii, "target_ii": s.target_ii, "binding": r.ii.binding, "depth": r.ii.depth,
                        "constraints": dict(r.ii.constraints), "detail": dict(r.ii.detail),
                        "cycles": r.cycles, "cycles_target": r.cycles_target,
                        "share": r.cycles / total if total else 0.0})
        for f in self.functions.values():
            out.append({"label": f"{f.spec.name}()", "function": f.spec.name, "parent": None, "pragma": "-",
                        "trip": "calls", "trip_mean": 1.0, "entries": f.calls, "iterations": f.calls,
                        "ii": f.latency, "target_ii": 0, "binding": "call + straight-line code", "depth": 0.0,
                        "constraints": {}, "detail": {}, "cycles": f.cycles, "cycles_target": f.cycles,
                        "share": f.cycles / total if total else 0.0})
        out.append({"label": "(call)", "function": TOP, "parent": None, "pragma": "-", "trip": "calls / batch",
                    "trip_mean": 1.0, "entries": 1.0 / self.batch, "iterations": 1.0 / self.batch,
                    "ii": CALL_OVERHEAD, "target_ii": 0, "binding": "ap_start to ap_done overhead", "depth": 0.0,
                    "constraints": {}, "detail": {}, "cycles": self.call_overhead,
                    "cycles_target": self.call_overhead, "share": self.call_overhead / total if total else 0.0})
        return sorted(out, key=lambda r: -r["cycles"])

    def table(self, top: int | None = None) -> str:
        """Per-loop rows: label, function, iterations/image, II (achievable / pragma), binding, cycles, share."""
        us = 1.0 / self.clock_mhz
        rows = self.rows()
        shown = rows if top is None else rows[:top]
        lines = [f"loops of the kernel as written: {self.cycles_per_image:,.0f} cycles/image = "
                 f"{self.ms_per_image:.2f} ms/image",
                 f"  {'loop':<14}{'function':<14}{'iters/image':>13}{'II':>8}{'pragma':>8}  {'binding':<34}"
                 f"{'cycles/image':>14}{'ms':>9}{'share':>8}  why"]
        for r in shown:
            ii = "-" if r["ii"] == 0 else f"{r['ii']:.4g}"
            tgt = str(r["target_ii"]) if r["target_ii"] else "-"
            why = r["detail"].get(r["binding"], "")
            lines.append(f"  {r['label']:<14}{r['function']:<14}{r['iterations']:>13,.0f}{ii:>8}{tgt:>8}  "
                         f"{r['binding'][:34]:<34}{r['cycles']:>14,.0f}{r['cycles'] * us / 1e3:>9.2f}"
                         f"{100 * r['share']:>7.1f}%  {why}")
        if top is not None and len(rows) > top:
            rest = sum(r["cycles"] for r in rows[top:])
            lines.append(f"  ({len(rows) - top} more rows: {rest:,.0f} cycles, "
                         f"{100 * rest / self.cycles_per_image:.1f}%)")
        return "\n".join(lines)


def dataflow_overlap(load: float, comp: float, tiles: int) -> tuple[float, float, float]:
    """One compute_unit call whose loader takes ``load`` cycles and whose compute process ``comp``, over
    ``tiles`` tiles, the FIFO holding one tile: (cycles of the call, fraction of the loader's cycles hidden,
    fraction of the compute's hidden).  The call takes max(load, comp) + fill, the fill being the shorter
    process's share of one tile; the shorter process is the hidden one, all but that fill."""
    short, long_ = min(load, comp), max(load, comp)
    fill = short / max(1, tiles)
    hidden = (short - fill) / short if short > 0 else 0.0
    return long_ + fill, (hidden if load <= comp else 0.0), (hidden if load > comp else 0.0)


def first_tile_fill(load_w, first_beats: float, plan: KernelPlan) -> float:
    """Cycles a compute-bound compute_unit call (rows of whole bus words: one burst) waits for its first tile:
    the burst's first ``first_beats`` bus words (the layer's biases and tile 0) arrive after the load loop's
    depth (the DRAM latency) at its II, while the compute's pass 0 would unpack them in PASS_LEAD + a step
    each (UNPACK_STEPS a weight bus word); the later of the two ends the pass, so the call is its compute plus
    the difference (PASS_TAIL follows either way)."""
    arrival = load_w.raw_cycles(1.0, first_beats, first_beats)
    return max(0.0, arrival - (plan.pass_lead + first_beats * plan.unpack_steps))


class _Walk:
    """Entries and iterations of every loop per image, by walking the kernel's call structure.

    ``args``: the call's arguments the trip formulas read (``rows``, ``k_dim``, ...), besides the
    kernel constants; what one entry of a loop nest costs is computed once per distinct ``args``.
    """

    _GLOBALS = {"ceil": math.ceil, "min": min, "max": max}

    def __init__(self, cfg, plan, specs, records, functions):
        self.cfg, self.plan, self.specs, self.records, self.functions = cfg, plan, specs, records, functions
        self.const = kernel_constants(cfg, plan)
        self.linears = {lin.name: lin for lin in plan.linears}
        self.children: dict = {}
        self.top_level: dict = {}
        for s in specs.values():
            if s.parent is None:
                self.top_level.setdefault(s.function, []).append(s)
            else:
                self.children.setdefault(s.parent, []).append(s)
        self.code = {s.label: compile(s.trip, s.label, "eval") for s in specs.values()}
        self.when = {s.label: [compile(a.when or "True", s.label, "eval") for a in s.axi] for s in specs.values()}
        self.cache: dict = {}

    def _nest(self, label: str, env: dict, only, out: list, entries: float = 1.0) -> None:
        s = self.specs[label]
        if s.tap_only:
            return
        it = entries * float(eval(self.code[label], self._GLOBALS, env))  # noqa: S307
        ax = it if any(eval(c, self._GLOBALS, env) for c in self.when[label]) else 0.0  # noqa: S307
        out.append((label, entries, it, ax))
        for child in self.children.get(label, ()):
            if only is None or child.label in only:
                self._nest(child.label, env, None, out, it)

    def _nest_of(self, label: str, args: dict, only) -> list:
        key = (label, tuple(sorted(args.items())), only)
        nest = self.cache.get(key)
        if nest is None:
            nest = []
            self._nest(label, {**self.const, **args}, only, nest)
            self.cache[key] = nest
        return nest

    def cost(self, label: str, args: dict, only=None) -> float:
        """Raw cycles of one entry of loop ``label`` and the loops nested in it."""
        return sum(self.records[lab].raw_cycles(e, it, ax) for lab, e, it, ax in self._nest_of(label, args, only))

    def loop(self, label: str, entries: float, args: dict, step, only=None, hidden: float = 0.0) -> None:
        """``entries`` entries of loop ``label`` and of the loops nested in it (within its function);
        ``hidden``: the fraction of their cycles that a concurrent DATAFLOW process covers."""
        if entries == 0:
            return
        for lab, e, it, ax in self._nest_of(label, args, only):
            acc = self.records[lab].by_step.setdefault((self.specs[lab].step or step[0], step[1]),
                                                       [0.0, 0.0, 0.0, 0.0])
            acc[0] += entries * e
            acc[1] += entries * it
            acc[2] += entries * ax
            acc[3] += entries * hidden * self.records[lab].raw_cycles(e, it, ax)

    def call(self, name: str, times: float, args: dict, step, skip=(), only=None, hidden: float = 0.0) -> None:
        """``times`` calls of function ``name``: its body and the loops at its top level (``only``: of
        their children, these)."""
        if times == 0:
            return
        f = self.functions[name]
        f.calls += times
        f.by_step[step] = f.by_step.get(step, 0.0) + times
        for s in self.top_level.get(name, ()):
            if s.label not in skip:
                self.loop(s.label, times, args, step, only, hidden)

    # --- the kernel's functions ------------------------------------------------------------------
    def compute_unit(self, rows: float, layer: str, step, times: float = 1.0, nxt: str | None = None,
                     pre: float = 0.0) -> None:
        """One DATAFLOW call: the loader and the compute process run concurrently, so the call takes
        max(loader, compute) + fill, the fill being the shorter process's share of one tile (the loader's
        first tile before the compute can start, or the compute's last tile after the loader is done); a
        compute-bound call of one burst waits only for what of its first tile's arrival its pass 0 does not
        cover (:func:`first_tile_fill`).  The shorter process's loops keep only that fill; the rest of their
        cycles is hidden.  With rows of whole bus words the call prefetches the biases and tile 0 of ``nxt``
        (the next DRAM layer run_images names), and starts with its MACs (no pass 0, no fill: its unpack
        waits for the loader's first bus words without stalling the MACs) when the call before prefetched its
        own: ``pre``, the fraction of the ``times`` calls that were (:meth:`image`, :meth:`experts`)."""
        lin = self.linears[layer]
        plan = self.plan
        if not plan.weight_rows_aligned:   # no prefetch from DRAM
            pre, nxt = 0.0, None
        if pre not in (0.0, 1.0):   # some of the calls prefetched, the rest not: each share on its own
            self.compute_unit(rows, layer, step, times * pre, nxt, 1.0)
            self.compute_unit(rows, layer, step, times * (1.0 - pre), nxt, 0.0)
            return
        spans = plan.tile_spans(lin)
        tiles = len(spans)
        if plan.weight_rows_aligned:   # one burst: the layer's biases, then its weights
            bias, w = plan.layer_spans(lin)
            beats = {"bias_beats": bias[1] if bias else 0, "weight_beats": w[1]}
        else:
            beats = {"bias_beats": sum(b[1] for b, _ in spans if b), "weight_beats": sum(w[1] for _, w in spans)}
        nlin = self.linears[nxt] if nxt else None
        beats["pre_beats"] = plan.prefix_beats(lin) if pre else 0
        beats["next_beats"] = plan.prefix_beats(nlin) if nlin else 0
        # the next call's first bus words right after this call's burst in the layout: the same burst goes on
        joined = bool(nlin) and sum(plan.layer_burst(lin)) == plan.layer_burst(nlin)[0]
        beats["join_beats"] = beats["next_beats"] if joined else 0
        no_next = () if nlin and not joined else ("LOAD_NEXT",)   # LOAD_NEXT is not entered
        beats["pop_bias_beats"] = (0 if pre else beats["bias_beats"]) + (plan.prefix_parts(nlin)[0] if nlin else 0)
        beats["pop_weight_beats"] = (beats["bias_beats"] + beats["weight_beats"] - beats["pre_beats"]
                                     + beats["next_beats"] - beats["pop_bias_beats"])
        passes = plan.mac_passes(lin, rows, bool(pre), plan.prefix_steps(nlin) if nlin else 0)
        args = {"rows": rows, "k_dim": lin.k, "n_out": lin.n_out, "tiles": tiles, **beats,
                "mac_iters": sum(passes), "key_steps": 0, "value_steps": 0, "sm_steps": 0}
        if self.plan.weight_rows_aligned:   # one burst: the biases, then the matrix (then the next call's first)
            skip, load_only = no_next, None
            load = self.cost("LOAD_W", args) + (0.0 if no_next else self.cost("LOAD_NEXT", args))
        else:
            skip, load_only = (), (None if lin.has_bias else ("LOAD_W",))
            load = self.cost("LOAD_TILES", args, load_only)
        comp = self.cost("MAC", args)
        _, hide_load, hide_comp = dataflow_overlap(load, comp, tiles)
        if self.plan.weight_rows_aligned and 0 < load <= comp and pre:
            # tile 0 on chip: pass 1's unpack takes tile 1's bus words as they arrive, beside its MACs, and the
            # pass lasts until the last has (its arrival, then PASS_TAIL), at least as long as its MACs
            fill = max(0.0, self.records["LOAD_W"].raw_cycles(1.0, spans[1][1][1], spans[1][1][1])
                       + plan.pass_tail - passes[0]) if tiles > 1 else 0.0
            hide_load, hide_comp = 1.0 - min(fill, load) / load, 0.0
        elif self.plan.weight_rows_aligned and 0 < load <= comp:
            # the compute's pass 0 unpacks the layer's biases and its first tile a bus word a step as the loader's
            # one burst delivers them: the call waits only for the part of their arrival its own pass 0 does
            # not cover, not for a whole tile's load on top of it
            fill = first_tile_fill(self.records["LOAD_W"], beats["bias_beats"] + spans[0][1][1], self.plan)
            hide_load, hide_comp = 1.0 - min(fill, load) / load, 0.0
        self.call("compute_unit", times, args, step)
        self.call("load_tiles", times, args, step, skip=skip, only=load_only, hidden=hide_load)
        self.call("compute_tiles", times, args, step, hidden=hide_comp)

    def attention_unit(self, call, step) -> None:
        """One compute_unit call of a block's attention (:meth:`KernelPlan.attention_calls`: a score pass, an
        A*V or, with one head, no rows), its online-softmax steps beside: its weights are on chip, so the loader
        streams nothing (its function's overhead only) and the call is the compute process, its MAC loop's
        iterations as the plan counts them (its passes, longer while the side job has a head to finish)."""
        h, plan = self.cfg.hardware, self.plan
        n = self.cfg.model.num_tokens
        if call.kind == "none":
            k, n_out, tile_steps = n, 0, []
        else:
            k, n_out, tile_steps = plan.attention_shape(call.kind)
        # its tiles' unpack steps (tile 0 unpacked by the call before, if pre), and the next call's first tile's
        steps = {"key_steps": 0, "value_steps": 0}
        own = tile_steps[1:] if call.pre else tile_steps
        if call.kind != "none":
            steps["key_steps" if call.kind == "scores" else "value_steps"] += sum(own)
        next_beats = pop_bias = 0
        if call.prefetch == "proj":   # the block's proj, from DRAM: its loader streams them, a hidden burst
            proj = self.linears[f"blocks.{step[1]}.proj"]
            next_beats = plan.prefix_beats(proj)
            pop_bias = plan.prefix_parts(proj)[0]
        elif call.prefetch:
            steps["key_steps" if call.prefetch == "scores" else "value_steps"] += plan.prefetch_steps(call.prefetch)
        args = {"rows": n if call.kind != "none" else 0, "k_dim": k, "n_out": n_out,
                "tiles": -(-n_out // h.cu_out), "bias_beats": 0, "weight_beats": 0, "pre_beats": 0,
                "next_beats": next_beats, "join_beats": 0, "pop_bias_beats": pop_bias,
                "pop_weight_beats": next_beats - pop_bias, "sm_steps": call.side_steps, "mac_iters": call.iterations,
                **steps}
        self.call("compute_unit", 1.0, args, step)
        self.call("load_tiles", 1.0, args, step, hidden=1.0,
                  skip=("LOAD_B", "LOAD_W", "LOAD_TILES") + (() if next_beats else ("LOAD_NEXT",)))
        self.call("compute_tiles", 1.0, args, step)

    def layernorm(self, step) -> None:
        """One layernorm call: its rows (its gamma and beta on chip: CONSTS)."""
        self.call("layernorm", 1.0, {}, step)

    def segment_start(self, s: int) -> int:
        """The first block of segment ``s`` (segments end at the MoE blocks)."""
        return 0 if s == 0 else self.plan.moe_blocks[s - 1] + 1

    def first_call(self, s: int) -> str | None:
        """The DRAM layer of an image's first compute_unit call in segment ``s`` (run_images' first_call)."""
        if s == 0:
            return "patch_embed"
        b0 = self.segment_start(s)
        return f"blocks.{b0}.qkv" if b0 < self.cfg.model.depth else None

    def image(self, counts_per_block: list, expected: bool, index: int = 0, images: int = 1) -> None:
        """One image's steps of its group's segments (everything but the experts, which run per group): image
        ``index`` of ``images``.  Each DRAM call prefetches the next one's biases and tile 0 (run_images): all
        of them are prefetched but the group's first patch embedding (and a MoE block's first expert, when
        the gate's guess, expert 0, is idle: :meth:`experts`)."""
        m, moe = self.cfg.model, self.plan.moe_blocks
        c: dict = {}
        segments = len(moe) + 1

        def image_next(s: int) -> str | None:   # what the image's last call of segment s prefetches
            if index + 1 < images:
                return self.first_call(s)
            return f"blocks.{moe[s]}.experts.0.fc1" if s < len(moe) else None

        self.loop("PATCH_PIX", 1.0, c, ("patch_gather", -1))
        self.compute_unit(m.num_patches, "patch_embed", ("patch_embed", -1), nxt="blocks.0.qkv",
                          pre=1.0 if index > 0 else 0.0)
        self.loop("EMBED_D", 1.0, c, ("embed", -1))
        for b in range(m.depth):
            # a block an iteration; the image enters the loop once per segment
            self.loop("BLOCKS", segments / m.depth, {"blocks": m.depth / segments}, ("norm1", b), only=())
            s = sum(1 for mb in moe if mb < b)   # the block's segment
            seg_last = b == (moe[s] if s < len(moe) else m.depth - 1)
            self.layernorm(("norm1", b))
            self.compute_unit(m.num_tokens, f"blocks.{b}.qkv", ("qkv", b), pre=1.0)
            self.loop("SCORES_LOOP", 1.0, c, ("attn", b), only=())
            self.loop("AV_LOOP", 1.0, c, ("attn", b), only=())
            # every head's score pass, then per head its probabilities and A*V; the online softmax of the heads
            # beside all of them (the plan's attention calls)
            for call in self.plan.attention_calls():
                self.attention_unit(call, ("attn", b))
            self.call("softmax", m.num_heads, c, ("attn", b))
            self.compute_unit(m.num_tokens, f"blocks.{b}.proj", ("proj", b), pre=1.0,   # and the residual add
                              nxt=f"blocks.{b}.gate.0" if m.is_moe(b) else f"blocks.{b}.fc1")
            self.layernorm(("norm2", b))
            if m.is_moe(b):
                self.compute_unit(m.num_tokens, f"blocks.{b}.gate.0", ("gate", b), pre=1.0, nxt=image_next(s))
                self.loop("Q_CLEAR", 1.0, c, ("gate_topk", b))
                self.loop("GATE", 1.0, c, ("gate_topk", b))
                self.loop("MOE_OUT_D", 1.0, c, ("moe_out", b))   # at the start of the next segment
            else:
                self.compute_unit(m.num_tokens, f"blocks.{b}.fc1", ("fc1", b), pre=1.0, nxt=f"blocks.{b}.fc2")
                self.compute_unit(m.num_tokens, f"blocks.{b}.fc2", ("fc2", b), pre=1.0,   # and the residual add
                                  nxt=image_next(s) if seg_last else f"blocks.{b + 1}.qkv")
        self.call("write_rows", 1.0, {"rows": m.num_tokens, "cols": m.embed_dim, "beats": self.plan.token_region.beats},
                  ("write_tokens", m.depth))

    def experts(self, block: int, counts, expected: bool) -> None:
        """One MoE block's experts for a group: ``counts[e]``, the rows the group queued to expert e (expected
        counts: the mean of a Poisson count, so an expert runs with probability 1 - exp(-mean), with mean /
        that many rows when it does).  Each active expert runs ceil(rows / N_TOKENS) passes: full ones, then the
        rest; every pass streams the expert's weights.  Every call is prefetched by the one before (fc2 names
        the expert's next pass, or the next active expert's fc1, or the next segment's first call) but the
        first active expert's fc1 when it is not expert 0 (the gate's guess)."""
        n_tok = self.cfg.model.num_tokens
        s = self.plan.moe_blocks.index(block)
        self.loop("EXPERT_LOOP", 1.0, {}, ("expert_gather", block), only=())
        self.loop("NEXT_ACTIVE", 1.0, {}, ("expert_gather", block))
        active = [e for e, cnt in enumerate(counts) if cnt > 0]
        idle_before = 1.0   # the probability that no expert before e ran
        for e in active:
            cnt = counts[e]
            pa, n = (1.0 - math.exp(-cnt), cnt / (1.0 - math.exp(-cnt))) if expected else (1.0, float(cnt))
            full, rest = divmod(n, n_tok)
            passes = [(rows, times) for rows, times in [(float(n_tok), full)] + ([(rest, 1.0)] if rest > 1e-9 else [])
                      if times > 0]
            later = [f for f in active if f > e]
            after = f"blocks.{block}.experts.{later[0]}.fc1" if later else self.first_call(s + 1)
            first_pre = 1.0 if e == 0 else 1.0 - idle_before
            idle_before *= 1.0 - pa
            self.loop("EXPERT_PASS", pa, {"passes": full + (rest > 1e-9)}, ("expert_gather", block), only=())
            for j, (rows, times) in enumerate(passes):
                more = j + 1 < len(passes)
                # the first of the expert's passes (the rest follow its own fc2)
                pre = (first_pre + (times - 1.0)) / times if j == 0 else 1.0
                self.loop("GATHER", pa * times, {"rows": rows}, ("expert_gather", block))
                self.compute_unit(rows, f"blocks.{block}.experts.{e}.fc1", ("expert_fc1", block), pa * times,
                                  nxt=f"blocks.{block}.experts.{e}.fc2", pre=pre)
                # the last of these passes names what follows the expert; the others its own next pass
                nxt_last = f"blocks.{block}.experts.{e}.fc1" if more else after
                if times > 1.0:
                    self.compute_unit(rows, f"blocks.{block}.experts.{e}.fc2", ("expert_fc2", block),
                                      pa * (times - 1.0), nxt=f"blocks.{block}.experts.{e}.fc1", pre=1.0)
                self.compute_unit(rows, f"blocks.{block}.experts.{e}.fc2", ("expert_fc2", block),
                                  pa * min(times, 1.0), nxt=nxt_last, pre=1.0)

    def group(self, counts_of_images: list, expected: bool, first: bool = True) -> None:
        """One group of images (``counts_of_images[i][mi]``: image i's tokens per expert in MoE block mi): the
        call's constants (its first group), the images' steps, then each MoE block's experts over the whole
        group's queues."""
        m = self.cfg.model
        self.call("run_images", 1.0, {}, ("write_tokens", m.depth),
                  skip={"SEGMENTS", "EXPERT_LOOP", "IMG", "PATCH_PIX", "PIX", "EMBED_D", "MOE_OUT_D", "CONSTS"})
        if first:
            self.loop("CONSTS", 1.0, {}, ("embed", -1))
        self.loop("SEGMENTS", 1.0, {}, ("norm1", 0), only=())
        self.loop("IMG", len(self.plan.moe_blocks) + 1.0, {"nb": len(counts_of_images)}, ("norm1", 0), only=())
        for i, counts in enumerate(counts_of_images):
            self.image(counts, expected, i, len(counts_of_images))
        for mi, b in enumerate(self.plan.moe_blocks):
            self.experts(b, np.sum([counts[mi] for counts in counts_of_images], axis=0), expected)


def loop_estimate(cfg, routing, batch: int = 1, latency: dict | None = None, unit_ii: dict | None = None,
                  port_limit: bool | None = None) -> LoopEstimate:
    """Cycles per image of every loop of the kernel as written, for one call of ``batch`` images.

    routing: a :class:`~edgemoe.perf.routing.Routing` (tokens per expert per MoE block and image);
    latency: operator latencies (default :data:`OP_LATENCY`); unit_ii: measured IIs of the table
    units (a unit with II > 1 in a pipelined loop bounds it); port_limit: None = per-port on Zynq.
    """
    from .routing import as_routing

    plan = KernelPlan.from_config(cfg)
    lat = dict(OP_LATENCY if latency is None else latency)
    mem = memory_of(cfg, plan, port_limit)
    board = BOARDS[cfg.hardware.board]
    specs = {s.label: s for s in kernel_loops(cfg, plan)}
    records = {}
    for label, s in specs.items():
        ii = analyse(s, specs, mem, lat, board.dsp)
        for unit, u_ii in (unit_ii or {}).items():   # a measured table unit that is not fully pipelined
            if ii.unrolled_in is None and s.pipelined and (unit in s.ops or unit in s.units):
                ii.constraints["unit II"] = max(ii.constraints.get("unit II", 0.0), float(u_ii))
                if u_ii > ii.ii:
                    ii.detail["unit II"] = f"{unit} accepts one input every {u_ii:g} cycles (measured)"
                    ii.ii, ii.binding = float(u_ii), "unit II"
        records[label] = LoopRecord(s, ii)
    functions = {f.name: FunctionRecord(f, float(sum(lat[o] for o in f.ops))) for f in kernel_functions()}
    walk = _Walk(cfg, plan, specs, records, functions)
    rt = as_routing(cfg, routing)
    size = plan.moe_batch
    for g0 in range(0, batch, size):
        walk.group([[c[i % c.shape[0]] for c in rt.counts] for i in range(g0, min(batch, g0 + size))], rt.expected,
                   g0 == 0)
    walk.loop("GROUPS", 1.0, {"groups": -(-batch // size)}, ("write_tokens", cfg.model.depth), only=())
    for r in records.values():
        r.by_step = {k: [x / batch for x in v] for k, v in r.by_step.items()}
        r.entries = sum(v[0] for v in r.by_step.values())
        r.iterations = sum(v[1] for v in r.by_step.values())
        r.axi_iterations = sum(v[2] for v in r.by_step.values())
        r.hidden = sum(v[3] for v in r.by_step.values())
    for f in functions.values():
        f.calls /= batch
        f.by_step = {k: v / batch for k, v in f.by_step.items()}
    return LoopEstimate(cfg, records, functions, batch, cfg.hardware.clock_mhz)
