"""Cycle model of the generated kernel (``hls/templates/edgemoe_vit.cpp.j2``), per layer and step.

**The headline is the kernel as written** (:mod:`edgemoe.perf.loops`): every
labelled loop of the template with the II its constraints allow (bank ports,
m_axi accesses, recurrences, DSPs), its pipeline depth, and its entries per
image from the kernel's call structure; nothing assumed met, nothing
overlapped that the code does not overlap.  ``ms_per_image``, the per-step
``cycles_total`` and the roofline's ``modelled_ms`` are that figure;
:meth:`PerfEstimate.loops_table` (:func:`format_loops`) lists the loops.

**The intended schedule** is the second column (``Step.cycles_intended``,
``PerfEstimate.intended_ms_per_image``): the same steps if every
``PIPELINE II=1`` were met, loops stopped at ``k_dim`` and weight tiles
loaded at the AXI width behind the compute (ping-pong), built loop by loop
from the same kernel plan (:class:`edgemoe.hls.plan.KernelPlan`:
``row_words``, ``attn_groups``, the word widths): trip count x II + depth.

Two modes (``mode``):

``"onchip"`` -- **the generated kernel**.  Activations live in the static
    ``rows_t`` buffers; only weights (and the image / output tokens) cross
    DRAM.  As written: the loop model.  Intended: ``compute_unit`` runs every
    output tile (``CU_OUT`` rows of W) in one MAC pipeline (``rows x
    ceil(k/CU_IN)`` iterations per tile, a row's epilogue beside the next
    row's MACs, the depth once per call) with the next tile's load beside it;
    attention head by head: q . k on the compute unit (the key rows its
    on-chip weights), the online softmax (``N x ATTN_GROUPS`` steps, a query's
    state revisited every ``ATTN_GROUPS``), 1/sum and the probabilities
    (``PROB_LANES`` a cycle), then A*V on the compute unit (the value columns
    its on-chip weights); LayerNorm / embed ``CAST_LANES`` columns per
    cycle, the patch gather an image word (``IMAGE_LANES`` pixels) per cycle,
    the output one word per cycle, the residual adds in the epilogue of proj /
    fc2 and in the MoE output; MoE gate, then softmax, top-k and queues of
    every token in one pipeline (one expert a cycle, the accumulator's clear
    alongside), and per *active* expert (token counts from the routing)
    gather + fc1 + fc2.

``"edgemoe-dram"`` -- **Edge-MoE's architecture** with the same unit
    parameters, for comparison (no generated kernel: its own schedule is the
    headline): every intermediate goes through DRAM between steps (linear
    layers stream rows in and out, II 1 over ``rows x tiles x ceil(k/CU_IN)``,
    whole-layer weight loads; experts ping-pong their loads behind the
    previous compute), attention streams keys/values from DRAM one AXI beat
    (``axi_width / act_bits`` words) per cycle with ``P`` query slots, scores
    and softmax state go to DRAM and come back for A*V.

Memory time of the intended schedule and of Edge-MoE's is ``bytes /
min(axi_width/8 per cycle, port, board bandwidth)`` plus the board's DRAM
latency per burst.  Each m_axi bundle reaches memory through a port of its
own: on Zynq boards (a ZCU102 HP port is 128 bits, ``Board.port_gbps``)
that port always caps it; ``port_limit`` caps the other boards' too.  The
weights stream over ``hardware.weight_lanes`` bundles, a port each.  The
board bandwidth is peak x a sustained fraction (``Board.mem_efficiency``).

**Batching.**  The kernel runs the ``num_images`` of a call in groups of
``hardware.moe_batch``: every step but the experts image by image (the dense
layers' weights stream once per image: they are compute-bound), then each MoE
block's active experts once per group for the queued rows of all its images.
Both columns follow that schedule.  In Edge-MoE's mode ``share_weights=True``
(the default for ``batch > 1``) loads each weight once per call for all the
batch's rows.

**Calibration.**  Unit latencies and IIs (exp, reciprocal, rsqrt, GELU)
measured by the RTL testbenches replace the default operator latencies
(:data:`edgemoe.perf.primitives.OP_LATENCY`) when the caller passes what the
sim tools wrote (``measured``, a :class:`~edgemoe.perf.measured.SimResults`;
see :func:`edgemoe.perf.measured.calibration`); the estimate says which
figures are calibrated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgemoe.boards import BOARDS
from edgemoe.hls.plan import KernelPlan, attn_cycles

from .loops import CALL_OVERHEAD, LoopEstimate, loop_estimate
from .measured import SimResults, calibration
from .primitives import OP_LATENCY
from .routing import Routing, as_routing

MODES = ("onchip", "edgemoe-dram")

#: default operator latencies (cycles) when no RTL measurement exists: the one table, in primitives
DEFAULT_LATENCY = OP_LATENCY


# --- results -----------------------------------------------------------------------------------

@dataclass
class Step:
    """One step of the kernel for one call (``batch`` images): cycles and DRAM bytes.

    ``cycles_total`` is the headline's (onchip: the kernel as written, with ``cycles_memory``
    the part spent in loops that access an m_axi pointer); ``cycles_intended`` the intended
    schedule's; ``loops`` the intended schedule's loop detail.
    """

    name: str
    block: int              # -1: before the blocks (patch embedding), depth: after (output)
    kind: str               # linear | attention | moe | norm | elementwise | io
    cycles_compute: float
    cycles_memory: float
    cycles_total: float
    bytes: float            # DRAM bytes (weights + activations + image / tokens)
    weight_bytes: float = 0.0
    macs: float = 0.0
    loops: dict = field(default_factory=dict)
    cycles_intended: float = 0.0

    def merged(self, other: "Step") -> "Step":
        loops = dict(self.loops)
        for k, v in other.loops.items():
            loops[k] = loops.get(k, 0.0) + v
        return Step(self.name, self.block, self.kind, self.cycles_compute + other.cycles_compute,
                    self.cycles_memory + other.cycles_memory, self.cycles_total + other.cycles_total,
                    self.bytes + other.bytes, self.weight_bytes + other.weight_bytes, self.macs + other.macs, loops,
                    self.cycles_intended + other.cycles_intended)


@dataclass
class Roofline:
    """Bounds per image: compute (board DSPs / this unit) and weight traffic (board / this port)."""

    macs_per_image: float
    weight_bytes_per_image: float
    dsp_per_mac: int
    board_macs_per_cycle: float
    unit_macs_per_cycle: int
    board_gbps: float         # sustained
    port_gbps: float          # the weights' bundles (every lane) as modelled
    compute_ms: float         # all of the board's DSPs
    unit_compute_ms: float    # this design's CU_IN x CU_OUT unit
    traffic_ms: float         # weight bytes at the board's sustained bandwidth
    port_traffic_ms: float    # weight bytes at this design's weights-port bandwidth
    modelled_ms: float

    @property
    def bound_ms(self) -> float:
        return max(self.compute_ms, self.traffic_ms)

    @property
    def ratio(self) -> float:
        """Modelled latency / board roofline (>= 1; 1 = at the roof)."""
        return self.modelled_ms / self.bound_ms

    @property
    def design_bound_ms(self) -> float:
        return max(self.unit_compute_ms, self.port_traffic_ms)

    @property
    def design_ratio(self) -> float:
        return self.modelled_ms / self.design_bound_ms

    @property
    def bound_kind(self) -> str:
        return "compute" if self.compute_ms >= self.traffic_ms else "weight traffic"

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.update(bound_ms=self.bound_ms, ratio=self.ratio, design_bound_ms=self.design_bound_ms,
                 design_ratio=self.design_ratio, bound_kind=self.bound_kind)
        return d


@dataclass
class PerfEstimate:
    """Latency estimate of one kernel call of ``batch`` images.

    The headline (``ms_per_image``, ``cycles_total`` of each step) is the kernel as written
    (onchip: ``loops``, the loop model) or Edge-MoE's schedule; ``intended_*`` the intended
    schedule of the same steps.
    """

    cfg: object
    mode: str
    batch: int
    share_weights: bool
    steps: list[Step]
    routing: Routing
    calibration: dict
    latency: dict
    clock_mhz: float
    board: str
    bandwidth: dict
    notes: list[str]
    total_cycles: float = 0.0
    roofline: Roofline | None = None
    loops: LoopEstimate | None = None
    intended_cycles: float = 0.0

    # per image figures
    @property
    def cycles_per_image(self) -> float:
        return self.total_cycles / self.batch

    @property
    def ms_per_image(self) -> float:
        return self.cycles_per_image / (self.clock_mhz * 1e3)

    @property
    def ms_per_call(self) -> float:
        return self.total_cycles / (self.clock_mhz * 1e3)

    @property
    def images_per_s(self) -> float:
        return 1e3 / self.ms_per_image

    @property
    def intended_ms_per_image(self) -> float:
        """The intended schedule (every PIPELINE II met, loads behind the compute): the second column."""
        return self.intended_cycles / self.batch / (self.clock_mhz * 1e3)

    def loops_table(self, top: int | None = None) -> str:
        """Per-loop rows of the kernel as written, sorted by cycles (:func:`format_loops`)."""
        return format_loops(self, top)

    @property
    def weight_bytes_per_image(self) -> float:
        return sum(s.weight_bytes for s in self.steps) / self.batch

    @property
    def dram_bytes_per_image(self) -> float:
        return sum(s.bytes for s in self.steps) / self.batch

    @property
    def macs_per_image(self) -> float:
        return sum(s.macs for s in self.steps) / self.batch

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration)

    def per_block(self) -> dict[int, float]:
        """Cycles per image of each block (-1: patch embedding, depth: output)."""
        out: dict[int, float] = {}
        for s in self.steps:
            out[s.block] = out.get(s.block, 0.0) + s.cycles_total / self.batch
        return dict(sorted(out.items()))

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.steps:
            out[s.kind] = out.get(s.kind, 0.0) + s.cycles_total / self.batch
        return out

    def step_cycles(self, name: str, block: int | None = None, field_: str = "cycles_total") -> float:
        """Cycles (per call) of the steps called ``name`` (in ``block``, or summed over blocks)."""
        return sum(getattr(s, field_) for s in self.steps if s.name == name and (block is None or s.block == block))

    def linear_cycles(self) -> float:
        return sum(s.cycles_total for s in self.steps if s.kind == "linear") / self.batch

    def table(self, per_block: bool = True) -> str:
        """Per-step table (per image) + totals + roofline."""
        b = self.batch
        h = self.cfg.hardware
        lines = [f"{self.cfg.name}: {self.cfg.precision.name}, CU {h.cu_in}x{h.cu_out}, P={h.attn_parallel}, "
                 f"AXI {h.axi_width}b, {self.clock_mhz:g} MHz on {self.board}; mode {self.mode}; batch {b}"
                 + ("" if not (self.share_weights and b > 1) else
                    f" (experts shared by groups of {h.moe_batch} images)"
                    if self.mode == "onchip" else " (weights shared across the batch)"),
                 f"routing: {self.routing.source}; active experts per MoE block: "
                 + ", ".join(f"{a:.1f}" for a in self.routing.active_experts()),
                 "calibration: " + (", ".join(f"{u} {c['latency']} cyc (II {c['ii']:g}; {c['how']})"
                                             for u, c in sorted(self.calibration.items()))
                                    if self.calibration else "none (default unit latencies)"),
                 ]
        head = "as written" if self.loops is not None else "total"
        lines.append(f"  {'block':>5} {'step':<16}{'compute':>12}{'memory':>12}{head:>12}{'us':>9}{'intended':>12}"
                     f"{'DRAM KB':>10}{'MMAC':>9}")
        us = 1.0 / self.clock_mhz
        for s in self.steps:
            blk = "emb" if s.block < 0 else ("out" if s.block >= self.cfg.model.depth else str(s.block))
            lines.append(f"  {blk:>5} {s.name:<16}{s.cycles_compute / b:>12,.0f}{s.cycles_memory / b:>12,.0f}"
                         f"{s.cycles_total / b:>12,.0f}{s.cycles_total / b * us:>9.1f}{s.cycles_intended / b:>12,.0f}"
                         f"{s.bytes / b / 1024:>10.1f}{s.macs / b / 1e6:>9.2f}")
        if per_block:
            lines.append("  per block (us): " + ", ".join(
                f"{'emb' if k < 0 else 'out' if k >= self.cfg.model.depth else k}: {v * us:.0f}"
                for k, v in self.per_block().items()))
        r = self.roofline
        what = "as written" if self.loops is not None else "Edge-MoE schedule"
        lines.append(f"total ({what}): {self.cycles_per_image:,.0f} cycles/image = {self.ms_per_image:.2f} ms/image "
                     f"({self.images_per_s:.1f} img/s); call of {b}: {self.ms_per_call:.2f} ms")
        lines.append(f"intended schedule (every PIPELINE II met, loads behind the compute): "
                     f"{self.intended_ms_per_image:.2f} ms/image")
        lines.append(f"work: {self.macs_per_image / 1e9:.3f} GMAC/image; weights {self.weight_bytes_per_image / 1e6:.2f} "
                     f"MB/image; DRAM total {self.dram_bytes_per_image / 1e6:.2f} MB/image")
        if r is not None:
            lines.append(f"roofline ({self.board}): compute {r.compute_ms:.2f} ms ({r.board_macs_per_cycle:.0f} MAC/cycle, "
                         f"{r.dsp_per_mac} DSP/MAC), weight traffic {r.traffic_ms:.2f} ms at {r.board_gbps:.1f} GB/s "
                         f"-> bound {r.bound_ms:.2f} ms ({r.bound_kind}); modelled / roofline = {r.ratio:.1f}x")
            lines.append(f"design roof: unit {r.unit_macs_per_cycle} MAC/cycle -> {r.unit_compute_ms:.2f} ms, "
                         f"weights port {r.port_gbps:.1f} GB/s -> {r.port_traffic_ms:.2f} ms; "
                         f"modelled / design roof = {r.design_ratio:.1f}x")
        for n in self.notes:
            lines.append(f"note: {n}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "config": self.cfg.name, "mode": self.mode, "batch": self.batch, "share_weights": self.share_weights,
            "board": self.board, "clock_mhz": self.clock_mhz,
            "cycles_per_image": self.cycles_per_image, "ms_per_image": self.ms_per_image,
            "intended_ms_per_image": self.intended_ms_per_image,
            "loops": self.loops.rows() if self.loops is not None else None,
            "images_per_s": self.images_per_s, "weight_bytes_per_image": self.weight_bytes_per_image,
            "dram_bytes_per_image": self.dram_bytes_per_image, "macs_per_image": self.macs_per_image,
            "calibration": self.calibration, "latency": self.latency, "bandwidth": self.bandwidth,
            "routing": self.routing.source, "notes": self.notes,
            "roofline": self.roofline.as_dict() if self.roofline else None,
            "steps": [{**{k: v for k, v in s.__dict__.items() if k != "loops"}, "loops": dict(s.loops)}
                      for s in self.steps],
        }


# --- the model ----------------------------------------------------------------------------------

def _log2c(x: int) -> int:
    return max(0, math.ceil(math.log2(max(1, x))))


class _Kernel:
    """Loop-level cycle formulas of one mode; appends Steps."""

    def __init__(self, cfg, mode, port_limit, lat, unit_ii, plan: KernelPlan):
        self.cfg, self.mode, self.lat, self.unit_ii = cfg, mode, lat, unit_ii
        m, p, h = cfg.model, cfg.precision, cfg.hardware
        self.m, self.p, self.h = m, p, h
        self.plan = plan
        self.row_words = plan.row_words
        self.attn_cycles = attn_cycles(m.num_tokens, h.attn_parallel)   # Edge-MoE's key stream (edgemoe-dram)
        self.cu_bits = plan.cu_word_bits
        self.wbytes = plan.weight_word_bits / 8
        self.mbytes = plan.matrix_word_bits / 8        # an element of a compute-unit matrix (packed)
        self.pix_bytes = plan.pixel_word_bits / 8
        self.act_bytes = math.ceil(p.act.bits / 8)
        board = BOARDS[h.board]
        clock_hz = h.clock_mhz * 1e6
        eff = board.mem_gbps * board.mem_efficiency * 1e9 / clock_hz   # bytes per cycle
        axi = h.axi_width / 8
        port = board.port_gbps * 1e9 / clock_hz if (port_limit or board.flow == "zynq") else math.inf
        self.bw_board = eff
        lanes = h.weight_lanes                          # the weights' bundles, axi / lanes bytes a cycle each
        self.bw_w = min(eff, lanes * min(axi / lanes, port))
        self.bw_a = min(2 * min(axi, port), eff)        # activations: separate read / write bundles (DRAM mode)
        self.bw_out = min(axi, port, eff)               # the output tokens: bus words on the activations' bundle
        self.lat_axi = board.dram_latency_ns * h.clock_mhz / 1e3
        self.blk = max(1, h.axi_width // p.act.bits)    # activation words per AXI beat (Edge-MoE FEATURE_BLOCK)
        self.steps: list[Step] = []

    def add(self, name, block, kind, comp, mem, total, nbytes=0.0, wbytes=0.0, macs=0.0, **loops):
        self.steps.append(Step(name, block, kind, float(comp), float(mem), float(total), float(nbytes),
                               float(wbytes), float(macs), {k: float(v) for k, v in loops.items()}))

    # --- shared pieces -----------------------------------------------------------------
    def mac_depth(self) -> int:
        L = self.lat
        return L["bram"] + L["mul"] + _log2c(self.h.cu_in) + L["add"]

    def load_cycles(self, nbytes: float, bursts: float = 1.0) -> float:
        return bursts * self.lat_axi + nbytes / self.bw_w

    # --- compute unit ------------------------------------------------------------------
    def layer(self, name, block, rows, layer: str, **kw):
        """:meth:`linear` with the sizes and bias of the plan's linear layer called ``layer``."""
        lin = self.plan.linear(layer)
        return self.linear(name, block, rows, lin.k, lin.n_out, bias=lin.has_bias, **kw)

    def linear(self, name, block, rows, k, n_out, *, gelu=False, score=False, resid=False, bias=True,
               kind="linear", exposed_load=True):
        """One compute_unit call on ``rows`` rows (may be fractional: expected counts). Returns total cycles.
        ``resid``: on chip the epilogue also adds the output into the residual stream (proj, fc2)."""
        if rows <= 0:
            return 0.0
        if self.mode == "edgemoe-dram":
            return self._linear_dram(name, block, rows, k, n_out, gelu=gelu, score=score, bias=bias, kind=kind,
                                     exposed_load=exposed_load)
        h, L = self.h, self.lat
        tiles = math.ceil(n_out / h.cu_out)
        # rows x k-chunks of every tile in one pipeline, the epilogue (CU_OUT outputs) beside the next row's
        # MACs: per tile its MAC iterations; once per call the last row's epilogue and the pipeline's depth
        mac_trip = math.ceil(k / h.cu_in)
        mac_ii = max(1.0, self.unit_ii.get("gelu", 1.0)) if gelu else 1.0
        fin_depth = L["bram"] + L["cast"] + (L["gelu"] if gelu else 0) + (L["mul"] + L["add"] + L["bram"] if score else 0)
        if resid:   # x + y, its cast, the lane sum, the row's running sum and x_sum's add
            fin_depth += L["add"] + L["cast"] + (_log2c(self.plan.epilogue_lanes) + 2) * L["add"]
        comp_tile = rows * mac_trip * mac_ii
        once = self.plan.epilogue_groups * mac_ii + self.mac_depth() + fin_depth + L["loop"]
        mac = tiles * comp_tile + once
        finish = 0.0
        wbytes = n_out * k * self.mbytes + (n_out if bias else 0) * self.wbytes
        load = self.load_cycles(wbytes / tiles)
        # rows of whole bus words: one burst per layer, the DRAM latency once (the first tile), not per tile; and
        # the call before streams and unpacks the layer's biases and tile 0 (its prefetch), so the first tile's
        # load is behind the call before and the call starts with its MACs, while its last tile's MACs run
        # beside the next call's first tile's load
        if self.plan.weight_rows_aligned:
            load_next = load - self.lat_axi
            total = tiles * max(comp_tile, load_next) + once
        else:
            load_next = load
            total = load + (tiles - 1) * max(comp_tile, load_next) + comp_tile + once
        self.add(name, block, kind, mac, tiles * load, total, wbytes, wbytes, rows * n_out * k,
                 MAC=mac, MAC_ITER=tiles * rows * mac_trip * mac_ii, FINISH=tiles * finish,
                 LOAD_TILE=tiles * load)
        return total

    def _linear_dram(self, name, block, rows, k, n_out, *, gelu, score, bias, kind, exposed_load):
        h, L = self.h, self.lat
        tiles = math.ceil(n_out / h.cu_out)
        kin = math.ceil(k / h.cu_in)
        depth = self.mac_depth() + L["cast"] + (L["gelu"] if gelu else 0) + (L["mul"] if score else 0)
        comp = rows * tiles * kin + depth
        wbytes = n_out * k * self.mbytes + (n_out if bias else 0) * self.wbytes
        abytes = rows * (k + n_out * (2 if score else 1)) * self.act_bytes
        load = self.load_cycles(wbytes)
        act_mem = self.lat_axi + abytes / self.bw_a
        stream = max(comp, act_mem, (wbytes + abytes) / self.bw_board)
        total = (load + stream) if exposed_load else stream
        self.add(name, block, kind, comp, load + act_mem, total, wbytes + abytes, wbytes, rows * n_out * k,
                 MAC=comp, MAC_ITER=rows * tiles * kin, LOAD_LAYER=load, ACT_STREAM=act_mem)
        return total

    # --- elementwise -------------------------------------------------------------------
    def rows_loop(self, name, block, kind, rows, inner, ii=1.0, depth=2, extra_per_row=0.0, nbytes=0.0,
                  wbytes=0.0):
        """``rows`` x (inner loop of ``inner`` iterations at ``ii`` + depth) + per-row extra."""
        per = inner * ii + depth + self.lat["loop"] + extra_per_row
        cyc = rows * per
        self.add(name, block, kind, cyc, 0.0, cyc, nbytes, wbytes, 0.0, **{name.upper(): cyc})
        return cyc

    def stream_dram(self, name, block, kind, rows, words_per_row, passes=1, extra_per_row=0.0, nbytes=0.0,
                    wbytes=0.0, macs=0.0):
        """Edge-MoE style: ``passes`` streams of ``words_per_row`` words per row at one AXI beat per cycle."""
        comp = rows * (passes * math.ceil(words_per_row / self.blk) + extra_per_row) + 8
        mem = self.lat_axi + nbytes / self.bw_a
        total = max(comp, mem)
        self.add(name, block, kind, comp, mem, total, nbytes, wbytes, macs, STREAM=comp)
        return total

    # --- steps ---------------------------------------------------------------------------
    def patch_embed(self, nimg, consts=True):
        """The patch gather, the patch embedding and the embedding; ``consts``: with the call's constants (the
        cls token, the position table and the LayerNorms: one burst, the call's first image)."""
        m, L = self.m, self.lat
        npatch = m.num_patches
        img_bytes = m.in_chans * m.img_height * m.img_width * self.pix_bytes
        if self.mode == "onchip":
            # the image in its own order, one image word (IMAGE_LANES pixels) per cycle, one burst (PATCH_PIX)
            cyc = (self.plan.image_words + self.lat_axi + L["store"] + L["loop"]) * nimg
            self.add("patch_gather", -1, "io", cyc, cyc, cyc, img_bytes * nimg, 0.0, 0.0, PATCH_PIX=cyc)
            self.layer("patch_embed", -1, npatch * nimg, "patch_embed")
            # the call's constants in one burst, a bus word per cycle (CONSTS: once per call), then one pipeline
            # over rows x chunks of CAST_LANES columns (EMBED_D)
            wb = self.plan.const_beats * self.plan.words_per_beat * self.wbytes if consts else 0.0
            mem = self.plan.const_beats + self.lat_axi + L["loop"] if consts else 0.0
            comp = nimg * (m.num_tokens * (m.embed_dim // self.plan.cast_lanes) + 4 + L["loop"])
            self.add("embed", -1, "elementwise", comp, mem, comp + mem, wb, wb, 0.0, CONSTS=mem, EMBED_D=comp)
        else:
            beats = math.ceil(m.patch_dim * self.pix_bytes * 8 / self.h.axi_width)
            comp = npatch * nimg * beats + 8
            mem = self.lat_axi + img_bytes * nimg / self.bw_a
            self.add("patch_gather", -1, "io", comp, mem, max(comp, mem), img_bytes * nimg, 0.0, 0.0, STREAM=comp)
            self.layer("patch_embed", -1, npatch * nimg, "patch_embed")
            wb = (m.num_tokens * m.embed_dim + m.embed_dim) * self.wbytes
            self.stream_dram("embed", -1, "elementwise", m.num_tokens * nimg, m.embed_dim,
                             nbytes=wb + 2 * m.num_tokens * m.embed_dim * self.act_bytes * nimg, wbytes=wb)

    def layernorm(self, name, block, nimg):
        m, L = self.m, self.lat
        d, n = m.embed_dim, m.num_tokens * nimg
        per_row_fixed = 2 * L["div_const"] + L["rsqrt"]
        if self.mode == "onchip":
            # the row sums come with x (the embedding, a residual add), gamma and beta on chip (the call's
            # constants); one pipeline over rows x chunks of LN_LANES columns, the normalisation LN_SKEW rows
            # behind the variance (LN_STEPS)
            c = self.plan.ln_chunks
            steps = nimg * ((m.num_tokens + self.plan.ln_skew) * c + per_row_fixed + 8 + L["loop"])
            self.add(name, block, "norm", steps, 0.0, steps, 0.0, 0.0, 0.0, LN_STEPS=steps)
        else:
            params = 2 * d * self.wbytes
            self.stream_dram(name, block, "norm", n, d, passes=2, extra_per_row=per_row_fixed,
                             nbytes=2 * n * d * self.act_bytes + params, wbytes=params)

    def residual(self, name, block, nimg):
        """Edge-MoE's residual add, a step of its own through DRAM (on chip it is in the epilogue of proj / fc2
        and in the MoE output: :meth:`linear` ``resid``, :meth:`moe`)."""
        n = self.m.num_tokens * nimg
        d = self.m.embed_dim
        self.stream_dram(name, block, "elementwise", n, d, nbytes=3 * n * d * self.act_bytes)

    def attention(self, block, nimg):
        m, h, L = self.m, self.h, self.lat
        n, hd, heads, P = m.num_tokens, m.head_dim, m.num_heads, h.attn_parallel
        qk_macs = heads * n * n * hd * nimg
        exp_ii = self.unit_ii.get("exp", 1.0)
        if self.mode == "edgemoe-dram":
            # Edge-MoE: all heads per key in one pass, blk words per cycle, P slots; scores through DRAM
            per_key = math.ceil(m.embed_dim / self.blk)
            ab = self.act_bytes
            k_bytes = self.attn_cycles * m.embed_dim * ab          # keys re-read for every query group
            s_bytes = n * n * heads * ab + n * 2 * heads * ab       # scores + (max, 1/sum) rows
            for name, extra in (("attn_qk", n * m.embed_dim * ab + s_bytes),
                                ("attn_av", n * m.embed_dim * ab + s_bytes)):
                comp = nimg * (self.attn_cycles * per_key + L["exp"] + L["recip"] + 12)
                nbytes = nimg * (k_bytes + extra)
                mem = self.lat_axi + nbytes / self.bw_a
                self.add(name, block, "attention", comp, mem, max(comp, mem), nbytes, 0.0, qk_macs,
                         KEY_STREAM=comp)
            return
        # every head's score pass on the compute unit (its weights, the key rows, on chip: no load; each row's
        # scores stored in its last MAC iteration), then per head its probabilities (PROBS: PROB_LANES a cycle,
        # each row's 1/sum ahead) and its A*V pass (the value columns on chip, the epilogue after the last row);
        # the online softmax (P lanes, a query's state revisited every ATTN_GROUPS steps) runs head by head beside
        # all of these calls, as the compute unit's side job (KernelPlan.attention_calls), at the exp's II
        plan = self.plan
        calls = plan.attention_calls(pace=plan.sm_pace * exp_ii)
        epi = {"scores": L["bram"] + L["cast"], "av": L["bram"] + L["cast"] + L["store"], "none": 0}
        units = sum(c.iterations + self.mac_depth() + epi[c.kind] + L["loop"] for c in calls)
        probs = ((n + plan.prob_lead) * plan.prob_chunks * exp_ii + L["bram"] + L["exp"] + L["mul"] + L["cast"]
                 + L["store"] + L["loop"])
        cyc = nimg * (units + heads * probs)
        self.add("attn", block, "attention", cyc, 0.0, cyc, 0.0, 0.0, 2 * qk_macs,
                 MAC=nimg * units, PROBS=nimg * heads * probs)

    def moe(self, block, counts, expected, nimg, routing=True, experts=True):
        """MoE step of one MoE block; ``counts`` [E]: tokens per expert of this call group.  ``routing``: the
        group's gate, top-k and (on chip) MoE output; ``experts``: the experts over the group's queues (on chip
        the kernel runs the first per image and the second per group of ``hardware.moe_batch`` images)."""
        m, L = self.m, self.lat
        n, d, e = m.num_tokens * nimg, m.embed_dim, m.num_experts
        if routing:
            self.layer("gate", block, n, f"blocks.{block}.gate.0", kind="moe")
        if routing and self.mode == "onchip":
            # one pipeline over token slots of E experts (the top-k of token s, the exps of s - 1, the queue
            # writes of s - GATE_SKEW) that carries moe_acc's clear; its depth: a logit through exp, 1/sum and
            # the chosen experts' scores to the queue write
            ii = max(1.0, self.unit_ii.get("exp", 1.0), self.unit_ii.get("recip", 1.0))
            depth = (L["bram"] + L["add"] + L["exp"] + L["add"] + L["recip"] + L["mul"] + L["cast"] + L["store"]
                     + L["loop"])
            self.rows_loop("gate_topk", block, "moe", nimg, self.plan.gate_steps, ii=ii, depth=depth)
        elif routing:
            per_tok = math.ceil(d / self.blk) + 3 * e + e + 8
            self.stream_dram("gate_topk", block, "moe", n, 0, extra_per_row=per_tok, nbytes=n * d * self.act_bytes)
            self.stream_dram("moe_clear", block, "moe", n, d, nbytes=n * d * self.act_bytes)
        # experts: active ones only, ascending index
        tot_gather = tot_fc1 = tot_fc2 = 0.0
        prev_compute = None
        for ex in range(e if experts else 0):
            c = float(counts[ex])
            if c <= 0:
                continue
            if expected:
                pa = 1.0 - math.exp(-c)
                rows = c / pa
            else:
                pa, rows = 1.0, c
            mark = len(self.steps)
            ep = f"blocks.{block}.experts.{ex}"
            if self.mode == "onchip":
                # passes of up to N_TOKENS queued rows (each streams the expert's weights): the rows x chunks of
                # EW_LANES columns in one pipeline (the row read from the queue), fc1, fc2
                full, rest = divmod(rows, m.num_tokens)
                for pass_rows in [float(m.num_tokens)] * int(full) + ([rest] if rest > 1e-9 else []):
                    tot_gather += pa * self.rows_loop("expert_gather", block, "moe", 1.0,
                                                      pass_rows * (d // self.plan.elementwise_lanes),
                                                      depth=2 * L["bram"] + L["store"])
                    tot_fc1 += pa * self.layer("expert_fc1", block, pass_rows, f"{ep}.fc1", gelu=True, kind="moe")
                    tot_fc2 += pa * self.layer("expert_fc2", block, pass_rows, f"{ep}.fc2", score=True, kind="moe")
            else:
                # Edge-MoE: load(fc2 e) beside compute(fc1 e); load(fc1 e+1) beside compute(fc2 e)
                self.layer("expert_fc1", block, rows, f"{ep}.fc1", gelu=True, kind="moe",
                           exposed_load=prev_compute is None)
                self.layer("expert_fc2", block, rows, f"{ep}.fc2", score=True, kind="moe", exposed_load=False)
                s1, s2 = self.steps[-2], self.steps[-1]
                load1 = s1.loops["LOAD_LAYER"]
                load2 = s2.loops["LOAD_LAYER"]
                stream1 = max(s1.cycles_compute, s1.loops["ACT_STREAM"])
                stream2 = max(s2.cycles_compute, s2.loops["ACT_STREAM"])
                # fc1's stream hides fc2's load; fc2's stream hides the next fc1 load (charged to the next)
                s1.cycles_total = (load1 if prev_compute is None else max(0.0, load1 - prev_compute)) + \
                    max(stream1, load2)
                s2.cycles_total = stream2
                prev_compute = stream2
            if expected:
                for s in self.steps[mark:]:
                    for f in ("cycles_compute", "cycles_memory", "cycles_total", "bytes", "weight_bytes", "macs"):
                        setattr(s, f, getattr(s, f) * pa)
                    s.loops = {kk: v * pa for kk, v in s.loops.items()}
        if self.mode == "onchip" and routing:
            # the cast of moe_acc and the residual add: rows x chunks of CAST_LANES columns in one pipeline, the
            # row's sum to x_sum
            C = self.plan.cast_lanes
            depth = L["bram"] + 2 * L["cast"] + (_log2c(C) + 1) * L["add"] + L["store"]
            self.rows_loop("moe_out", block, "moe", 1, n * d // C, depth=depth)

    def output(self, nimg):
        m = self.m
        beats = self.plan.token_region.beats * nimg      # each image's tokens from a bus word
        nbytes = beats * self.h.axi_width / 8
        if self.mode == "onchip":
            # one pipeline over the bus words (WRITE_W, OUT_PER_BEAT words each, II write_ii): one burst
            cyc = beats * self.plan.write_ii + 2 + self.lat["loop"] + self.lat_axi
            mem = nbytes / self.bw_out
            self.add("write_tokens", m.depth, "io", cyc, mem, max(cyc, mem), nbytes, 0.0, 0.0, WRITE_ROWS=cyc)
        # DRAM mode: the residual stream x already lives in DRAM


def _group_counts(rt: Routing, block_i: int, images: list[int]) -> np.ndarray:
    c = rt.counts[block_i]
    return np.sum([c[i % c.shape[0]] for i in images], axis=0)


def estimate(cfg, routing=None, batch: int = 1, mode: str = "onchip", *, share_weights: bool | None = None,
             port_limit: bool = False, measured: SimResults | None = None, calibrate: bool = True) -> PerfEstimate:
    """Latency of one kernel call of ``batch`` images (per-image figures on the result).

    routing: None (uniform expected counts), a :class:`Routing` (e.g. from
    :func:`routing_from_golden` / :func:`skewed_routing`), or counts per MoE
    block.  mode: ``"onchip"`` (the generated kernel: the headline is the loop
    model of the kernel as written) or ``"edgemoe-dram"`` (Edge-MoE's
    architecture).  share_weights: in the intended schedule and Edge-MoE's, load
    each weight once per call for the whole batch (default: ``batch > 1``; the
    kernel as written does not).  port_limit: cap every board's bundles at one
    memory port's bandwidth (``Board.port_gbps``; Zynq boards always are).
    measured: what the sim tools wrote, read by the caller; calibrates the RTL
    units' latencies unless ``calibrate`` is false (without it: default latencies).
    """
    from .primitives import dsp_per_mult

    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: must be one of {', '.join(MODES)}")
    if batch < 1:
        raise ValueError(f"batch {batch}: must be >= 1")
    share = (batch > 1) if share_weights is None else bool(share_weights)
    m, h = cfg.model, cfg.hardware
    rt = as_routing(cfg, routing)
    plan = KernelPlan.from_config(cfg)
    cal = calibration(cfg, measured) if calibrate else {}
    lat = dict(DEFAULT_LATENCY)
    unit_ii = {}
    for u, c in cal.items():
        lat[u] = c["latency"]
        unit_ii[u] = c["ii"]
    k = _Kernel(cfg, mode, port_limit, lat, unit_ii, plan)

    if mode == "onchip":
        # the kernel's own schedule: everything but the experts image by image, each MoE block's experts once
        # per group of hardware.moe_batch images (the group's queues)
        share = h.moe_batch > 1 and batch > 1
        groups = [list(range(g, min(batch, g + h.moe_batch))) for g in range(0, batch, h.moe_batch)]
    else:
        groups = [list(range(batch))] if share else [[i] for i in range(batch)]
    for imgs in groups:
        # on chip: the group's images one by one (dense weights per image), then its experts
        for one in ([[i] for i in imgs] if mode == "onchip" else [imgs]):
            nimg = len(one)
            k.patch_embed(nimg, consts=one[0] == 0)
            mi = 0
            for b in range(m.depth):
                k.layernorm("norm1", b, nimg)
                k.layer("qkv", b, m.num_tokens * nimg, f"blocks.{b}.qkv")
                k.attention(b, nimg)
                # on chip the residual adds are in proj's and fc2's epilogue and in moe_out; Edge-MoE's are steps
                k.layer("proj", b, m.num_tokens * nimg, f"blocks.{b}.proj", resid=True)
                if mode == "edgemoe-dram":
                    k.residual("resid1", b, nimg)
                k.layernorm("norm2", b, nimg)
                if m.is_moe(b):
                    k.moe(b, _group_counts(rt, mi, one), rt.expected, nimg, experts=mode != "onchip")
                    mi += 1
                else:
                    k.layer("fc1", b, m.num_tokens * nimg, f"blocks.{b}.fc1", gelu=True)
                    k.layer("fc2", b, m.num_tokens * nimg, f"blocks.{b}.fc2", resid=True)
                if mode == "edgemoe-dram":
                    k.residual("resid2", b, nimg)
            k.output(nimg)
        if mode == "onchip":
            for mi, b in enumerate(plan.moe_blocks):
                k.moe(b, _group_counts(rt, mi, imgs), rt.expected, len(imgs), routing=False)

    merged: dict[tuple, Step] = {}
    for s in k.steps:
        s.cycles_intended = s.cycles_total
        key = (s.block, s.name)
        merged[key] = merged[key].merged(s) if key in merged else s
    steps = list(merged.values())
    intended = sum(s.cycles_intended for s in steps) + CALL_OVERHEAD
    loops = None
    if mode == "onchip":
        loops = loop_estimate(cfg, rt, batch, lat, unit_ii, port_limit)
        written = loops.by_step()
        maxi = loops.maxi_cycles()
        for s in steps:
            key = (s.name, s.block)
            s.cycles_total = written.pop(key, 0.0) * batch
            s.cycles_memory = maxi.get(key, 0.0) * batch
            s.cycles_compute = s.cycles_total - s.cycles_memory
        for (name, block), cyc in written.items():   # kernel work the intended schedule has no step for
            mem = maxi.get((name, block), 0.0) * batch
            steps.append(Step(name, block, "elementwise", cyc * batch - mem, mem, cyc * batch, 0.0))
        steps.sort(key=lambda s: (s.block, s.name == "moe_out"))   # the MoE output after its experts
        total = loops.cycles_per_image * batch
    else:
        total = intended

    notes = []
    if batch > 1 and mode == "onchip":
        notes.append(f"the kernel runs the call's images in groups of hardware.moe_batch = {h.moe_batch}: each "
                     "active expert's weights stream once per group and MoE block, the dense layers' once per image"
                     + ("" if h.moe_batch > 1 else " (every weight once per image)"))
    elif batch > 1:
        notes.append("weights shared across the batch" if share else "weights reloaded per image")
    if mode == "edgemoe-dram":
        notes.append("Edge-MoE mode: intermediates through DRAM, whole-layer weight loads exposed for dense "
                     "layers, expert loads ping-ponged behind the previous expert's compute")
    else:
        binding = {}
        for r in loops.rows():
            binding[r["binding"]] = binding.get(r["binding"], 0.0) + r["cycles"]
        top = sorted(binding.items(), key=lambda kv: -kv[1])[:3]
        notes.append("as written: " + ", ".join(f"{100 * c / loops.cycles_per_image:.0f}% in loops bound by {b}"
                                                for b, c in top) + " (edgemoe perf --loops lists them)")
    if not cal:
        notes.append("uncalibrated: no RTL measurements under build/sim for this precision")
    if plan.matrix_word_bits > cfg.precision.weight.bits:
        notes.append(f"weights are {cfg.precision.weight.bits}-bit but the layout packs the matrices in "
                     f"{plan.matrix_word_bits}-bit elements, so DRAM traffic is that of "
                     f"{plan.matrix_word_bits}-bit weights")

    est = PerfEstimate(cfg, mode, batch, share, steps, rt, cal, lat, h.clock_mhz, h.board,
                       {"weights_bytes_per_cycle": k.bw_w, "activations_bytes_per_cycle": k.bw_a,
                        "board_bytes_per_cycle": k.bw_board, "dram_latency_cycles": k.lat_axi},
                       notes, total, loops=loops, intended_cycles=intended)
    board = BOARDS[h.board]
    dpm = dsp_per_mult(plan.cu_word_bits, plan.matrix_word_bits)
    clock = h.clock_mhz * 1e6
    macs = est.macs_per_image
    wbytes = est.weight_bytes_per_image
    board_gbps = board.mem_gbps * board.mem_efficiency
    est.roofline = Roofline(
        macs_per_image=macs, weight_bytes_per_image=wbytes, dsp_per_mac=dpm,
        board_macs_per_cycle=board.dsp / dpm, unit_macs_per_cycle=h.cu_in * h.cu_out,
        board_gbps=board_gbps, port_gbps=k.bw_w * clock / 1e9,
        compute_ms=macs / (board.dsp / dpm) / clock * 1e3,
        unit_compute_ms=macs / (h.cu_in * h.cu_out) / clock * 1e3,
        traffic_ms=wbytes / (board_gbps * 1e9) * 1e3,
        port_traffic_ms=wbytes / (k.bw_w * clock) * 1e3,
        modelled_ms=est.ms_per_image)
    return est


def format_loops(est: PerfEstimate, top: int | None = None) -> str:
    """The loops of the kernel as written (onchip estimates): label, function, iterations per image,
    achievable II (and the pragma's), binding constraint, cycles per image and share, sorted by cycles."""
    if est.loops is None:
        return f"mode {est.mode}: no generated kernel to list the loops of (Edge-MoE's schedule)"
    return est.loops.table(top)


def as_written_findings(cfg, routing=None, batch: int = 1, measured: SimResults | None = None) -> list[dict]:
    """Where the kernel as written spends its time, by the constraint that binds each loop (onchip mode).

    Rows: {penalty, description, ms_per_image, factor}; the first row is the
    intended schedule (factor 1), then one row per binding constraint: the
    ms/image of the loops it binds and, as ``factor``, their excess over the
    pragmas' II (ms) relative to the intended total; the last row the kernel as
    written (factor: as written / intended).
    """
    est = estimate(cfg, routing, batch, "onchip", measured=measured)
    base = est.intended_ms_per_image
    rows = [{"penalty": "(intended schedule)", "description": "every PIPELINE II met, loads behind the compute",
             "ms_per_image": base, "factor": 1.0}]
    us = 1e-3 / est.clock_mhz
    groups: dict = {}
    for r in est.loops.rows():
        g = groups.setdefault(r["binding"], {"cycles": 0.0, "excess": 0.0, "loops": []})
        g["cycles"] += r["cycles"]
        g["excess"] += r["cycles"] - r["cycles_target"]
        if r["cycles"] > 0:
            g["loops"].append(f"{r['label']} (II {r['ii']:.3g})" if r["target_ii"] else r["label"])
    for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["cycles"]):
        if g["cycles"] <= 0:
            continue
        more = len(g["loops"]) - 4
        rows.append({"penalty": name, "description": ", ".join(g["loops"][:4]) + (f" +{more} more" if more > 0 else ""),
                     "ms_per_image": g["cycles"] * us, "factor": g["excess"] * us / base})
    rows.append({"penalty": "(all: as written)", "description": "the headline: every loop as the tool schedules it",
                 "ms_per_image": est.ms_per_image, "factor": est.ms_per_image / base})
    return rows


def format_findings(rows: list[dict]) -> str:
    lines = [f"  {'binding constraint':<34}{'ms/image':>10}{'excess':>8}  loops (achievable II)"]
    for r in rows:
        lines.append(f"  {r['penalty'][:34]:<34}{r['ms_per_image']:>10.2f}{r['factor']:>8.2f}  {r['description']}")
    return "\n".join(lines)
