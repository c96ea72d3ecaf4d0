"""Edge-MoE's published design (ICCAD 2023), modelled call by call, beside its one measured figure.

The model of the generated kernel (:mod:`.cycles`) has nothing measured on a
board to stand on; the one figure measured on hardware for this model is
Edge-MoE's own: its ZCU102 demo loop prints about 59 ms per image
(:data:`MEASURED_MS`).  This module models *that* design -- not ours with
DRAM intermediates -- in the same vocabulary (loops x II, bytes over ports,
the board's DRAM), so that the cycle model has a calibration point.

**The design, as its public source has it** (repository sharc-lab/Edge-MoE;
files named below, parameters in :class:`ReferenceDesign`):

* Clock 300 MHz (``vitis_hls.tcl``: ``create_clock -period 300MHz``;
  ``vivado.tcl``: ``pl_clk0`` at 300 MHz clocks the kernel *and* the PS
  slave ports), part xczu9eg-ffvb1156-2-e (ZCU102).
* Data types (``include/datatypes.hpp``): activations ``fm_t =
  ap_fixed<32,10>``, linear weights ``ap_fixed<16,2>``, qkv/proj biases
  ``<16,7>``, other biases and LayerNorm ``<16,5>``, patch-embedding weights
  ``<16,0>``, pixels ``ap_ufixed<8,0>`` -- the ``w16a32`` profile of
  :mod:`edgemoe.config`, which the widths here are read from.
* Tiling (``include/hardware.hpp``): ``AXI_XFER_BIT_WIDTH = 256``;
  ``FEATURE_BLOCK_SIZE = 256 / 32 = 8`` activation words per beat;
  ``LINEAR_IN_SIZE = LINEAR_OUT_SIZE = 2 x FEATURE_BLOCK_SIZE = 16`` (a
  16 x 16 multiplier array, one instance: ``allocation ... compute_linear
  limit=1`` in ``src/ViT_compute.cpp``); ``ATTN_MATMUL_PARALLEL = 4`` queries
  per group.
* Memory (``src/ViT_compute.cpp``, ``vivado.tcl``): *every* intermediate
  lives in DRAM (``x``, ``tmp1..4``, ``tmp_hidden``, the score matrix
  ``attn`` and ``attn_softmax_info``).  Five m_axi bundles -- ``inout1``
  (images, tmp1, attn), ``inout2`` (x, tmp2), ``inout3`` (tmp3), ``inout4``
  (tmp4, tmp_hidden, attn_softmax_info), ``weights`` (all weights) -- on five
  PS slave ports (HPC1, HP0, HP1, HP2, HPC0), 128 bits wide in the PS
  configuration, so each 256-bit bundle is halved by its SmartConnect:
  16 bytes per kernel cycle per port and direction.  ``config_interface
  -m_axi_latency 64 -m_axi_alignment_byte_size 64``; no pragma sets the
  outstanding-request depth (Vitis HLS's default, 16, is assumed).
* Schedule (``src/ViT_compute.cpp``): per layer ``load_norms``, ``norm1``,
  then for Q, K, V, proj: ``load_linear_weights`` + ``load_linear_bias``
  into a ping or pong buffer, then ``compute_linear``; between every two of
  these calls sits ``if (debug_id == layer * 16 + s) return;``.  That
  control dependency keeps HLS from starting the next weight load beside the
  current compute, so the ping/pong buffers never overlap anything at layer
  level: loads and compute are *serialised* (``debug_returns``).  Even layers
  run the dense MLP (fc1 with GELU, fc2), odd ones the MoE.
* Linear layers (``src/linear.cpp``): ``load_linear_weights`` is an II=1 loop
  over ``out_dim x ceil(in_dim/16)`` 256-bit beats (the whole layer, before
  compute); ``compute_linear`` is a DATAFLOW of a reader (one 8-word beat per
  cycle), ``compute_linear_on_stream`` (II=1 over ``rows x ceil(out/16) x
  ceil(in/16)``, 256 MACs a cycle, input reused across output tiles) and a
  writer.  Experts gather / scatter their tokens by index
  (``read_in_stream_indirect``, ``write_out_stream_indirect``: single-beat
  accesses, the scatter a read-modify-write of the output).
* Attention (``src/attention.cpp``): ``compute_q_matmul_k`` streams *all* K
  from DRAM again for every group of P queries (``read_kv``: ``ATTN_CYCLES x
  D/8`` beats, the reordered schedule's length
  :func:`edgemoe.hls.plan.attn_cycles`), II=1, all heads per beat; the
  online softmax (``finalize_attn``, a recurrence of distance P) writes every
  score to DRAM (``attn``: ``ATTN_CYCLES x P`` rows of 4 x 32 bits) and
  (1/sum, max) per query (``attn_softmax_info``).  ``compute_attn_matmul_v``
  re-reads V the same way, reads the scores back and recomputes exp.
* MoE (``src/moe.cpp``, inlined into the layer loop): ``load_w_gate`` (one
  task's gate), ``compute_gating`` (per token: a 24-beat dot product on 16
  experts, softmax at II=3, top-k, then the per-expert queues),
  ``zero_output``, then per *active* expert fc1 (GELU) and fc2 (x score,
  accumulated into the output).  Inside this loop there is no debug return:
  the fc2 load runs beside the fc1 compute and the next expert's fc1 load
  beside the fc2 compute (``moe_overlap``).
* LayerNorm (``src/layernorm.cpp``): per token a DATAFLOW of an accumulate
  loop (mean, mean of squares) and an output loop after ``1 / hls::sqrt``.
  Patch embedding (``src/conv.cpp``): per patch row, 3 x 16 image rows x
  patch pairs x 24 feature blocks at II=1; its weights load once per call
  (``reload_one_time_weights``).  Residual adds (``src/add.cpp``): one beat
  of each operand per cycle.

**What the model cannot see.**  The demo figure is measured around the
kernel call on the board's host: image decoding, resizing and conversion to
pixel codes, copying into the device buffers, cache maintenance, reading the
tokens back, and whatever the demo does with them -- none of which the
repository shows.  The kernel alone is therefore expected *below* 59 ms; the
difference is reported, not fitted.  Operator latencies of Vitis HLS's
``hls::sqrt``, division and ``hls::exp`` on 32-bit fixed point are estimates
(``ReferenceDesign.lat_*``), not synthesis results; they move the total by
well under a millisecond.  The two HPC ports (weights, inout1) pass through the
PS's coherent interconnect; they are modelled at the same 128-bit rate as the
HP ports, each port at its full width (no SmartConnect or DDR-controller
inefficiency beyond the board's sustained fraction of the total).

Costs: a step (a pipelined loop or a DATAFLOW region) takes the largest of
its loop iterations x II, the bytes on each port and direction over the
port's rate, single-beat accesses at ``outstanding / latency`` beats a cycle,
and all its bytes over the board's sustained DRAM bandwidth
(:mod:`edgemoe.boards`), plus one DRAM latency and a pipeline depth; the
largest term is what *binds*.  Steps run one after another.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from edgemoe.boards import BOARDS, Board
from edgemoe.config import precision_profile
from edgemoe.errors import ConfigError
from edgemoe.hls.plan import KernelPlan, attn_cycles

from .routing import Routing, as_routing

#: Edge-MoE's ZCU102 demo loop output (the demo in sharc-lab/Edge-MoE): ms per image,
#: semseg and depth alike, M3ViT-tiny at 300 MHz, host work included
MEASURED_MS = 59.0
MEASURED_SOURCE = ("Edge-MoE's ZCU102 demo loop output (sharc-lab/Edge-MoE): about 59 ms per image, "
                   "semseg and depth alike, M3ViT-tiny at 300 MHz, host work included")
#: the config Edge-MoE deploys (the preset that describes it)
MEASURED_PRESET = "m3vit-tiny-cityscapes"

#: m_axi bundle -> the PS slave port it is wired to (``vivado.tcl``)
BUNDLE_PORTS = {"inout1": "S_AXI_HPC1", "inout2": "S_AXI_HP0", "inout3": "S_AXI_HP1", "inout4": "S_AXI_HP2",
                "weights": "S_AXI_HPC0"}
#: kernel argument -> its m_axi bundle (``src/ViT_compute.cpp``)
BUFFER_BUNDLES = {"images": "inout1", "tmp1": "inout1", "attn": "inout1", "x": "inout2", "tmp2": "inout2",
                  "tmp3": "inout3", "tmp4": "inout4", "tmp_hidden": "inout4", "attn_softmax_info": "inout4",
                  "weights": "weights"}
#: what each step kind is, for the breakdown
KINDS = {"load": "weight loads (exposed)", "linear": "linear compute (dense layers)",
         "attention": "attention (Q.K, A.V: K/V re-read per query group)",
         "moe": "MoE (gate, queues, experts with their loads)", "norm": "LayerNorm",
         "add": "residual adds", "embed": "patch embedding"}

_PROFILE = "w16a32"   # the precision profile holding Edge-MoE's data types


def _bits(name: str) -> int:
    return getattr(precision_profile(_PROFILE), name).bits


@dataclass(frozen=True)
class ReferenceDesign:
    """Edge-MoE 2023's parameters as its source sets them (see the module docstring for where).

    Widths in bits, clock in MHz, latencies in kernel cycles.  ``debug_returns``:
    the early returns between layer calls serialise weight loads and compute
    (False models the ping/pong overlap the buffers were meant for);
    ``moe_overlap``: the expert loop's loads run beside the previous compute.
    """

    clock_mhz: float = 300.0
    axi_width: int = 256                 # AXI_XFER_BIT_WIDTH
    linear_blocks: int = 2               # LINEAR_IN_SIZE = LINEAR_OUT_SIZE = 2 x FEATURE_BLOCK_SIZE
    attn_parallel: int = 4               # ATTN_MATMUL_PARALLEL
    port_bits: int = 128                 # PS slave port width (HP0-2, HPC0-1)
    act_bits: int = field(default_factory=lambda: _bits("act"))            # fm_t
    weight_bits: int = field(default_factory=lambda: _bits("weight"))      # wt_linear_t
    bias_bits: int = field(default_factory=lambda: _bits("bias"))          # wt_bias_t / wt_attn_bias_t
    norm_bits: int = field(default_factory=lambda: _bits("ln_gamma"))      # wt_norm_t
    patch_weight_bits: int = field(default_factory=lambda: _bits("patch_weight"))
    pixel_bits: int = field(default_factory=lambda: _bits("pixel"))        # pixel_t
    outstanding: int = 16                # m_axi read/write requests in flight (Vitis HLS default)
    debug_returns: bool = True
    moe_overlap: bool = True
    reload_one_time_weights: bool = True
    lat_sqrt: int = 32                   # hls::sqrt, ap_fixed<32,10> (estimate)
    lat_div: int = 58                    # 32-bit fixed-point division / hls::recip (estimate)
    lat_exp: int = 16                    # hls::exp, ap_fixed<32,10> (estimate)
    depth: int = 12                      # fill / drain of an II=1 loop or DATAFLOW region

    def __post_init__(self):
        ints = {"axi_width": (8, 4096), "linear_blocks": (1, 64), "attn_parallel": (1, 1024),
                "port_bits": (8, 4096), "act_bits": (1, 64), "weight_bits": (1, 64), "bias_bits": (1, 64),
                "norm_bits": (1, 64), "patch_weight_bits": (1, 64), "pixel_bits": (1, 64),
                "outstanding": (1, 1024), "lat_sqrt": (0, 10_000), "lat_div": (0, 10_000),
                "lat_exp": (0, 10_000), "depth": (0, 10_000)}
        for name, (lo, hi) in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"reference.{name}", v, f"must be an integer from {lo} to {hi}")
        if not (isinstance(self.clock_mhz, (int, float)) and 1.0 <= self.clock_mhz <= 2000.0):
            raise ConfigError("reference.clock_mhz", self.clock_mhz, "must be a number from 1 to 2000 (MHz)")
        for name in ("act_bits", "weight_bits", "bias_bits", "norm_bits", "patch_weight_bits", "pixel_bits"):
            if self.axi_width % getattr(self, name):
                raise ConfigError(f"reference.{name}", getattr(self, name),
                                  f"must divide the AXI width ({self.axi_width} bits): words are packed per beat")
        if self.linear_size % self.weight_block:
            raise ConfigError("reference.linear_blocks", self.linear_blocks,
                              f"LINEAR_IN_SIZE ({self.linear_size}) must be a multiple of the weight block "
                              f"({self.weight_block} words per beat)")

    # Edge-MoE's derived constants (include/hardware.hpp, src/linear.cpp)
    @property
    def feature_block(self) -> int:
        """FEATURE_BLOCK_SIZE: activation words per AXI beat."""
        return self.axi_width // self.act_bits

    @property
    def linear_size(self) -> int:
        """LINEAR_IN_SIZE = LINEAR_OUT_SIZE: the multiplier array is linear_size x linear_size."""
        return self.linear_blocks * self.feature_block

    @property
    def weight_block(self) -> int:
        """WEIGHT_BLOCK_SIZE: weight words per AXI beat."""
        return self.axi_width // self.weight_bits

    @property
    def beat_bytes(self) -> int:
        return self.axi_width // 8

    def describe(self) -> str:
        return (f"{self.clock_mhz:g} MHz, {self.linear_size}x{self.linear_size} linear unit, P={self.attn_parallel}, "
                f"{self.axi_width}-bit m_axi on {len(BUNDLE_PORTS)} {self.port_bits}-bit PS ports, "
                f"fm {self.act_bits}-bit, weights {self.weight_bits}-bit"
                + ("" if self.debug_returns else ", no debug returns (loads overlap the previous call)")
                + ("" if self.moe_overlap else ", expert loads not overlapped"))


# --- results --------------------------------------------------------------------------------

@dataclass
class RefStep:
    """One call of Edge-MoE's kernel for one image.

    ``terms``: cycles each resource would need on its own (``compute``,
    ``port <bundle> r|w``, ``DDR``); ``cycles`` = the largest + ``overhead``
    (DRAM latency, pipeline depth, operator latencies); ``exposed``: what the
    step adds to the total (less than ``cycles`` when it overlaps the previous
    call); ``bytes``: DRAM bytes per bundle.
    """

    name: str
    block: int                  # -1: patch embedding
    kind: str                   # a key of KINDS
    terms: dict
    overhead: float
    bytes: dict
    weight_bytes: float = 0.0
    macs: float = 0.0
    cycles: float = 0.0
    exposed: float = 0.0
    binds: str = ""
    detail: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.cycles:
            self.binds = max(self.terms, key=self.terms.get)
            self.cycles = self.terms[self.binds] + self.overhead
        if not self.exposed:
            self.exposed = self.cycles


@dataclass
class ReferenceEstimate:
    """Edge-MoE's kernel time for one image of one task, per step, with the measured figure beside it."""

    cfg: object
    design: ReferenceDesign
    board: Board
    routing: Routing
    steps: list[RefStep]
    notes: list[str]
    measured_ms: float | None      # MEASURED_MS when cfg is the model it was measured on, else None

    @property
    def clock_hz(self) -> float:
        return self.design.clock_mhz * 1e6

    def ms(self, cycles: float) -> float:
        return cycles / self.clock_hz * 1e3

    @property
    def total_cycles(self) -> float:
        return sum(s.exposed for s in self.steps)

    @property
    def ms_per_image(self) -> float:
        return self.ms(self.total_cycles)

    @property
    def weight_bytes(self) -> float:
        return sum(s.weight_bytes for s in self.steps)

    @property
    def dram_bytes(self) -> float:
        return sum(sum(s.bytes.values()) for s in self.steps)

    @property
    def macs(self) -> float:
        return sum(s.macs for s in self.steps)

    @property
    def ddr_gbps(self) -> float:
        """The board's sustained DRAM bandwidth (GB/s)."""
        return self.board.mem_gbps * self.board.mem_efficiency

    @property
    def port_gbps(self) -> float:
        """One PS port, one direction, as the design clocks it (GB/s)."""
        return _port_bpc(self.design, self.board) * self.clock_hz / 1e9

    @property
    def weight_floor_ms(self) -> float:
        """Weight bytes per image at the board's sustained DRAM bandwidth."""
        return self.weight_bytes / (self.ddr_gbps * 1e9) * 1e3

    @property
    def compute_floor_ms(self) -> float:
        """MACs per image on every DSP of the board at the design's clock, one MAC per DSP and cycle."""
        return self.macs / (self.board.dsp * self.clock_hz) * 1e3

    @property
    def host_gap_ms(self) -> float | None:
        """Measured - modelled: what the demo loop spends outside the kernel as modelled."""
        return None if self.measured_ms is None else self.measured_ms - self.ms_per_image

    def by_kind(self) -> dict[str, float]:
        """Exposed cycles per step kind (keys of :data:`KINDS`)."""
        out: dict[str, float] = {}
        for s in self.steps:
            out[s.kind] = out.get(s.kind, 0.0) + s.exposed
        return out

    def kind_rows(self) -> list[dict]:
        """Per step kind, largest first: kind, what it is, exposed cycles, ms, share, and its main binding."""
        tot = self.total_cycles
        rows: dict[str, dict] = {}
        for s in self.steps:
            r = rows.setdefault(s.kind, {"kind": s.kind, "what": KINDS[s.kind], "cycles": 0.0, "binds": {}})
            r["cycles"] += s.exposed
            r["binds"][s.binds] = r["binds"].get(s.binds, 0.0) + s.exposed
        out = sorted(rows.values(), key=lambda r: -r["cycles"])
        for r in out:
            r["ms"] = self.ms(r["cycles"])
            r["share"] = r["cycles"] / tot
            r["binds"] = ", ".join(k for k, v in sorted(r["binds"].items(), key=lambda kv: -kv[1])
                                   if v >= 0.2 * r["cycles"])
        return out

    def by_binding(self) -> dict[str, float]:
        """Exposed cycles per binding resource (``compute``, ``port <bundle> r|w``, ``DDR``)."""
        out: dict[str, float] = {}
        for s in self.steps:
            out[s.binds] = out.get(s.binds, 0.0) + s.exposed
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def per_block(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for s in self.steps:
            out[s.block] = out.get(s.block, 0.0) + s.exposed
        return dict(sorted(out.items()))

    def by_step(self) -> list[dict]:
        """Steps summed over the layers: name, kind, calls, exposed cycles, bytes, and the most frequent binding."""
        rows: dict[str, dict] = {}
        for s in self.steps:
            r = rows.setdefault(s.name, {"name": s.name, "kind": s.kind, "calls": 0, "cycles": 0.0, "bytes": 0.0,
                                         "weight_bytes": 0.0, "macs": 0.0, "binds": {}})
            r["calls"] += 1
            r["cycles"] += s.exposed
            r["bytes"] += sum(s.bytes.values())
            r["weight_bytes"] += s.weight_bytes
            r["macs"] += s.macs
            r["binds"][s.binds] = r["binds"].get(s.binds, 0.0) + s.exposed
        for r in rows.values():
            r["binds"] = max(r["binds"], key=r["binds"].get)
            r["ms"] = self.ms(r["cycles"])
        return list(rows.values())

    def step_cycles(self, name: str, field_: str = "exposed") -> float:
        return sum(getattr(s, field_) for s in self.steps if s.name == name)

    def table(self) -> str:
        d, b = self.design, self.board
        tot = self.total_cycles
        lines = [f"Edge-MoE (ICCAD 2023) as published, modelled on {b.name}: {self.cfg.name}; {d.describe()}",
                 f"  ports: {self.port_gbps:.2f} GB/s per port and direction ({d.port_bits} bits at "
                 f"{d.clock_mhz:g} MHz); DDR {self.ddr_gbps:.1f} GB/s sustained; DRAM latency "
                 f"{b.dram_latency_ns:g} ns; routing: {self.routing.source}",
                 f"  {'step':<22}{'calls':>6}{'cycles':>12}{'ms':>8}{'share':>7}{'DRAM MB':>9}  binds"]
        for r in self.by_step():
            lines.append(f"  {r['name']:<22}{r['calls']:>6}{r['cycles']:>12,.0f}{r['ms']:>8.2f}"
                         f"{r['cycles'] / tot:>7.1%}{r['bytes'] / 1e6:>9.2f}  {r['binds']}")
        lines.append("  by kind: " + ", ".join(f"{KINDS[k].split(' (')[0]} {self.ms(v):.2f} ms"
                                               for k, v in sorted(self.by_kind().items(), key=lambda kv: -kv[1])))
        lines.append("  binding: " + ", ".join(f"{k} {v / tot:.0%}" for k, v in self.by_binding().items()))
        lines.append("  per layer (ms): " + ", ".join(f"{'emb' if k < 0 else k}: {self.ms(v):.2f}"
                                                      for k, v in self.per_block().items()))
        lines.append(f"total (kernel): {tot:,.0f} cycles = {self.ms_per_image:.2f} ms/image; "
                     f"{self.macs / 1e9:.3f} GMAC, weights {self.weight_bytes / 1e6:.2f} MB, "
                     f"DRAM {self.dram_bytes / 1e6:.1f} MB per image")
        if self.measured_ms is not None:
            lines.append(f"measured: {self.measured_ms:g} ms/image ({MEASURED_SOURCE}); modelled / measured = "
                         f"{self.ms_per_image / self.measured_ms:.2f}; {self.host_gap_ms:.1f} ms outside the "
                         f"kernel as modelled")
        lines.append(f"floors: weights {self.weight_bytes / 1e6:.2f} MB / {self.ddr_gbps:.1f} GB/s = "
                     f"{self.weight_floor_ms:.2f} ms; {self.macs / 1e9:.3f} GMAC / ({b.dsp} DSP x "
                     f"{d.clock_mhz:g} MHz) = {self.compute_floor_ms:.2f} ms")
        for n in self.notes:
            lines.append(f"note: {n}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"config": self.cfg.name, "board": self.board.name, "design": asdict(self.design),
                "routing": self.routing.source, "ms_per_image": self.ms_per_image,
                "total_cycles": self.total_cycles, "measured_ms": self.measured_ms,
                "measured_source": MEASURED_SOURCE if self.measured_ms is not None else None,
                "weight_bytes": self.weight_bytes, "dram_bytes": self.dram_bytes, "macs": self.macs,
                "weight_floor_ms": self.weight_floor_ms, "compute_floor_ms": self.compute_floor_ms,
                "by_kind_ms": {k: self.ms(v) for k, v in self.by_kind().items()},
                "by_binding_ms": {k: self.ms(v) for k, v in self.by_binding().items()},
                "steps": [{**s.__dict__, "ms": self.ms(s.exposed)} for s in self.steps], "notes": self.notes}


# --- the model ---------------------------------------------------------------------------------

def _port_bpc(d: ReferenceDesign, board: Board) -> float:
    """Bytes per kernel cycle through one bundle's PS port in one direction: the port's width at the
    kernel clock (the ports are clocked by pl_clk0), never above the m_axi width or the board's port peak."""
    return min(d.port_bits / 8, d.beat_bytes, board.port_gbps * 1e9 / (d.clock_mhz * 1e6))


class _Walk:
    """Appends one RefStep per call of Edge-MoE's kernel (functions named as in its source)."""

    def __init__(self, cfg, d: ReferenceDesign, board: Board):
        self.m, self.d = cfg.model, d
        self.plan = KernelPlan.from_config(cfg)
        clock = d.clock_mhz * 1e6
        self.port = _port_bpc(d, board)                          # one bundle, one direction
        self.ddr = board.mem_gbps * board.mem_efficiency * 1e9 / clock
        self.lat = board.dram_latency_ns * d.clock_mhz / 1e3
        # single-beat (indirect) accesses: `outstanding` requests per round trip
        self.random_bpc = min(self.port, d.outstanding * d.beat_bytes / max(1.0, self.lat))
        self.fb = d.feature_block
        self.act = d.act_bits / 8
        self.steps: list[RefStep] = []

    def beats(self, words: int, bits: int) -> int:
        return math.ceil(words * bits / self.d.axi_width)

    def step(self, name, block, kind, iters, traffic, *, overhead=0.0, weight_bytes=0.0, macs=0.0, **detail):
        """iters: II-weighted loop iterations of the slowest stage; traffic: (buffer, 'r' | 'w', bytes) bursts."""
        terms = {"compute": float(iters)}
        per_bundle: dict[str, float] = {}
        total = 0.0
        for buf, rw, nbytes in traffic:
            bundle = BUFFER_BUNDLES[buf]
            key = f"port {bundle} {rw}"
            terms[key] = terms.get(key, 0.0) + nbytes / self.port
            per_bundle[bundle] = per_bundle.get(bundle, 0.0) + nbytes
            total += nbytes
        terms["DDR"] = total / self.ddr
        s = RefStep(name, block, kind, terms, float(overhead + self.lat + self.d.depth), per_bundle,
                    float(weight_bytes), float(macs), detail=dict(detail))
        self.steps.append(s)
        return s

    # --- loads (src/linear.cpp, src/layernorm.cpp, src/moe.cpp, src/ViT_compute.cpp) ---------
    def load_linear(self, name, block, k, n_out, bias_bits):
        """load_linear_weights + load_linear_bias: the whole layer, one 256-bit beat per iteration."""
        d = self.d
        iters = n_out * math.ceil(k / d.weight_block)
        bias_iters = self.beats(n_out, bias_bits)
        nbytes = iters * d.beat_bytes + bias_iters * d.beat_bytes
        return self.step(name, block, "load", iters + bias_iters, [("weights", "r", nbytes)],
                         overhead=self.lat, weight_bytes=nbytes, hideable=True)

    def load_norms(self, block):
        d, dim = self.d, self.m.embed_dim
        per = math.ceil(dim / self.fb)        # vector<wt_norm_t, FEATURE_BLOCK_SIZE> per iteration
        nbytes = 4 * dim * d.norm_bits / 8
        self.step("load_norms", block, "load", 4 * per, [("weights", "r", nbytes)], overhead=3 * self.lat,
                  weight_bytes=nbytes)

    # --- compute (src/linear.cpp) -----------------------------------------------------------------
    def linear(self, name, block, k, n_out, src, dst, *, kind="linear"):
        """compute_linear on every token (direct streams)."""
        n, ls = self.m.num_tokens, self.d.linear_size
        iters = n * math.ceil(n_out / ls) * math.ceil(k / ls)
        rd, wr = n * math.ceil(k / self.fb), n * math.ceil(n_out / self.fb)
        return self.step(name, block, kind, max(iters, rd, wr),
                         [(src, "r", rd * self.d.beat_bytes), (dst, "w", wr * self.d.beat_bytes)],
                         macs=n * k * n_out)

    def expert_linear(self, rows, k, n_out, src, dst, score) -> tuple[float, dict, float]:
        """compute_linear on one expert's queue (indirect streams): (cycles, DRAM bytes per bundle, MACs).

        The gather reads and the scatter writes are single beats (an index per
        token); with ``score`` the scatter also reads the output it adds to.
        """
        ls, bb = self.d.linear_size, self.d.beat_bytes
        iters = rows * math.ceil(n_out / ls) * math.ceil(k / ls)
        rd, wr = rows * math.ceil(k / self.fb) * bb, rows * math.ceil(n_out / self.fb) * bb
        reads = {BUFFER_BUNDLES[src]: rd}
        if score:
            reads[BUFFER_BUNDLES[dst]] = reads.get(BUFFER_BUNDLES[dst], 0.0) + wr
        nbytes = dict(reads)
        nbytes[BUFFER_BUNDLES[dst]] = nbytes.get(BUFFER_BUNDLES[dst], 0.0) + wr
        cyc = max(iters, max(reads.values()) / self.random_bpc, wr / self.random_bpc,
                  sum(nbytes.values()) / self.ddr) + self.lat + self.d.depth
        return cyc, nbytes, rows * k * n_out

    def experts(self, counts, expected, e1, e2, load1, load2) -> dict:
        """The expert loop of compute_moe for one image; ``counts`` [E] tokens per expert,
        ``e1`` / ``e2`` the experts' fc1 / fc2 (LinearPlan), ``load1`` / ``load2`` their loads (RefStep)."""
        d = self.d
        out = {"cycles": 0.0, "loads": 0.0, "compute": 0.0, "macs": 0.0, "active": 0.0, "bytes": {}}
        last_c2 = 0.0
        for c in counts:
            c = float(c)
            if c <= 0:
                continue
            pa = (1.0 - math.exp(-c)) if expected else 1.0     # expected counts: active with Poisson odds
            rows = c / pa
            c1, b1, m1 = self.expert_linear(rows, e1.k, e1.n_out, "tmp1", "tmp_hidden", score=False)
            c2, b2, m2 = self.expert_linear(rows, e2.k, e2.n_out, "tmp_hidden", "tmp3", score=True)
            if d.moe_overlap:   # fc1 beside the fc2 load; fc2 beside the next expert's fc1 load
                out["cycles"] += pa * (max(c1, load2.cycles) + max(c2, load1.cycles))
            else:
                out["cycles"] += pa * (load1.cycles + c1 + load2.cycles + c2)
            last_c2 = c2
            out["loads"] += pa * (load1.cycles + load2.cycles)
            out["compute"] += pa * (c1 + c2)
            out["macs"] += pa * (m1 + m2)
            out["active"] += pa
            for part in (b1, b2, {"weights": load1.weight_bytes + load2.weight_bytes}):
                for k, v in part.items():
                    out["bytes"][k] = out["bytes"].get(k, 0.0) + pa * v
        if out["active"] and d.moe_overlap:
            # the first fc1 load is exposed; no load follows the last fc2
            out["cycles"] += load1.cycles - (max(last_c2, load1.cycles) - last_c2)
        return out

    # --- elementwise ---------------------------------------------------------------------------
    def layernorm(self, name, block, src, dst):
        """compute_norm: per token, accumulate (read) and output (1/sqrt, write) in DATAFLOW."""
        d, n, dim = self.d, self.m.num_tokens, self.m.embed_dim
        blocks = math.ceil(dim / self.fb)
        row_bytes = blocks * d.beat_bytes
        read = self.lat + max(blocks, row_bytes / self.port) + d.depth
        out = d.lat_sqrt + d.lat_div + max(blocks, row_bytes / self.port) + d.depth
        per = max(read, out)
        return self.step(name, block, "norm", n * per, [(src, "r", n * row_bytes), (dst, "w", n * row_bytes)],
                         overhead=min(read, out), per_token=per)

    def add(self, name, block):
        """compute_add(x, tmp3 -> x): one beat of each operand per iteration."""
        n = self.m.num_tokens * math.ceil(self.m.embed_dim / self.fb)
        bb = self.d.beat_bytes
        return self.step(name, block, "add", n, [("x", "r", n * bb), ("tmp3", "r", n * bb), ("x", "w", n * bb)])

    # --- steps ---------------------------------------------------------------------------------
    def patch_embed(self):
        """load_one_time_weights (when reloaded) and compute_patch_embed (src/ViT_compute.cpp, src/conv.cpp)."""
        m, d = self.m, self.d
        blocks = math.ceil(m.embed_dim / self.fb)
        if d.reload_one_time_weights:
            rows = m.embed_dim * m.in_chans * m.patch_size
            nbytes = rows * self.beats(m.patch_size, d.patch_weight_bits) * d.beat_bytes \
                + self.beats(m.embed_dim, d.bias_bits) * d.beat_bytes
            self.step("load_patch_embed", -1, "load", rows + blocks, [("weights", "r", nbytes)],
                      weight_bytes=nbytes)
        img_block = d.axi_width // d.pixel_bits                   # IMAGE_BLOCK_SIZE pixels per beat
        per_beat = max(1, img_block // m.patch_size)               # patches per beat
        gh, gw = m.grid
        acc = m.in_chans * m.patch_size * math.ceil(gw / per_beat) * blocks   # per patch row, II=1
        out = gw * blocks
        iters = gh * max(acc, out) + min(acc, out) + blocks        # rows in DATAFLOW, then the cls row
        img_bytes = m.in_chans * m.img_height * m.img_width * d.pixel_bits / 8
        pos_bytes = m.num_tokens * blocks * d.beat_bytes
        self.step("patch_embed", -1, "embed", iters,
                  [("images", "r", img_bytes), ("weights", "r", pos_bytes), ("x", "w", pos_bytes)],
                  weight_bytes=pos_bytes, macs=m.num_patches * m.patch_dim * m.embed_dim)

    def attention_qk(self, block):
        """compute_q_matmul_k (src/attention.cpp): Q.K with the online softmax; scores to DRAM."""
        m, d = self.m, self.d
        n, dim, P = m.num_tokens, m.embed_dim, d.attn_parallel
        steps = attn_cycles(n, P)                       # key positions streamed over all query groups
        blocks = math.ceil(dim / self.fb)
        rec = 1 + d.lat_exp + 3 + 1                     # finalize_attn: max -> exp -> sum * exp + 1, distance P
        fin_ii = max(1, math.ceil(rec / P))
        self.step("attn_qk", block, "attention", max(steps * blocks, steps * P * fin_ii),
                  [("tmp2", "r", n * blocks * d.beat_bytes), ("tmp3", "r", self.kv_bytes()),
                   ("attn", "w", self.score_bytes()), ("attn_softmax_info", "w", self.info_bytes())],
                  overhead=d.lat_exp + d.lat_div, macs=n * n * dim, kv_bytes=self.kv_bytes(),
                  query_groups=steps / n, finalize_ii=fin_ii)

    def attention_av(self, block):
        """compute_attn_matmul_v (src/attention.cpp): V re-read per query group, scores read back, exp again."""
        m, d = self.m, self.d
        n, dim, P = m.num_tokens, m.embed_dim, d.attn_parallel
        steps = attn_cycles(n, P)
        blocks = math.ceil(dim / self.fb)
        self.step("attn_av", block, "attention", max(steps * blocks, steps * P),
                  [("tmp2", "r", self.kv_bytes()), ("attn", "r", self.score_bytes()),
                   ("attn_softmax_info", "r", self.info_bytes()), ("tmp1", "w", n * blocks * d.beat_bytes)],
                  overhead=d.lat_exp + 3, macs=n * n * dim, kv_bytes=self.kv_bytes(), query_groups=steps / n)

    def kv_bytes(self) -> float:
        """read_kv: every key (value) row again for every group of P queries."""
        m, d = self.m, self.d
        return attn_cycles(m.num_tokens, d.attn_parallel) * math.ceil(m.embed_dim / self.fb) * d.beat_bytes

    def score_bytes(self) -> float:
        """qxk_out_t: one heads_t (roundup_p2(heads) words) per key position and query slot."""
        m, d = self.m, self.d
        return attn_cycles(m.num_tokens, d.attn_parallel) * d.attn_parallel * _pow2(m.num_heads) * self.act

    def info_bytes(self) -> float:
        """softmax_info_t: (1/sum, max) per head and query, roundup_p2(2 x heads) words."""
        return self.m.num_tokens * _pow2(2 * self.m.num_heads) * self.act

    def attention_block(self, b):
        """One layer up to norm2, in the order of ViT_compute's layer loop."""
        qkv, proj = self.plan.linear(f"blocks.{b}.qkv"), self.plan.linear(f"blocks.{b}.proj")
        dim, bias = self.m.embed_dim, self.d.bias_bits
        if qkv.n_out != 3 * dim:
            raise ConfigError("model", qkv.n_out, "Edge-MoE computes Q, K and V as three D x D layers")
        self.load_norms(b)
        self.layernorm("norm1", b, "x", "tmp1")
        self.load_linear("load_q", b, qkv.k, dim, bias)
        self.linear("linear_q", b, qkv.k, dim, "tmp1", "tmp2")
        self.load_linear("load_k", b, qkv.k, dim, bias)
        self.linear("linear_k", b, qkv.k, dim, "tmp1", "tmp3")
        self.attention_qk(b)
        self.load_linear("load_v", b, qkv.k, dim, bias)
        self.linear("linear_v", b, qkv.k, dim, "tmp1", "tmp2")
        self.attention_av(b)
        self.load_linear("load_proj", b, proj.k, proj.n_out, bias)
        self.linear("linear_proj", b, proj.k, proj.n_out, "tmp1", "tmp3")
        self.add("add_attn", b)
        self.layernorm("norm2", b, "x", "tmp1")

    def mlp(self, b):
        fc1, fc2 = self.plan.linear(f"blocks.{b}.fc1"), self.plan.linear(f"blocks.{b}.fc2")
        self.load_linear("load_fc1", b, fc1.k, fc1.n_out, self.d.bias_bits)
        self.linear("linear_fc1", b, fc1.k, fc1.n_out, "tmp1", "tmp_hidden")
        self.load_linear("load_fc2", b, fc2.k, fc2.n_out, self.d.bias_bits)
        self.linear("linear_fc2", b, fc2.k, fc2.n_out, "tmp_hidden", "tmp3")

    def moe(self, b, counts, expected):
        """load_w_gate, compute_gating, zero_output and the expert loop of compute_moe (src/moe.cpp).

        ``counts`` [images, E]: tokens per expert; the expert loop is costed per image and averaged.
        """
        m, d = self.m, self.d
        n, dim, e = m.num_tokens, m.embed_dim, m.num_experts
        blocks = math.ceil(dim / self.fb)
        gate = self.plan.linear(f"blocks.{b}.gate.0")
        gate_bytes = e * dim * d.weight_bits / 8            # one task's gate, FEATURE_BLOCK_SIZE weights a read
        self.step("load_w_gate", b, "load", e * blocks, [("weights", "r", gate_bytes)], weight_bytes=gate_bytes)
        # per token, one after another: dot product (II=1 over blocks), softmax (II=3 over experts),
        # top-k (II=1 over experts), exp + division of the k scores
        per_tok = (blocks + d.depth) + (3 * e + d.lat_exp + d.depth) + (e + d.depth) + (d.lat_exp + d.lat_div)
        row_bytes = n * blocks * d.beat_bytes
        self.step("gating", b, "moe", n * per_tok, [("tmp1", "r", row_bytes)], macs=n * gate.k * gate.n_out,
                  per_token=per_tok)
        self.step("zero_output", b, "moe", n * blocks, [("tmp3", "w", row_bytes)])
        e1, e2 = self.plan.linear(f"blocks.{b}.experts.0.fc1"), self.plan.linear(f"blocks.{b}.experts.0.fc2")
        load1 = self.load_linear("load_expert_fc1", b, e1.k, e1.n_out, d.bias_bits)
        load2 = self.load_linear("load_expert_fc2", b, e2.k, e2.n_out, d.bias_bits)
        del self.steps[-2:]                               # costed inside the expert loop
        per = [self.experts(row, expected, e1, e2, load1, load2) for row in counts]
        k = len(per)
        mean = lambda key: sum(p[key] for p in per) / k     # noqa: E731
        nbytes: dict[str, float] = {}
        for p in per:
            for bundle, v in p["bytes"].items():
                nbytes[bundle] = nbytes.get(bundle, 0.0) + v / k
        loads, comp, total = mean("loads"), mean("compute"), mean("cycles")
        binds = "port weights r" if loads >= comp else "compute"
        self.steps.append(RefStep("experts", b, "moe", {binds: total}, 0.0, nbytes,
                                  weight_bytes=nbytes.get("weights", 0.0), macs=mean("macs"), cycles=total, binds=binds,
                                  detail={"active_experts": mean("active"), "load_cycles": loads,
                                          "compute_cycles": comp, "images": k}))

    def overlap_loads(self):
        """Without the debug returns: each weight load runs beside the call before it (the ping/pong)."""
        prev = None
        for s in self.steps:
            if s.detail.get("hideable") and prev is not None:
                s.exposed = max(0.0, s.cycles - prev.cycles)
                s.detail["hidden_behind"] = prev.name
            elif s.kind != "load":
                prev = s


def _pow2(x: int) -> int:
    """roundup_p2 of Edge-MoE's util.hpp."""
    return 1 << max(0, (x - 1).bit_length())


def check_compatible(cfg, d: ReferenceDesign) -> None:
    """The static_asserts of Edge-MoE's source, on this model: a ConfigError naming the field."""
    m = cfg.model
    if m.head_dim % d.feature_block:
        raise ConfigError("model.num_heads", m.num_heads,
                          f"Edge-MoE's attention needs head_dim (embed_dim / num_heads = {m.head_dim}) to be a "
                          f"multiple of its feature block ({d.feature_block} words)")
    img_block = d.axi_width // d.pixel_bits
    if img_block % m.patch_size or m.img_width % img_block:
        raise ConfigError("model.patch_size", m.patch_size,
                          f"Edge-MoE's patch embedding needs patch_size to divide {img_block} pixels per beat and "
                          f"img_width ({m.img_width}) to be a multiple of it")
    if not d.attn_parallel < m.num_tokens:
        raise ConfigError("reference.attn_parallel", d.attn_parallel,
                          f"must be less than the tokens ({m.num_tokens})")


def estimate_reference(cfg, board: str = "zcu102", routing=None,
                       design: ReferenceDesign | None = None) -> ReferenceEstimate:
    """Edge-MoE's kernel time for one image of one task on ``board``, per call (see the module docstring).

    routing: as :func:`edgemoe.perf.cycles.estimate` takes it (None: uniform
    expected counts).  design: :class:`ReferenceDesign` (default: as published).
    The measured figure comes beside the estimate when ``cfg`` is the model it
    was measured on (the tiny preset's model) and ``board`` is the ZCU102.
    """
    if board not in BOARDS:
        raise ConfigError("board", board, f"must be one of {', '.join(BOARDS)}")
    d = design if design is not None else ReferenceDesign()
    check_compatible(cfg, d)
    brd = BOARDS[board]
    m = cfg.model
    rt = as_routing(cfg, routing)
    w = _Walk(cfg, d, brd)
    w.patch_embed()
    mi = 0
    for b in range(m.depth):
        w.attention_block(b)
        if m.is_moe(b):
            w.moe(b, rt.counts[mi], rt.expected)
            mi += 1
        else:
            w.mlp(b)
        w.add("add_mlp", b)
    if not d.debug_returns:
        w.overlap_loads()

    from edgemoe.presets import preset
    same_model = cfg.model == preset(MEASURED_PRESET).model
    notes = []
    if d.debug_returns:
        notes.append("the debug early returns between layer calls serialise every weight load with compute "
                     "(rerun with debug_returns=False for what the ping/pong buffers were meant to hide)")
    notes.append("not modelled (host side of the demo loop, not in the repository): image decoding, resize and "
                 "conversion to pixel codes, copies into the device buffers, cache flush / invalidate, reading "
                 "the tokens back, the task heads")
    if not same_model:
        notes.append(f"no measurement for this model: Edge-MoE was measured on {MEASURED_PRESET}'s model only")
    if board != "zcu102":
        notes.append(f"Edge-MoE was built and measured for the ZCU102's PS ports; {board} is an extrapolation")
    if m.moe_blocks != tuple(range(1, m.depth, 2)):
        notes.append("Edge-MoE's kernel has MoE in the odd layers only; this config's moe_blocks are modelled as given")
    measured = MEASURED_MS if (same_model and board == "zcu102") else None
    return ReferenceEstimate(cfg, d, brd, rt, w.steps, notes, measured)

