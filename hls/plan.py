"""The kernel plan: every hardware number derived from a config, computed once.

:class:`KernelPlan` is the one source of the numbers the generated kernel is
built with and the rest of the toolchain must agree on: buffer widths and
tiles, the attention's query groups, word widths and their numpy types,
the debug taps, the longest dot product, and a record per linear layer
(offsets in the weight buffer, fraction bits, sizes).  The templates are
rendered from it (:func:`edgemoe.hls.writer.context`), the performance and
resource models read it, and so do the host's packing and simulated device;
nothing derives these numbers a second time.

    plan = KernelPlan.from_config(cfg)
    plan.row_words, plan.attn_groups, plan.buffer_types["activations"]
    plan.linear("blocks.0.qkv").weight_offset
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from edgemoe.boards import BOARDS
from edgemoe.config import Config

from .layout import WeightLanes, WeightLayout, matrix_bits

#: the per-block steps of the tap schedule, in schedule order (``TAP_<STEP>[DEPTH]`` in the kernel)
BLOCK_STEPS = ("norm1", "qkv", "scores", "softmax_max", "softmax_inv", "attn", "proj", "resid1", "norm2",
               "gate_logits", "gate_scores", "topk_idx", "topk_score", "expert_counts", "moe", "fc1", "fc2", "out")
#: per-block weight tensors: kernel constant -> key suffix under ``backbone.blocks.<b>.`` (-1 where absent); the
#: LayerNorms have none: the kernel reads them with the other constants, in one burst (KernelPlan.const_beats)
BLOCK_TENSORS = {
    "OFF_QKV_W": "attn.qkv.weight", "OFF_QKV_B": "attn.qkv.bias",
    "OFF_PROJ_W": "attn.proj.weight", "OFF_PROJ_B": "attn.proj.bias",
    "OFF_FC1_W": "mlp.fc1.weight", "OFF_FC1_B": "mlp.fc1.bias",
    "OFF_FC2_W": "mlp.fc2.weight", "OFF_FC2_B": "mlp.fc2.bias",
}
#: per-expert weight tensors: kernel constant -> key suffix under ``backbone.blocks.<b>.mlp.experts.<e>.``
EXPERT_TENSORS = {"OFF_EXP_W1": "htoh4.weight", "OFF_EXP_B1": "htoh4.bias",
                  "OFF_EXP_W2": "h4toh.weight", "OFF_EXP_B2": "h4toh.bias"}


#: ports of one bank of an on-chip array per cycle (a true dual-port BRAM / LUTRAM; the loop model's BANK_PORTS)
BANK_PORTS = 2

#: the per-block tap steps the kernel writes head by head, each head's words from a bus word of their own
PER_HEAD_STEPS = ("scores", "softmax_max", "softmax_inv")
#: the tap steps whose words go a word (the pixels tap: an image word) a cycle into the bus word being filled
#: (the kernel's put_word; pack_rows for the rows of ``logits``: a head's scores, the gate logits, rows that may
#: be shorter than a bus word); write_rows writes the others, and the output tokens, a bus word a cycle from a
#: row buffer whose rows are DIM, 3 DIM or MLP_HIDDEN words (multiples of cu_in)
PACKED_STEPS = ("pixels", "scores", "softmax_max", "softmax_inv", "gate_logits", "gate_scores", "topk_idx",
                "topk_score", "expert_counts")

#: most columns per cycle of the elementwise loops that cast every column (``KernelPlan.cast_lanes``)
CAST_LANES = 16
#: most columns per cycle of the LayerNorm's pipeline (``KernelPlan.ln_lanes``): its two LayerNorms a block run
#: on one instance, so its lanes cost half what the other cast loops' would
LN_LANES = 32

#: cycles from a LayerNorm row's last chunk to the first use of its 1/std (the variance's add, the divide by DIM,
#: the epsilon's add, rsqrt, the store: ``edgemoe.perf.primitives.OP_LATENCY`` makes it 15, a test checks it)
LN_HANDOFF = 16
#: cycles of the online softmax's sum recurrence, read l, l * alpha, + e, cast, store (``OP_LATENCY`` makes it
#: 8, a test checks it): a query's state must come round no sooner
SM_RECURRENCE = 8
#: cycles from the softmax's PROBS iteration that forms a row's 1/sum to its first use (the sum's read, the
#: reciprocal, the store: ``OP_LATENCY`` makes it 11, a test checks it)
PROB_HANDOFF = 12

#: iterations a head's score stays stored, at least, before the compute unit's side job reads it in the same score
#: pass (the side job starts on the call's own head SM_LEAD_TILES tiles in): well past the MAC pipeline's depth,
#: so the read never overtakes the store (the DEPENDENCE pragma on sm_s states the distance)
SM_LEAD_GAP = 64

#: most products one DSP48E2 post-adder chain sums (``KernelPlan.mac_chain``): each slice adds its product
#: to the previous slice's P (P = A x B + C), a pipeline stage a slice, so a longer chain only adds depth
MAC_CHAIN = 8


def container_bits(bits: int) -> int:
    """The narrowest C / numpy integer (8, 16, 32 or 64 bits) holding ``bits``-bit words."""
    for w in (8, 16, 32, 64):
        if bits <= w:
            return w
    raise ValueError(f"{bits}-bit words do not fit a 64-bit container")


def beat_span(start: int, words: int, words_per_beat: int) -> tuple[int, int, int]:
    """The bus words (beats) holding weight words ``[start, start + words)``: (first beat, beats, skip), where
    ``skip`` is the word of the first beat the range starts at (0 when ``start`` is beat-aligned).  The
    kernel's ``span_of`` computes the same."""
    first, skip = divmod(start, words_per_beat)
    return first, -(-(skip + words) // words_per_beat), skip


#: keys past the last whole ``cu_in`` chunk that A*V folds into its last chunk (``AV_FOLD``) rather than run a
#: chunk for: N = 129 (a class token and 128 patches) on a 64-wide unit would otherwise take 3 chunks for 2
#: chunks' keys; each folded key is CU_OUT more multipliers in the compute unit
AV_FOLD_MAX = 1


def folded_keys(model, hw) -> int:
    """Keys A*V folds into its last chunk (``AV_FOLD``): the N keys past the last whole ``cu_in`` chunk when
    there are at most :data:`AV_FOLD_MAX` of them and at least one whole chunk, else 0."""
    rest = model.num_tokens % hw.cu_in
    return rest if model.num_tokens > hw.cu_in and rest <= AV_FOLD_MAX else 0


def padded_keys(model, hw) -> int:
    """A*V's dot product length in the compute unit's chunks (``K_PAD``): the N keys less the folded ones, in
    whole ``cu_in`` chunks."""
    keys = model.num_tokens - folded_keys(model, hw)
    return -(-keys // hw.cu_in) * hw.cu_in


def score_columns(model, hw) -> int:
    """Columns of a head's score rows (``SCORE_COLS``): the N keys, then keys 0..ATTN_P - 2 again."""
    return model.num_tokens + hw.attn_parallel - 1


def attn_cycles(num_tokens: int, parallel: int) -> int:
    """Steps of the reordered key stream (``parallel`` query slots share one key per cycle; the slot of query
    ``i`` starts at key ``i % parallel``): Edge-MoE's attention schedule, which the RTL schedule unit and the
    reference model run.  The generated kernel keeps its key order per query (``golden.attention.key_order``)
    without the stream: its online softmax takes ``N x ceil(N / parallel)`` iterations of its SM_STEPS loop
    (``attn_groups``)."""
    n, par = num_tokens, parallel
    return ((n - 1) // par) * n + (n - 1) % par + n


@functools.lru_cache(maxsize=4096)
def beat_bank_reads(rows: int, cols: int, per_beat: int, banks: int) -> int:
    """The most reads one bank takes in one bus word that ``write_rows`` packs: ``per_beat`` consecutive words of
    the row-major ``rows x cols`` region of a row buffer whose columns are in ``banks`` cyclic banks.  A bus
    word's words are runs of consecutive columns, one per row it touches (the rest of one row, whole rows
    when ``cols < per_beat``, the start of the next); a run of ``L`` columns takes ceil(L / banks) reads of a
    bank or floor(L / banks), so a bus word inside one row with ``per_beat <= banks`` reads each bank at most
    once, and one across a row end at most twice."""
    total = rows * cols
    # the bus words' first columns repeat every cols / gcd(cols, per_beat) bus words
    period = cols // math.gcd(cols, per_beat)
    worst = 0
    for b in range(min(-(-total // per_beat), period)):
        f, end = b * per_beat, min(total, (b + 1) * per_beat)
        counts = [0] * banks
        while f < end:
            c = f % cols
            run = min(cols - c, end - f)
            whole, rest = divmod(run, banks)
            for k in range(banks):
                counts[k] += whole
            for k in range(rest):
                counts[(c + k) % banks] += 1
            f += run
        worst = max(worst, max(counts))
    return worst


@dataclass(frozen=True)
class ActRegion:
    """What the kernel writes to the activations buffer for one image: the output tokens or one debug tap.

    The buffer is bus words of ``out_per_beat`` output words each (``act_beat_t``, little-endian: word j in bits
    [j * OUT_WORD_BITS, (j + 1) * OUT_WORD_BITS)), so its bytes are an array of output words, and every region
    the kernel writes starts on a bus word: the region is ``parts`` sub-regions (a head each for the
    :data:`PER_HEAD_STEPS` taps, else one), each ``rows x cols`` words row-major from a bus word of its own,
    ``part_stride`` words apart (its words rounded up to whole bus words; the kernel zeroes the rest of its
    last bus word).  The golden words (``shape``) are the parts in order with the padding dropped
    (:meth:`unpack`).  ``writer``: ``"write_rows"`` (a bus word a cycle from a row buffer) or ``"packed"`` (a
    word a cycle into a bus word, :data:`PACKED_STEPS`).
    """

    name: str
    shape: tuple
    parts: int
    rows: int
    cols: int
    out_per_beat: int
    writer: str

    @property
    def part_words(self) -> int:
        return self.rows * self.cols

    @property
    def part_beats(self) -> int:
        """Bus words of one part (``SCORE_HEAD_BEATS`` / ``SM_HEAD_BEATS`` for the per-head taps)."""
        return -(-self.part_words // self.out_per_beat)

    @property
    def part_stride(self) -> int:
        """Words from one part's start to the next: its words rounded up to whole bus words."""
        return self.part_beats * self.out_per_beat

    @property
    def words(self) -> int:
        """The golden words (``math.prod(shape)``)."""
        return self.parts * self.part_words

    @property
    def beats(self) -> int:
        """Bus words the kernel writes for one image."""
        return self.parts * self.part_beats

    @property
    def stride(self) -> int:
        """Words of the buffer the region takes (whole bus words)."""
        return self.beats * self.out_per_beat

    def unpack(self, buf) -> np.ndarray:
        """Buffer words ``[n, >= stride]`` (an image's region at the start of each row) -> the golden words
        ``[n, *shape]``: the parts with their padding dropped."""
        buf = np.asarray(buf)
        n = buf.shape[0]
        parts = buf[:, :self.stride].reshape(n, self.parts, self.part_stride)[:, :, :self.part_words]
        return parts.reshape(n, *self.shape)

    def pack(self, words, stride: int | None = None) -> np.ndarray:
        """The golden words ``[n, *shape]`` -> buffer words ``[n, stride]`` (default: the region's), as the
        kernel writes them: each part from a bus word, zeros in the padding."""
        words = np.asarray(words)
        n = words.shape[0]
        out = np.zeros((n, self.stride if stride is None else stride), dtype=words.dtype)
        parts = out[:, :self.stride].reshape(n, self.parts, self.part_stride)
        parts[:, :, :self.part_words] = words.reshape(n, self.parts, self.part_words)
        return out


@dataclass(frozen=True)
class LinearPlan:
    """One linear layer as the compute unit runs it: ``y[n_out] = W[n_out, k] x[k] (+ b)``.

    ``name``: ``patch_embed``, ``blocks.<b>.qkv|proj|fc1|fc2``, ``blocks.<b>.gate.<task>``,
    ``blocks.<b>.experts.<e>.fc1|fc2``.  Offsets are in weight words; ``bias_offset`` is -1
    (and ``bias_frac`` None) for a layer without bias (the gates).
    """

    name: str
    weight_key: str
    bias_key: str | None
    weight_offset: int
    bias_offset: int
    weight_frac: int
    bias_frac: int | None
    k: int
    n_out: int

    @property
    def has_bias(self) -> bool:
        return self.bias_offset >= 0

    #: bits of one element of W in the buffer (``MATRIX_WORD_BITS``) and of one buffer word
    matrix_bits: int = 16
    word_bits: int = 16

    @property
    def weight_words(self) -> int:
        """Buffer words of W and b (W packed at ``matrix_bits``)."""
        return -(-self.n_out * self.k * self.matrix_bits // self.word_bits) + (self.n_out if self.has_bias else 0)

    @property
    def weight_bytes(self) -> float:
        """Bytes of W and b the compute unit reads."""
        return (self.n_out * self.k * self.matrix_bits + (self.n_out * self.word_bits if self.has_bias else 0)) / 8


def _linears(cfg, layout: WeightLayout) -> tuple[LinearPlan, ...]:
    m, p = cfg.model, cfg.precision
    slots = {s.key: s for s in layout.slots}

    def rec(name: str, wkey: str, bkey: str | None) -> LinearPlan:
        w = slots[wkey]
        b = slots.get(bkey) if bkey else None
        n_out, k = w.shape
        return LinearPlan(name, wkey, bkey if b else None, w.offset, b.offset if b else -1,
                          getattr(p, w.tensor_class).frac_bits, getattr(p, b.tensor_class).frac_bits if b else None,
                          k, n_out, w.bits, w.word_bits)

    out = [rec("patch_embed", "backbone.patch_embed.proj.weight", "backbone.patch_embed.proj.bias")]
    for b in range(m.depth):
        pre = f"backbone.blocks.{b}."
        out += [rec(f"blocks.{b}.qkv", pre + "attn.qkv.weight", pre + "attn.qkv.bias"),
                rec(f"blocks.{b}.proj", pre + "attn.proj.weight", pre + "attn.proj.bias")]
        if m.is_moe(b):
            out += [rec(f"blocks.{b}.gate.{t}", pre + f"mlp.gate.{t}.w_gate", None) for t in range(len(m.tasks))]
            for e in range(m.num_experts):
                ep = pre + f"mlp.experts.{e}."
                out += [rec(f"blocks.{b}.experts.{e}.fc1", ep + "htoh4.weight", ep + "htoh4.bias"),
                        rec(f"blocks.{b}.experts.{e}.fc2", ep + "h4toh.weight", ep + "h4toh.bias")]
        else:
            out += [rec(f"blocks.{b}.fc1", pre + "mlp.fc1.weight", pre + "mlp.fc1.bias"),
                    rec(f"blocks.{b}.fc2", pre + "mlp.fc2.weight", pre + "mlp.fc2.bias")]
    return tuple(out)


@dataclass(frozen=True)
class AttentionCall:
    """One compute-unit call of a block's attention as run_images makes it: ``kind`` ``"scores"`` (head
    ``head``'s q . k), ``"av"`` (its probabilities x v) or ``"none"`` (no rows: the online softmax alone, one head
    only); ``passes``, the MAC-loop iterations its own work takes; ``ready`` / ``need``, the side job's bounds
    (it may run the heads below ``ready``, the call lasts until those below ``need`` are done); ``side_steps``,
    the online-softmax steps it runs; ``iterations``, its MAC loop's; ``pre``, its first tile was unpacked by
    the call before; ``prefetch``, the kind of the next call whose first tile its last pass unpacks ("": none;
    ``"proj"``: the block's proj, from DRAM)."""
    kind: str
    head: int
    passes: int
    ready: int
    need: int
    side_steps: int
    iterations: int
    pre: bool = False
    prefetch: str = ""


@dataclass(frozen=True)
class KernelPlan:
    """The derived hardware numbers of one config (see the module docstring).  Build with :meth:`from_config`."""

    config: Config
    layout: WeightLayout
    #: width (words) of the on-chip activation rows (``ROW_WORDS``): the widest row any step keeps, rounded up
    #: to a multiple of ``cu_in``
    row_words: int
    #: output tiles of the widest layer (``MAX_TILES``): ceil(max(3D, MLP hidden, expert hidden) / cu_out)
    max_tiles: int
    #: longest dot product the compute unit accumulates: patch, embedding, MLP and expert widths
    k_max: int
    #: word widths of the m_axi buffers and of the compute unit's operands
    pixel_word_bits: int
    weight_word_bits: int
    out_word_bits: int
    cu_word_bits: int
    #: debug taps in schedule order (tap id = index), their golden shapes and words per image
    taps: tuple[str, ...]
    tap_shapes: dict
    tap_words: dict
    #: weight-buffer offset (words) of every tensor, by state-dict key
    offsets: dict
    #: the linear layers in kernel order
    linears: tuple[LinearPlan, ...]
    #: entries of the numerics' ROM tables: ``exp2``, ``recip``, ``rsqrt``, ``gelu``
    table_entries: dict
    #: bits of one bus word of the weight port (``weight_beat_t``): the config's ``hardware.axi_width``
    weight_beat_bits: int
    #: weight words per bus word (``WORDS_PER_BEAT``): ``axi_width / weight_word_bits``, the layout's alignment
    words_per_beat: int
    #: bits of one element of the compute unit's matrices (``MATRIX_WORD_BITS``, ``matrix_word_t``): packed
    #: narrower than the weight word when the matrix classes are (``hls.layout.matrix_bits``)
    matrix_word_bits: int
    #: rows a bus word of matrix elements can wrap past in the compute unit's unpacking (``UNPACK_WRAPS``):
    #: ceil(matrix_per_beat / shortest dot product), 1 unless a layer's rows are shorter than a bus word
    unpack_wraps: int

    @classmethod
    def from_config(cls, cfg: Config) -> "KernelPlan":
        """The plan of ``cfg`` (cached by the config's digest and names: the plan is immutable)."""
        key = (cfg.digest(), cfg.name, cfg.precision.name)
        plan = _CACHE.get(key)
        if plan is None:
            if len(_CACHE) > 512:
                _CACHE.clear()
            plan = _CACHE[key] = cls._build(cfg)
        return plan

    @classmethod
    def _build(cls, cfg: Config) -> "KernelPlan":
        from edgemoe.golden.fixed_model import tap_schedule, tap_shapes, tap_type
        from edgemoe.golden.numerics.tables import exp2_table, gelu_table, recip_table, rsqrt_table

        m, p, h = cfg.model, cfg.precision, cfg.hardware
        layout = WeightLayout.of(cfg)
        # the widest row any step keeps: the layers' outputs and inputs; big's q / k / v columns then a head's
        # probabilities (padded to whole CU_IN chunks); logits' scores of every head of a block, each with the
        # first ATTN_P - 1 keys again
        row = max(3 * m.embed_dim + padded_keys(m, h), m.mlp_hidden, m.expert_hidden, m.patch_dim,
                  m.num_experts, m.num_heads * score_columns(m, h))
        wpb = h.axi_width // layout.word_bits
        if wpb * layout.word_bits != h.axi_width or wpb != layout.align_words:
            raise ValueError(f"hardware.axi_width {h.axi_width}: not a multiple of the {layout.word_bits}-bit "
                             f"weight words (the layout aligns tensors to {layout.align_words} words)")
        k_min = min(m.patch_dim, m.embed_dim, m.mlp_hidden, m.expert_hidden)
        mb = matrix_bits(p)
        taps = tuple(tap_schedule(m))
        shapes = dict(tap_shapes(m))
        # output words hold every tap's raw words: 32 bits unless a tap type is wider
        widest = max((t.bits + (0 if t.signed else 1)) for name in taps if (t := tap_type(name, p)) is not None)
        out_bits = 32 if widest <= 32 else 64
        if h.axi_width < out_bits:   # the activations port's bus word holds whole output words
            raise ValueError(f"hardware.axi_width {h.axi_width}: narrower than the {out_bits}-bit output words "
                             f"of the activations port")
        return cls(
            config=cfg, layout=layout,
            row_words=-(-row // h.cu_in) * h.cu_in,
            max_tiles=-(-max(3 * m.embed_dim, m.mlp_hidden, m.expert_hidden) // h.cu_out),
            k_max=max(m.patch_dim, m.embed_dim, m.mlp_hidden, m.expert_hidden),
            pixel_word_bits=container_bits(p.pixel.bits),
            weight_word_bits=layout.word_bits,
            out_word_bits=out_bits,
            # every word a row buffer holds, signed: activations, q / k / v, gate logits, pixels and a head's
            # probabilities (unsigned: one bit more, so 1.0 of a <16,0> unsigned probability does not wrap)
            cu_word_bits=max(p.act.bits, p.qkv.bits, p.gate_logit.bits, p.pixel.bits + 1,
                             p.attn_prob.bits + (0 if p.attn_prob.signed else 1)),
            taps=taps, tap_shapes=shapes,
            tap_words={name: math.prod(shape) for name, shape in shapes.items()},
            offsets={s.key: s.offset for s in layout.slots},
            linears=_linears(cfg, layout),
            table_entries={"exp2": len(exp2_table(p.table_frac_bits, p.exp_table_bits)),
                           "recip": len(recip_table(p.table_frac_bits, p.recip_table_bits)),
                           "rsqrt": len(rsqrt_table(p.table_frac_bits, p.rsqrt_table_bits)),
                           "gelu": len(gelu_table(p.gelu_table, p.gelu_step_log2, p.gelu_range))},
            weight_beat_bits=h.axi_width, words_per_beat=wpb, matrix_word_bits=mb,
            unpack_wraps=-(-(h.axi_width // mb) // k_min),
        )

    # --- taps ------------------------------------------------------------------------------
    @property
    def tap_id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.taps)}

    # --- the activations port: bus words, each region from one -------------------------------------
    @property
    def out_per_beat(self) -> int:
        """``OUT_PER_BEAT``: output words per bus word of the activations port (``act_beat_t``,
        ``hardware.axi_width`` bits): axi_width / out_word_bits, a power of two."""
        return self.config.hardware.axi_width // self.out_word_bits

    def _region(self, name: str, shape: tuple, writer: str) -> ActRegion:
        step = name.rsplit(".", 1)[-1]
        parts = shape[0] if step in PER_HEAD_STEPS else 1
        inner = shape[1:] if step in PER_HEAD_STEPS else shape
        rows, cols = (inner[0], math.prod(inner[1:])) if len(inner) == 2 else (1, math.prod(inner))
        return ActRegion(name, tuple(shape), parts, rows, cols, self.out_per_beat, writer)

    @functools.cached_property
    def tap_regions(self) -> dict[str, ActRegion]:
        """Every debug tap's region of the activations buffer (:class:`ActRegion`), in schedule order: the one
        place the kernel's, the host's and the tests' tap layouts come from."""
        return {name: self._region(name, self.tap_shapes[name],
                                   "packed" if name.rsplit(".", 1)[-1] in PACKED_STEPS else "write_rows")
                for name in self.taps}

    @functools.cached_property
    def token_region(self) -> ActRegion:
        """The output tokens' region (a TAP_NONE call): N x D words from ``x`` (``TOKEN_BEATS`` bus words)."""
        m = self.config.model
        return self._region("tokens", (m.num_tokens, m.embed_dim), "write_rows")

    def region(self, tap: str | None) -> ActRegion:
        """The region of tap ``tap`` (a name), or of the output tokens (None)."""
        return self.token_region if tap is None else self.tap_regions[tap]

    @property
    def head_beats(self) -> dict[str, int]:
        """Bus words of one head's part of each :data:`PER_HEAD_STEPS` tap (``SCORE_HEAD_BEATS``: a head's N x N
        scores; ``SM_HEAD_BEATS``: its N softmax max or 1/sum words), the same in every block."""
        return {step: self.tap_regions[f"blocks.0.{step}"].part_beats for step in PER_HEAD_STEPS}

    @property
    def max_tap_words(self) -> int:
        """Words per image of the activations buffer in a tap call (``MAX_TAP_WORDS``, ``MAX_TAP_BEATS`` bus
        words): the largest tap region, whole bus words; image i's region starts at word i x this."""
        return max(r.stride for r in self.tap_regions.values())

    def image_stride(self, tap_call: bool) -> int:
        """Words from one image's region of the activations buffer to the next: the output tokens' whole bus
        words in an inference call (``TOKEN_BEATS``), :attr:`max_tap_words` in a tap call."""
        return self.max_tap_words if tap_call else self.token_region.stride

    @property
    def write_bank_reads(self) -> int:
        """The most reads of one bank of a row buffer (``cu_in`` cyclic banks) by one bus word ``write_rows``
        packs, over every region it writes (:func:`beat_bank_reads`; rows of DIM, 3 DIM or MLP_HIDDEN words,
        multiples of cu_in): with OUT_PER_BEAT <= cu_in, 1 when every row is whole bus words, else 2 (a bus word
        across a row end: the rest of one row, the start of the next); more when OUT_PER_BEAT > cu_in."""
        ci = self.config.hardware.cu_in
        return max(beat_bank_reads(r.rows, r.cols, r.out_per_beat, ci) for r in self._write_rows_regions())

    def _write_rows_regions(self) -> list[ActRegion]:
        return [self.token_region, *(r for r in self.tap_regions.values() if r.writer == "write_rows")]

    @property
    def write_rows_aligned(self) -> bool:
        """Every region write_rows writes has rows of whole bus words (cols a multiple of OUT_PER_BEAT; all the
        presets): its bus word is columns [cb x OUT_PER_BEAT, +OUT_PER_BEAT) of one row, (r, cb) counters, and
        lane j's column is j modulo OUT_PER_BEAT; otherwise each lane has its own (r, c) counters, a bus word
        may cross a row end and the last one of a region is part zeros."""
        return all(r.cols % r.out_per_beat == 0 for r in self._write_rows_regions())

    @property
    def max_write_beats(self) -> int:
        """Bus words of the largest region write_rows writes (its loop's LOOP_TRIPCOUNT)."""
        return max(r.part_beats for r in self._write_rows_regions())

    @property
    def max_pack_words(self) -> int:
        """Words of the largest part pack_rows writes (a head's scores or the gate logits)."""
        return max((r.part_words for r in self.tap_regions.values() if r.name.rsplit(".", 1)[-1] in
                    ("scores", "gate_logits")), default=1)

    @property
    def pix_beats(self) -> int:
        """``PIX_BEATS``: bus words of output words an image word's pixels fill, IMAGE_LANES / OUT_PER_BEAT (1 when
        fewer pixels than a bus word's words: then OUT_PER_BEAT / IMAGE_LANES image words fill one)."""
        return max(1, self.image_lanes // self.out_per_beat)

    @property
    def pix_ii(self) -> int:
        """The pixels tap's II (PIX, an image word an iteration): one bus word written a cycle, PIX_BEATS."""
        return self.pix_beats

    @property
    def write_ii(self) -> int:
        """``WRITE_II``: the II of write_rows' one loop (a bus word per iteration): its busiest bank's reads over
        :data:`BANK_PORTS` ports, ceil(write_bank_reads / 2); one loop serves every region, so the worst one
        sets it.  1 in every preset."""
        return -(-self.write_bank_reads // BANK_PORTS)

    @property
    def block_taps(self) -> dict[str, list[int]]:
        """``TAP_<STEP>`` -> tap id of that step in every block (-1 where the block has no such tap)."""
        ids = self.tap_id
        return {f"TAP_{s.upper()}": [ids.get(f"blocks.{b}.{s}", -1) for b in range(self.config.model.depth)]
                for s in BLOCK_STEPS}

    # --- weight offsets ----------------------------------------------------------------------
    @property
    def block_offsets(self) -> dict[str, list[int]]:
        """``OFF_<TENSOR>`` -> offset of that tensor in every block (-1 where absent)."""
        return {name: [self.offsets.get(f"backbone.blocks.{b}.{suffix}", -1) for b in range(self.config.model.depth)]
                for name, suffix in BLOCK_TENSORS.items()}

    @property
    def gate_offsets(self) -> list[list[int]]:
        """[block][task] offset of the gate's weights (-1 in dense blocks)."""
        m = self.config.model
        return [[self.offsets.get(f"backbone.blocks.{b}.mlp.gate.{t}.w_gate", -1) for t in range(len(m.tasks))]
                for b in range(m.depth)]

    @property
    def expert_offsets(self) -> dict[str, list[list[int]]]:
        """``OFF_EXP_<TENSOR>`` -> [block][expert] offset (-1 in dense blocks)."""
        m = self.config.model
        return {name: [[self.offsets.get(f"backbone.blocks.{b}.mlp.experts.{e}.{suffix}", -1)
                        for e in range(m.num_experts)] for b in range(m.depth)]
                for name, suffix in EXPERT_TENSORS.items()}

    def linear(self, name: str) -> LinearPlan:
        """The linear layer called ``name`` (see :class:`LinearPlan`)."""
        for rec in self.linears:
            if rec.name == name:
                return rec
        raise KeyError(f"no linear layer {name!r} in config {self.config.name!r}")

    # --- the weight port: bus words ------------------------------------------------------------
    @property
    def matrix_per_beat(self) -> int:
        """Matrix elements per bus word (``MATRIX_PER_BEAT``)."""
        return self.weight_beat_bits // self.matrix_word_bits

    @property
    def matrix_per_word(self) -> int:
        """Matrix elements per weight word (``MATRIX_PER_WORD``): 2 for 8-bit matrices in 16-bit words."""
        return self.weight_word_bits // self.matrix_word_bits

    def tile_spans(self, lin: LinearPlan) -> list[tuple[tuple[int, int, int] | None, tuple[int, int, int]]]:
        """Per output tile of ``lin`` (``cu_out`` rows, the last one clamped): the :func:`beat_span` of its
        biases (None without bias; in weight words) and of its weight rows (in matrix elements), as the
        kernel's loader reads them."""
        co, wpb, mpb = self.config.hardware.cu_out, self.words_per_beat, self.matrix_per_beat
        out = []
        for row0 in range(0, lin.n_out, co):
            rows = min(co, lin.n_out - row0)
            bias = beat_span(lin.bias_offset + row0, rows, wpb) if lin.has_bias else None
            start = lin.weight_offset * self.matrix_per_word + row0 * lin.k
            out.append((bias, beat_span(start, rows * lin.k, mpb)))
        return out

    @property
    def tile_beats(self) -> int:
        """Bus words of the largest tile, biases and weights (``TILE_BEATS``): the depth of the compute unit's
        weight FIFO, which holds one tile so the loader runs one tile ahead of the compute."""
        return max((b[1] if b else 0) + w[1] for lin in self.linears for b, w in self.tile_spans(lin))

    @property
    def max_tile_weight_beats(self) -> int:
        """Bus words of the largest tile's weights (the LOOP_TRIPCOUNT of the loader's and unpacker's loops)."""
        return max(w[1] for lin in self.linears for _, w in self.tile_spans(lin))

    @property
    def max_tile_bias_beats(self) -> int:
        """Bus words of the largest tile's biases."""
        return max((b[1] for lin in self.linears for b, _ in self.tile_spans(lin) if b), default=1)

    @property
    def max_n_out(self) -> int:
        """Outputs of the widest linear layer: the compute unit's layer bias buffer (rows of whole bus words)."""
        return max(lin.n_out for lin in self.linears)

    @property
    def layer_bias_banks(self) -> int:
        """Banks of that buffer: the unpack writes WORDS_PER_BEAT consecutive biases per cycle, the epilogue
        reads EPI_LANES: lcm of the two."""
        return math.lcm(self.words_per_beat, self.epilogue_lanes)

    def layer_spans(self, lin: LinearPlan) -> tuple[tuple[int, int, int] | None, tuple[int, int, int]]:
        """The :func:`beat_span` of ``lin``'s biases (None without) and of its whole weight matrix: what the
        loader reads, one burst each, when every weight row is whole bus words (:attr:`weight_rows_aligned`)."""
        bias = beat_span(lin.bias_offset, lin.n_out, self.words_per_beat) if lin.has_bias else None
        return bias, beat_span(lin.weight_offset * self.matrix_per_word, lin.n_out * lin.k, self.matrix_per_beat)

    def layer_burst(self, lin: LinearPlan) -> tuple[int, int]:
        """(first beat, beats) of the one burst the loader reads for ``lin`` when :attr:`weight_rows_aligned`:
        its biases and then its whole matrix, which the layout puts back to back (:func:`tensor_order`)."""
        bias, w = self.layer_spans(lin)
        if bias is None:
            return w[0], w[1]
        if bias[0] + bias[1] != w[0] or bias[2] or w[2]:
            raise AssertionError(f"{lin.name}: biases at beats {bias[:2]} do not end where the matrix starts ({w[0]})")
        return bias[0], bias[1] + w[1]

    @property
    def max_layer_burst_beats(self) -> int:
        return max(self.layer_burst(lin)[1] for lin in self.linears)

    def prefix_parts(self, lin: LinearPlan) -> tuple[int, int]:
        """(bias bus words, tile 0's weight bus words) at the start of ``lin``'s one burst (:meth:`layer_burst`):
        what the compute unit unpacks in ``lin``'s pass 0, or, prefetched, what the call before streams and
        unpacks for it (the kernel's ``next_layer``), so that ``lin``'s call starts with its MACs; (0, 0) when
        rows are not whole bus words (no prefetch from DRAM)."""
        if not self.weight_rows_aligned:
            return 0, 0
        bias, _ = self.layer_spans(lin)
        return (bias[1] if bias else 0), self.tile_spans(lin)[0][1][1]

    def prefix_beats(self, lin: LinearPlan) -> int:
        """Bus words of :meth:`prefix_parts`: the next_layer's ``beats``."""
        return sum(self.prefix_parts(lin))

    def prefix_steps(self, lin: LinearPlan) -> int:
        """MAC-loop iterations the unpack of those bus words takes: a bias bus word a step, a weight bus word
        UNPACK_STEPS (the unpack steps of ``lin``'s pass 0)."""
        bias, tile0 = self.prefix_parts(lin)
        return bias + tile0 * self.unpack_steps

    @property
    def max_prefix_beats(self) -> int:
        """``LOAD_NEXT``'s LOOP_TRIPCOUNT: the most prefix bus words of any layer (1 at least)."""
        return max(1, *(self.prefix_beats(lin) for lin in self.linears))

    @property
    def weight_beats(self) -> int:
        """Bus words of the whole weight buffer (``WEIGHT_BEATS``)."""
        return self.layout.total_words // self.words_per_beat

    # --- the compute unit's epilogue ----------------------------------------------------------------
    @property
    def epilogue_lanes(self) -> int:
        """``EPI_LANES``: outputs the compute unit's epilogue finishes per cycle.  A row's CU_OUT sums are
        finished over the next ``epilogue_groups`` MAC iterations, which must not outlast the shortest row
        (the fewest k-chunks, ceil(k / cu_in), of any layer, A*V's K_PAD / cu_in included; the score pass has
        no epilogue): ceil(cu_out / that)."""
        h = self.config.hardware
        shortest = min(min(-(-lin.k // h.cu_in) for lin in self.linears), self.k_pad // h.cu_in)
        return -(-h.cu_out // shortest)

    @property
    def epilogue_groups(self) -> int:
        """``EPI_GROUPS``: MAC iterations the epilogue takes for one row's CU_OUT outputs, ceil(cu_out /
        epilogue_lanes), at most the shortest row's k-chunks."""
        return -(-self.config.hardware.cu_out // self.epilogue_lanes)

    @property
    def unpack_steps(self) -> int:
        """``UNPACK_STEPS``: MAC iterations the compute unit's unpack takes per bus word of weights.  It runs
        inside the MAC loop, whose iterations read CU_IN consecutive words of every tile row, one from each of
        w's CU_IN banks per row; so that a bank also takes at most one write, an iteration writes at most
        CU_IN consecutive (o, k): ceil(MATRIX_PER_BEAT / cu_in) steps of :attr:`unpack_fields`."""
        return -(-self.matrix_per_beat // self.config.hardware.cu_in)

    @functools.cached_property
    def weight_rows_aligned(self) -> bool:
        """Every weight row of every linear layer is whole bus words (``k % MATRIX_PER_BEAT == 0``; tensors start
        on a bus word), so each tile starts on one and a bus word's field j always lands in column
        ``k0 + j`` of one row: the unpack's write of a field goes to a fixed bank of the tile (a row select
        only), with no row wraps and no skip; otherwise it is a crossbar from every field to every bank."""
        mpb = self.matrix_per_beat
        return all(lin.k % mpb == 0 for lin in self.linears) and all(
            w[2] == 0 for lin in self.linears for _, w in self.tile_spans(lin))

    @property
    def unpack_fields(self) -> int:
        """``UNPACK_FIELDS``: a weight bus word's fields the unpack writes per step, ceil(MATRIX_PER_BEAT /
        UNPACK_STEPS) <= cu_in."""
        return -(-self.matrix_per_beat // self.unpack_steps)

    # --- the compute unit's MAC pipeline: all a layer's passes in one --------------------------------
    @property
    def pass_gap(self) -> int:
        """``PASS_GAP``: iterations at least between a tile half's last access by one pass of the compute unit's
        MAC pipeline and its first by the next (pass p's unpack writes a half that pass p + 1's MACs read, and
        pass p + 1's unpack writes the half that pass p's MACs, and their last row's epilogue, read).  The MAC
        loop's DEPENDENCE pragmas on the halves state this distance, so the scheduler orders a write before a
        read (and a read before a write) PASS_GAP iterations later: a BRAM read's latency plus a write's
        (``edgemoe.perf.primitives.OP_LATENCY`` bram + store, which the loop model checks as the recurrence)."""
        return 3

    @property
    def pass_tail(self) -> int:
        """``PASS_TAIL``: iterations a pass runs after its unpack's last step (the write-to-read gap)."""
        return self.pass_gap - 1

    @property
    def pass_lead(self) -> int:
        """``PASS_LEAD``: iterations a pass runs before its unpack's first step (the read-to-write gap).  With a
        bias per tile (rows not whole bus words) the half's biases are also read by the epilogue of the
        previous pass's last row, over the pass's first ``epilogue_groups`` iterations."""
        return self.pass_gap - 1 + (0 if self.weight_rows_aligned else self.epilogue_groups)

    @property
    def pass_min(self) -> int:
        """The fewest iterations a pass that unpacks a tile runs: PASS_LEAD + one unpack step + PASS_TAIL.  A
        row's epilogue in one tile and the same row's in the next are a whole pass apart (the MACs run one
        iteration a chunk from the pass's start), so the CU_RESID row sum's read-modify-write of x_sum[row]
        recurs at this distance or more (the MAC loop's DEPENDENCE on x_sum states it)."""
        return self.pass_lead + 1 + self.pass_tail

    def mac_passes(self, lin: LinearPlan, rows: float, pre: bool = False, next_steps: int = 0) -> list[float]:
        """MAC-loop iterations of each pass of the compute unit over linear layer ``lin`` and ``rows`` rows:
        pass p < tiles runs tile p - 1's MACs, rows x k-chunks iterations (none in pass 0), and unpacks tile p
        (a bias bus word per iteration, a weight bus word per UNPACK_STEPS; with rows of whole bus words the
        layer's biases all in pass 0) PASS_LEAD iterations after the pass's start and PASS_TAIL before its end,
        taking the longer of the two; pass ``tiles`` runs the last tile's MACs and its last row's epilogue
        (EPI_GROUPS iterations more).  One pipeline runs them all.  ``pre``: the call before unpacked the
        biases and tile 0 (no pass 0); ``next_steps``: the last pass also unpacks the next call's
        (:meth:`prefix_steps`), between PASS_LEAD and PASS_TAIL."""
        macs = rows * -(-lin.k // self.config.hardware.cu_in)
        spans = self.tile_spans(lin)
        if self.weight_rows_aligned:   # the layer's biases all in pass 0, ahead of tile 0's weights
            steps = [self.prefix_steps(lin) if p == 0 else w[1] * self.unpack_steps for p, (_, w) in enumerate(spans)]
        else:
            steps = [(b[1] if b else 0) + w[1] * self.unpack_steps for b, w in spans]
        passes = self._passes(rows, macs, steps, self.epilogue_groups)[1 if pre else 0:]
        if next_steps:
            passes[-1] = max(passes[-1], self.pass_lead + next_steps + self.pass_tail)
        return passes

    def _passes(self, rows: float, macs: float, steps: list[int], epilogue: int) -> list[float]:
        """The passes of one MAC pipeline: pass p runs tile p - 1's ``macs`` iterations (none in pass 0) and
        unpacks tile p in ``steps[p]`` steps between PASS_LEAD and PASS_TAIL, the longer of the two; the last
        pass runs the last tile's MACs and ``epilogue`` iterations more."""
        unpack = [self.pass_lead + s + self.pass_tail for s in steps]
        return [max(macs if p > 0 else 0, u) for p, u in enumerate(unpack)] + [macs + epilogue if rows > 0 else 1]

    @functools.cached_property
    def max_mac_iterations(self) -> int:
        """The MAC loop's iterations in the longest call (every token's row): its LOOP_TRIPCOUNT."""
        n = self.config.model.num_tokens
        return int(max(max(sum(self.mac_passes(lin, n)) for lin in self.linears),
                       *(c.iterations for c in self.attention_calls())))

    # --- the elementwise steps ---------------------------------------------------------------------
    @property
    def elementwise_lanes(self) -> int:
        """``EW_LANES``: words of a row the elementwise loops that copy or clear (the expert gather, the MoE
        accumulator's clear) handle per cycle: ``cu_in``, the row buffers' banks (cyclic CU_IN on the column),
        so a chunk of consecutive columns hits every bank once.  It divides every row (the config checks
        ``cu_in`` divides ``embed_dim``)."""
        return self.config.hardware.cu_in

    @property
    def cast_lanes(self) -> int:
        """``CAST_LANES``: columns per cycle of the elementwise loops that cast every column (the embedding, the
        MoE accumulator's cast and residual add; the LayerNorm has :attr:`ln_lanes`): gcd(cu_in,
        :data:`CAST_LANES`), so it divides EW_LANES and a chunk still hits distinct banks.  Fewer than
        EW_LANES because each lane is its own casts; these loops run once a block or less, so more lanes
        would buy little (``edgemoe perf --resources`` gives the figures)."""
        return math.gcd(self.config.hardware.cu_in, CAST_LANES)

    @property
    def ln_lanes(self) -> int:
        """``LN_LANES``: columns per cycle of the LayerNorm's pipeline (each lane its casts and its three products):
        gcd(cu_in, :data:`LN_LANES`), so a chunk meets distinct banks of the row buffers (cyclic CU_IN) and
        divides DIM."""
        return math.gcd(self.config.hardware.cu_in, LN_LANES)

    @property
    def ln_chunks(self) -> int:
        """``LN_CHUNKS``: iterations of the LayerNorm's pipeline a row: DIM / LN_LANES."""
        return self.config.model.embed_dim // self.ln_lanes

    @property
    def ln_skew(self) -> int:
        """``LN_SKEW``: rows between the LayerNorm's centring of a row and its normalisation, the fewest (at
        least 2) that put a row's 1/std :data:`LN_HANDOFF` iterations or more before its first use:
        (LN_SKEW - 1) x LN_CHUNKS + 1 iterations.  Its buffer of centred rows holds LN_SKEW + 1 of them."""
        return max(2, 1 + -(-(LN_HANDOFF - 1) // self.ln_chunks))

    @property
    def mac_chain(self) -> int:
        """``MAC_CHAIN``: products of a MAC output summed in one chain of DSP post-adders (the largest divisor
        of cu_in up to :data:`MAC_CHAIN`); a dot product is CU_IN / MAC_CHAIN chains whose sums meet in
        fabric adders.  The chain stays in the DSPs when a product fits one DSP48E2 and the accumulator its
        48-bit P (:func:`edgemoe.perf.resources.mac_chain_in_dsps` says whether it does)."""
        ci = self.config.hardware.cu_in
        return max(d for d in range(1, min(ci, MAC_CHAIN) + 1) if ci % d == 0)

    @property
    def ln_param_beats(self) -> int:
        """``LN_PARAM_BEATS``: bus words of a LayerNorm's gamma, and of its beta (every tensor starts on a bus
        word)."""
        return -(-self.config.model.embed_dim // self.words_per_beat)

    @property
    def cls_beats(self) -> int:
        """``CLS_BEATS``: bus words of the cls token."""
        return -(-self.config.model.embed_dim // self.words_per_beat)

    @property
    def ln_words(self) -> int:
        """``LN_WORDS``: words of every LayerNorm's gamma and beta, kept on chip (``ln_par``): LayerNorm l (block
        l // 2's norm1, norm2) has gamma from word 2 l x LN_PARAM_BEATS x WORDS_PER_BEAT on, beta
        LN_PARAM_BEATS bus words after."""
        return 2 * 2 * self.config.model.depth * self.ln_param_beats * self.words_per_beat

    @functools.cached_property
    def const_beats(self) -> int:
        """``CONST_BEATS``: bus words of the constants the kernel reads once per call, one burst from the cls
        token's offset on: the cls token (CLS_BEATS), the position table (POS_BEATS), then every LayerNorm's
        gamma and beta (LN_PARAM_BEATS each), block by block (norm1, norm2), back to back in the layout
        (:func:`edgemoe.hls.layout.tensor_order`; checked here)."""
        wpb, m = self.words_per_beat, self.config.model
        at = self.offsets["backbone.cls_token"]
        if at % wpb:
            raise ValueError(f"the cls token starts at word {at % wpb} of a bus word, not on one")
        expect = [("backbone.cls_token", self.cls_beats), ("backbone.pos_embed", self.pos_beats)]
        for b in range(m.depth):
            for ln in ("norm1", "norm2"):
                expect += [(f"backbone.blocks.{b}.{ln}.weight", self.ln_param_beats),
                           (f"backbone.blocks.{b}.{ln}.bias", self.ln_param_beats)]
        for key, beats in expect:
            if self.offsets[key] != at:
                raise ValueError(f"the weight layout does not put {key} at word {at} of the constants' burst")
            at += beats * wpb
        return (at - self.offsets["backbone.cls_token"]) // wpb

    @property
    def ln_param_banks(self) -> int:
        """Banks of the LayerNorm's gamma / beta (cyclic): read_words writes WORDS_PER_BEAT consecutive words
        per cycle, LN_OUT reads LN_LANES: lcm of the two."""
        return math.lcm(self.words_per_beat, self.ln_lanes)

    @property
    def moe_acc_banks(self) -> int:
        """Banks of ``moe_acc`` on the column (cyclic): the clear handles EW_LANES consecutive columns per cycle
        from a multiple of EW_LANES (a multiple of CAST_LANES, the cast's), the epilogue read-modify-writes
        EPI_LANES consecutive columns from anywhere; consecutive columns are distinct banks while there are no
        more of them than banks: the fewest multiple of EW_LANES that is at least EPI_LANES."""
        ew = self.elementwise_lanes
        return -(-self.epilogue_lanes // ew) * ew

    @property
    def moe_batch(self) -> int:
        """``MOE_BATCH``: images of an inference call whose MoE blocks run together (``hardware.moe_batch``): the
        kernel runs a call's images in groups of this many, each active expert's weights streamed once per group
        and MoE block for the queued rows of all of them."""
        return self.config.hardware.moe_batch

    @property
    def moe_rows(self) -> int:
        """``MOE_ROWS``: rows of the group's MoE state (``moe_acc``, ``x_keep``, ``h_keep``): N_TOKENS an image;
        an expert queue entry is a row, image x N_TOKENS + token (16 bits: the config checks it fits)."""
        return self.moe_batch * self.config.model.num_tokens

    @property
    def moe_blocks(self) -> tuple[int, ...]:
        """``MOE_BLOCK``: the MoE blocks in order; the kernel's segments end at each one's routing."""
        m = self.config.model
        return tuple(b for b in range(m.depth) if m.is_moe(b))

    @property
    def moe_acc_bits(self) -> int:
        """``MOE_ACC_BITS``: bits that hold a MoE sum exactly in hardware: the sum of TOP_K products of an act word
        (the expert's cast output) and a gate score, bounded as golden bounds every accumulator
        (:func:`edgemoe.golden.numerics.widths.accumulator_bound`), plus the sign."""
        from edgemoe.golden.numerics.widths import accumulator_bound

        p, m = self.config.precision, self.config.model
        frac = p.act.frac_bits + p.gate_score.frac_bits
        return accumulator_bound(p.act, p.gate_score, m.top_k, None, frac).bit_length() + 1

    # --- routing (the MoE gate) -------------------------------------------------------------------
    #: ``GATE_SKEW``: token slots the routing pipeline's queue stage trails its top-k stage by (the exps and the
    #: scores one slot behind the top-k, the queue writes one behind those)
    gate_skew = 2

    @property
    def gate_lanes(self) -> int:
        """``GATE_LANES``: tokens a slot of the routing pipeline takes side by side, each lane its own top-k list,
        exp and sum: 2 where the queue stage's entries of a slot (GATE_LANES x TOP_K, one a cycle) fit the slot's
        EXPERTS iterations, else 1. Two lanes read two logits a cycle, both of one bank's ports."""
        m = self.config.model
        return 2 if 2 * m.top_k <= m.num_experts else 1

    @property
    def gate_slots(self) -> int:
        """``GATE_SLOTS``: token slots of the routing pipeline, ceil(N_TOKENS / GATE_LANES)."""
        return -(-self.config.model.num_tokens // self.gate_lanes)

    @property
    def gate_steps(self) -> int:
        """``GATE_STEPS``: iterations of the kernel's routing pipeline (``GATE``): ``GATE_SLOTS + GATE_SKEW`` token
        slots of ``EXPERTS`` iterations, or, where that is fewer, the moe_acc clear it carries
        (``N_TOKENS x DIM / EW_LANES`` chunks)."""
        m = self.config.model
        return max((self.gate_slots + self.gate_skew) * m.num_experts,
                   m.num_tokens * (m.embed_dim // self.elementwise_lanes))

    @property
    def expert_bits(self) -> int:
        """Bits of an expert's index (``expert_t``)."""
        return max(1, (self.config.model.num_experts - 1).bit_length())

    @property
    def gate_sum_bits(self) -> int:
        """Bits of the exact sum of a token's ``EXPERTS`` exp words (``gate_sum_t``, unsigned)."""
        return self.config.precision.exp.bits + (self.config.model.num_experts - 1).bit_length()

    @property
    def cu_weight_bits(self) -> int:
        """Bits of the compute unit's weight words (``cu_weight_t``): a matrix element, or, in the attention's
        passes, a key or value word (``qkv_t``)."""
        return max(self.matrix_word_bits, self.config.precision.qkv.bits)

    # --- attention: its two products on the compute unit, the softmax beside it ------------------
    @property
    def attn_groups(self) -> int:
        """``ATTN_GROUPS``: groups of ``attn_parallel`` queries, ceil(N / P); a query's online-softmax state is
        revisited every ``attn_groups`` iterations of the kernel's SM_STEPS loop (the recurrence's distance)."""
        return -(-self.config.model.num_tokens // self.config.hardware.attn_parallel)

    @property
    def score_cols(self) -> int:
        """``SCORE_COLS``: columns of a head's score rows: the N keys, then keys 0..ATTN_P - 2 again, so the
        softmax's lane p reads key column s + p of its query without a wrap (ATTN_P distinct banks).  The
        compute unit's score pass forms them as that many outputs (its key rows wrap past N)."""
        return score_columns(self.config.model, self.config.hardware)

    @property
    def prob_col(self) -> int:
        """``PROB_COL``: the column of ``big`` where a head's probabilities start (after the q / k / v columns,
        a multiple of cu_in: the config checks cu_in divides embed_dim)."""
        return 3 * self.config.model.embed_dim

    @property
    def k_pad(self) -> int:
        """``K_PAD``: A*V's dot product length as the compute unit runs it: the N keys less the folded ones
        (:attr:`av_fold`), rounded up to whole CU_IN chunks; the probabilities past key N are zeros (the softmax
        writes them), so the padded products add 0."""
        return padded_keys(self.config.model, self.config.hardware)

    @property
    def av_fold(self) -> int:
        """``AV_FOLD``: the keys past K_PAD (0 or up to :data:`AV_FOLD_MAX`), which A*V adds in its last chunk:
        their probabilities kept by the softmax in ``p_tail``, their value words by the unpack in ``v_tail``,
        CU_OUT x AV_FOLD more products in the MAC pipeline instead of a chunk of CU_IN a row."""
        return folded_keys(self.config.model, self.config.hardware)

    @property
    def prob_lanes(self) -> int:
        """``PROB_LANES``: probabilities the softmax's PROBS loop forms per cycle (an exp and a product each):
        the largest divisor of cu_in that is at most half of it (so a chunk never straddles the padded row),
        a row's probabilities in about 2 x K_PAD / CU_IN iterations. PROBS runs between the compute unit's
        calls, nothing beside it, so each of its iterations adds to the block's; CU_IN lanes would halve them
        at three multipliers and an exp's logic a lane more (``edgemoe perf --resources``)."""
        ci = self.config.hardware.cu_in
        return max(d for d in range(1, max(1, ci // 2) + 1) if ci % d == 0)

    @property
    def sm_pace(self) -> int:
        """``SM_PACE``: MAC iterations per step of the compute unit's side job, the online softmax: a query's state
        comes round every ATTN_GROUPS steps, so a step every ceil(SM_RECURRENCE / ATTN_GROUPS) iterations keeps
        its recurrence off the MAC pipeline's II (1 on every preset)."""
        return max(1, -(-SM_RECURRENCE // self.attn_groups))

    @property
    def prob_chunks(self) -> int:
        """``PROB_CHUNKS``: PROBS iterations a row: the chunks of PROB_LANES keys that hold the N real ones less the
        folded (ceil((N - AV_FOLD) / PROB_LANES)); the padded keys past them to K_PAD are zeroed, and the folded
        keys' probabilities formed (AV_FOLD lanes more), in the row's last chunk."""
        return -(-(self.config.model.num_tokens - self.av_fold) // self.prob_lanes)

    @property
    def prob_pad_lanes(self) -> int:
        """``PROB_PAD_LANES``: the padded keys past the last chunk, K_PAD - PROB_CHUNKS x PROB_LANES (< CU_IN), zeroed
        beside that chunk: with it they are one window of CU_IN consecutive columns of big, distinct banks."""
        return self.k_pad - self.prob_chunks * self.prob_lanes

    @property
    def prob_lead(self) -> int:
        """``PROB_LEAD``: rows PROBS forms a row's 1/sum ahead of that row's probabilities (the fewest, at least 1,
        that put :data:`PROB_HANDOFF` iterations or more between them: PROB_LEAD x PROB_CHUNKS)."""
        return max(1, -(-PROB_HANDOFF // self.prob_chunks))

    def attention_passes(self, kind: str, rows: float) -> list[float]:
        """MAC-loop iterations of each pass of the compute unit's attention calls over ``rows`` query rows, as
        :meth:`mac_passes`: ``"scores"`` (q . k of one head: HEAD_DIM / CU_IN chunks a row, SCORE_COLS outputs,
        a key row's HEAD_DIM / CU_IN unpack steps per output; each row's scores are cast and stored in its last
        MAC iteration, no epilogue) or ``"av"`` (probabilities x v: K_PAD / CU_IN chunks a row, HEAD_DIM
        outputs, N_TOKENS x ceil(the tile's outputs / CU_IN) unpack steps a tile, the epilogue after the last row)."""
        h = self.config.hardware
        k, _, steps = self.attention_shape(kind)
        epilogue = 0 if kind == "scores" else self.epilogue_groups
        return self._passes(rows, rows * (k // h.cu_in), steps, epilogue)

    def _own_head_gap(self, lead: int) -> float:
        """The fewest iterations between a score pass's store of a score of its own head and the side job's read
        of it, were the side job to start on that head when the MACs reach tile ``lead`` and run on at a step
        every SM_PACE iterations (it can only start later): every read the pass's iterations hold (after them the
        call runs on only for earlier heads' steps). Inf when no read falls inside the pass."""
        m, h = self.config.model, self.config.hardware
        n, P, G, pace = m.num_tokens, h.attn_parallel, self.attn_groups, self.sm_pace
        ch = m.head_dim // h.cu_in
        parts = self.attention_passes("scores", n)[1:]    # the MAC tiles' passes, t = 0..
        starts = [sum(parts[:t]) for t in range(len(parts))]
        if lead >= len(parts):
            return math.inf
        begin, end, gap, k = starts[lead], sum(parts), math.inf, 0
        while begin + k * pace < end and k < n * G:
            ss, sg = divmod(k, G)
            for p in range(P):
                q, c = sg * P + p, ss + p
                if q < n:
                    store = starts[c // h.cu_out] + q * ch + ch - 1
                    gap = min(gap, begin + k * pace - store)
            k += 1
        return gap

    @functools.cached_property
    def sm_lead_tiles(self) -> int:
        """``SM_LEAD_TILES``: the tiles a score pass runs before the side job may start on the pass's own head
        (the first whose reads trail the stores by :data:`SM_LEAD_GAP` iterations or more; the pass's tile count,
        never, when none does: the side job then waits for the call after the pass)."""
        tiles = len(self.attention_passes("scores", self.config.model.num_tokens)) - 1
        return next((L for L in range(1, tiles) if self._own_head_gap(L) >= SM_LEAD_GAP), tiles)

    @functools.cached_property
    def sm_lead_gap(self) -> int:
        """The DEPENDENCE distance of sm_s in the MAC loop: the fewest iterations from a score's store to the
        side job's read of it in the same call (:meth:`_own_head_gap` at :attr:`sm_lead_tiles`), capped at the
        longest call."""
        gap = self._own_head_gap(self.sm_lead_tiles)
        return int(min(gap, self.max_mac_iterations))

    def attention_calls(self, pace: float | None = None) -> list[AttentionCall]:
        """A block's attention calls of the compute unit, in run_images' order: every head's score pass, then
        per head its A*V (after its probabilities; with one head, a call with no rows first, for the online
        softmax alone). The online softmax is the calls' side job, head by head, N_TOKENS x ATTN_GROUPS steps a
        head, a step every ``pace`` iterations (SM_PACE, counted from the call's start): a head's from the call
        after its score pass on (``ready``), or in its own score pass once the MACs reach tile SM_LEAD_TILES; the
        call before a head's probabilities lasts until that head's is done (``need``: the last score pass for
        head 0, head h's A*V for head h + 1). With more than one head, each call's last pass also unpacks the
        next call's first tile, so the next skips its pass 0. A call's MAC loop runs its passes, and longer
        while its ``need`` is not met: this walks each call's iterations as the kernel's counters do."""
        m = self.config.model
        n, heads = m.num_tokens, m.num_heads
        pace = self.sm_pace if pace is None else pace
        per_head = n * self.attn_groups
        lead = self.sm_lead_tiles
        plan = [("scores", h, h, 1 if h == heads - 1 and heads > 1 else 0) for h in range(heads)]
        if heads == 1:
            plan.append(("none", 0, 1, 1))
        plan += [("av", h, heads, min(h + 2, heads)) for h in range(heads)]
        many = heads > 1
        done, calls = 0, []
        for i, (kind, head, ready, need) in enumerate(plan):
            pre = many and i > 0
            prefetch = plan[i + 1][0] if many and i + 1 < len(plan) else ""
            if i + 1 == len(plan) and self.weight_rows_aligned:
                prefetch = "proj"   # the last A*V: proj's biases and first tile, from DRAM
            if kind == "none":
                parts = [1]
            else:
                parts = self.attention_passes(kind, n)[1 if pre else 0:]
                if prefetch:   # the last pass unpacks the next call's first tile too
                    parts[-1] = max(parts[-1], self.pass_lead + self.prefetch_steps(prefetch) + self.pass_tail)
            passes = sum(parts)
            if need * per_head > (ready + (kind == "scores")) * per_head:
                raise AssertionError(f"attention call {kind} {head}: the side job needs a head it cannot run")
            # the MAC tile t of each iteration (pass 0, before tile 0's MACs, when not pre)
            own_from = (sum(parts[:lead + (0 if pre else 1)]) if kind == "scores" and lead < len(parts) - (0 if pre else 1)
                        else math.inf)
            it, start = 0, done
            while it < passes or done < need * per_head:
                slot = it == 0 or math.floor(it / pace) != math.floor((it - 1) / pace)
                cap = (ready + (1 if it >= own_from else 0)) * per_head
                if slot and done < cap:
                    done += 1
                it += 1
            calls.append(AttentionCall(kind, head, passes, ready, need, done - start, it, pre, prefetch))
        return calls

    def prefetch_steps(self, kind: str) -> int:
        """Unpack steps of the first tile an attention call's last pass prefetches: a score pass's or an A*V's
        (on chip), or ``"proj"``'s biases and tile 0 (from DRAM, after the block's last A*V)."""
        if kind == "proj":
            return self.prefix_steps(self.linear("blocks.0.proj"))
        return self.attention_shape(kind)[2][0]

    def attention_shape(self, kind: str) -> tuple[int, int, list[int]]:
        """(the dot product length as the MACs run it, the outputs, the unpack steps of each tile) of an
        attention pass: ``"scores"``, HEAD_DIM x SCORE_COLS, a key row's HEAD_DIM / CU_IN steps per output;
        ``"av"``, K_PAD x HEAD_DIM, N_TOKENS keys of ceil(the tile's outputs / CU_IN) steps (the last tile may be
        narrower)."""
        m, h = self.config.model, self.config.hardware
        if kind == "scores":
            k, n_out = m.head_dim, self.score_cols
            return k, n_out, [min(h.cu_out, n_out - o) * (k // h.cu_in) for o in range(0, n_out, h.cu_out)]
        if kind == "av":
            n_out = m.head_dim
            return self.k_pad, n_out, [m.num_tokens * -(-min(h.cu_out, n_out - o) // h.cu_in)
                                       for o in range(0, n_out, h.cu_out)]
        raise ValueError(f"attention pass {kind!r}: 'scores' or 'av'")

    # --- the image port and the embedding ------------------------------------------------------------
    @property
    def image_lanes(self) -> int:
        """``IMAGE_LANES``: pixel words per word of the image port (``image_word_t``), the image's pixels in their
        own order (C x H x W).  The patch gather writes a word's pixels to consecutive columns of one patch's row
        of ``big`` (cyclic ``cu_in`` banks) in one cycle, so the word must lie in one row of one patch (it divides
        ``patch_size``) and its lane j must always meet the banks j mod IMAGE_LANES (it divides ``cu_in``: no
        crossbar); at most a bus word: the largest power of two dividing ``patch_size``, ``cu_in`` and the
        pixels of a bus word."""
        m, h = self.config.model, self.config.hardware
        g = math.gcd(m.patch_size, h.cu_in, h.axi_width // self.pixel_word_bits)
        return g & -g

    @property
    def image_word_bits(self) -> int:
        """Bits of one word of the image port: ``image_lanes`` pixel words, pixel 0 in the low bits."""
        return self.image_lanes * self.pixel_word_bits

    @property
    def image_words(self) -> int:
        """``IMAGE_WORDS``: words of the image port per image (C x H x W pixels, whole words: ``image_lanes``
        divides the patch, so a row of the image)."""
        m = self.config.model
        return m.in_chans * m.img_height * m.img_width // self.image_lanes

    @property
    def pos_beats(self) -> int:
        """``POS_BEATS``: bus words of the position table (N x D words), the embedding's one burst (every tensor
        starts on a bus word)."""
        m = self.config.model
        _, beats, skip = beat_span(self.offsets["backbone.pos_embed"], m.num_tokens * m.embed_dim, self.words_per_beat)
        if skip:   # the kernel's EMBED_POS puts field j of a bus word in bank j of pos
            raise ValueError(f"the position table starts at word {skip} of a bus word, not on one")
        return beats

    # --- buffers -----------------------------------------------------------------------------
    @property
    def buffer_types(self) -> dict[str, np.dtype]:
        """numpy dtype of the words in each m_axi buffer (the kernel's pixel / weight / output word types)."""
        return {"image": np.dtype(f"uint{self.pixel_word_bits}"), "weights": self.layout.numpy_dtype,
                "activations": np.dtype(f"int{self.out_word_bits}")}

    @property
    def buffer_depths(self) -> dict[str, int]:
        """Words per image of each m_axi buffer as the host holds it: pixel, weight and output words (the
        activations: a tap call's stride, whole bus words, which holds the output tokens too)."""
        m = self.config.model
        return {"image": m.in_chans * m.img_height * m.img_width, "weights": self.layout.total_words,
                "activations": self.max_tap_words}

    @property
    def interface_depths(self) -> dict[str, int]:
        """Elements per image of each m_axi pointer (the INTERFACE pragmas' ``depth``), by argument: bus words
        for the weights, whose pointer is to ``weight_beat_t`` (or to one lane of it each), and for the
        activations (``act_beat_t``, :attr:`max_tap_words` / OUT_PER_BEAT), image words (``image_lanes``
        pixels each) for the image."""
        return {"image": self.image_words, **dict.fromkeys(self.lanes.names, self.weight_beats),
                "activations": self.max_tap_words // self.out_per_beat}

    @property
    def lanes(self) -> WeightLanes:
        """The weight stream's lanes: ``WEIGHT_LANES`` m_axi pointers of ``WEIGHT_LANE_BITS`` each."""
        return WeightLanes.of(self.config)

    @property
    def m_axi_latency(self) -> int:
        """Cycles from an m_axi read request to its first beat (``config_interface -m_axi_latency``): the
        board's DRAM latency at the kernel clock, rounded up."""
        h = self.config.hardware
        return math.ceil(BOARDS[h.board].dram_latency_ns * h.clock_mhz / 1000)

    @property
    def m_axi_alignment_bytes(self) -> int:
        """Bytes every m_axi buffer starts on (``config_interface -m_axi_alignment_byte_size``): one
        ``align_words`` block of the weight layout, which starts every tensor on it (one bus word); the
        host passes whole buffers, which start on pages."""
        return self.layout.align_words * self.weight_word_bits // 8


_CACHE: dict[tuple, KernelPlan] = {}
