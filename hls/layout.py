"""The kernel's DRAM weight layout, and packing quantised weights into it.

One flat buffer of signed *weight words* (``word_bits`` wide: the widest weight
class).  Every tensor's raw words are sign-extended into elements of its
slot's width (``Slot.bits``): the buffer word, except for the compute unit's
matrices (classes :data:`MATRIX_CLASSES`), which are packed at their own
container width (``matrix_bits``: 8-bit weights two to a 16-bit word, element
``i`` in the low byte first: the bytes in order, little-endian), so a bus word
carries twice as many of them.  Tensors follow the hardware's order:
patch embedding, cls/pos, then per block norm1, qkv, proj, norm2 and either
fc1/fc2 or the gates (per task) and the experts (per expert contiguous:
fc1 weight, fc1 bias, fc2 weight, fc2 bias).  Every tensor starts on an AXI
burst boundary.  The generated kernel reads its offsets from this layout and
the host packs with it: one layout, two users.

The buffer is read as bus words (``hardware.axi_width`` bits, little-endian
words).  :class:`WeightLanes` stripes each bus word over
``hardware.weight_lanes`` m_axi pointers: lane ``i`` is bits
``[i * lane_bits, (i + 1) * lane_bits)`` of every bus word, stored as one
contiguous buffer, so the kernel reads beat ``b`` of every lane in one cycle
and joins them into the bus word (lane 0 the low bits).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

#: profile fields whose raw words live in the weight buffer
WEIGHT_CLASSES = ("patch_weight", "bias", "embed", "ln_gamma", "ln_beta", "weight", "attn_bias")
#: the classes of the compute unit's weight matrices, packed at ``matrix_bits``
MATRIX_CLASSES = ("patch_weight", "weight")


@dataclass(frozen=True)
class Slot:
    """One tensor in the buffer: ``offset`` and ``size`` in words, row-major ``shape``."""

    key: str
    offset: int
    shape: tuple[int, ...]
    tensor_class: str
    #: bits of one element (the buffer's word, or ``matrix_bits`` for a matrix class)
    bits: int = 16
    #: bits of one buffer word
    word_bits: int = 16

    @property
    def size(self) -> int:
        """Elements of the tensor."""
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def words(self) -> int:
        """Buffer words the tensor takes: ``size`` elements of ``bits``, packed."""
        return -(-self.size * self.bits // self.word_bits)

    @property
    def cname(self) -> str:
        """C identifier of the offset constant."""
        return "OFF_" + self.key.removeprefix("backbone.").replace(".", "_").upper()


def _container(bits: int, what: str) -> int:
    for w in (8, 16, 32):
        if bits <= w:
            return w
    raise ValueError(f"{what} wider than 32 bits ({bits}) are not supported by the weight buffer")


def word_bits(precision) -> int:
    """Width of one weight word: the widest weight class, rounded up to 8/16/32."""
    return _container(max(getattr(precision, c).bits for c in WEIGHT_CLASSES), "weight classes")


def matrix_bits(precision) -> int:
    """Width of one element of the compute unit's matrices in the buffer: the wider matrix class rounded up to
    8/16/32 (a bit more for an unsigned class, whose words the kernel reads signed), at most ``word_bits``."""
    need = max(getattr(precision, c).bits + (0 if getattr(precision, c).signed else 1) for c in MATRIX_CLASSES)
    return min(_container(need, "matrix classes"), word_bits(precision))


def tensor_order(model_cfg) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, tensor class) of every backbone tensor in buffer order.  A layer's biases come just before
    its matrix (each slot starts on a bus word), so the loader reads the two as one burst.  The constants the
    kernel keeps on chip for a whole call (the cls token, the position table, then every block's two
    LayerNorms, gamma then beta) are one region, which it reads in one burst (hls.plan.const_beats)."""
    m = model_cfg
    d = m.embed_dim
    out = [("backbone.patch_embed.proj.bias", (d,), "bias"),
           ("backbone.patch_embed.proj.weight", (d, m.patch_dim), "patch_weight"),
           ("backbone.cls_token", (d,), "embed"),
           ("backbone.pos_embed", (m.num_tokens, d), "embed")]
    for i in range(m.depth):
        pre = f"backbone.blocks.{i}."
        out += [(pre + "norm1.weight", (d,), "ln_gamma"), (pre + "norm1.bias", (d,), "ln_beta"),
                (pre + "norm2.weight", (d,), "ln_gamma"), (pre + "norm2.bias", (d,), "ln_beta")]
    for i in range(m.depth):
        pre = f"backbone.blocks.{i}."
        out += [(pre + "attn.qkv.bias", (3 * d,), "attn_bias"), (pre + "attn.qkv.weight", (3 * d, d), "weight"),
                (pre + "attn.proj.bias", (d,), "attn_bias"), (pre + "attn.proj.weight", (d, d), "weight")]
        if m.is_moe(i):
            for t in range(len(m.tasks)):
                out.append((pre + f"mlp.gate.{t}.w_gate", (m.num_experts, d), "weight"))  # stored transposed: [E, D]
            h = m.expert_hidden
            for e in range(m.num_experts):
                out += [(pre + f"mlp.experts.{e}.htoh4.bias", (h,), "bias"),
                        (pre + f"mlp.experts.{e}.htoh4.weight", (h, d), "weight"),
                        (pre + f"mlp.experts.{e}.h4toh.bias", (d,), "bias"),
                        (pre + f"mlp.experts.{e}.h4toh.weight", (d, h), "weight")]
        else:
            hid = m.mlp_hidden
            out += [(pre + "mlp.fc1.bias", (hid,), "bias"), (pre + "mlp.fc1.weight", (hid, d), "weight"),
                    (pre + "mlp.fc2.bias", (d,), "bias"), (pre + "mlp.fc2.weight", (d, hid), "weight")]
    return out


@dataclass(frozen=True)
class WeightLayout:
    """Offsets of every tensor in the weight buffer of a config."""

    slots: tuple[Slot, ...]
    word_bits: int
    align_words: int
    total_words: int

    @classmethod
    def of(cls, cfg) -> "WeightLayout":
        wb, mb = word_bits(cfg.precision), matrix_bits(cfg.precision)
        align = max(1, cfg.hardware.axi_width // wb)
        slots, off = [], 0
        for key, shape, tc in tensor_order(cfg.model):
            off = -(-off // align) * align
            slots.append(Slot(key, off, shape, tc, mb if tc in MATRIX_CLASSES else wb, wb))
            off += slots[-1].words
        total = -(-off // align) * align
        return cls(tuple(slots), wb, align, total)

    def __getitem__(self, key: str) -> Slot:
        for s in self.slots:
            if s.key == key:
                return s
        raise KeyError(key)

    @property
    def nbytes(self) -> int:
        return self.total_words * self.word_bits // 8

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype({8: np.int8, 16: np.int16, 32: np.int32}[self.word_bits])

    def slot_words(self, buf: np.ndarray, slot: Slot) -> np.ndarray:
        """The elements of ``slot`` in the packed buffer ``buf``, sign-extended (int64, flat)."""
        packed = np.ascontiguousarray(buf[slot.offset:slot.offset + slot.words], dtype=self.numpy_dtype)
        return packed.view(_INT[slot.bits])[:slot.size].astype(np.int64)


_INT = {8: np.dtype("<i1"), 16: np.dtype("<i2"), 32: np.dtype("<i4")}


def layout_tensor(weights, key: str) -> torch.Tensor:
    """The raw words of a layout key from :class:`~edgemoe.golden.weights.QuantizedWeights`."""
    parts = key.split(".")
    if ".mlp.experts." in key:  # backbone.blocks.i.mlp.experts.<e>.<name>.<w|b>
        e = int(parts[-3])
        stacked = ".".join(parts[:-3] + parts[-2:])
        return weights.raw(stacked)[e]
    if key.endswith("w_gate"):
        return weights.raw(key).transpose(0, 1)  # [D, E] -> [E, D]: one gate row per expert
    if key in ("backbone.cls_token", "backbone.pos_embed"):
        return weights.raw(key).reshape(-1)
    return weights.raw(key)


def pack_weights(cfg, weights) -> np.ndarray:
    """All backbone tensors as one buffer of weight words (``layout.numpy_dtype``)."""
    layout = WeightLayout.of(cfg)
    buf = np.zeros(layout.total_words, dtype=layout.numpy_dtype)
    dst = buf.view(np.uint8)
    for s in layout.slots:
        raw = layout_tensor(weights, s.key).reshape(-1)
        if raw.numel() != s.size:
            raise ValueError(f"{s.key}: {raw.numel()} words, layout expects {s.size} {list(s.shape)}")
        data = raw.numpy().astype(_INT[s.bits]).view(np.uint8)   # little-endian elements, their bytes in order
        start = s.offset * layout.word_bits // 8
        dst[start:start + data.size] = data
    return buf


@dataclass(frozen=True)
class WeightLanes:
    """The weight stream striped over ``count`` m_axi pointers, each on a bundle (and memory port) of its own.

    One lane (the default) is the one ``weights`` pointer on the configured bundle, unchanged.  With
    ``count`` > 1 lane ``i`` is the pointer ``weights_<i>`` on bundle ``<weights bundle>_<i>``: lane ``i``
    of bus word ``b`` is weight words ``[b * words_per_beat + i * lane_words, + lane_words)``, the bits
    ``[i * lane_bits, (i + 1) * lane_bits)`` of the bus word (the words are little-endian).  The kernel's
    arguments and bundles, the host's buffers, the C simulation and the memory placement all take the
    split from here.
    """

    count: int
    #: bits of one bus word (``hardware.axi_width``) and of one weight word
    beat_bits: int
    word_bits: int
    #: the bundle the config names for the weights buffer
    bundle: str

    @classmethod
    def of(cls, cfg) -> "WeightLanes":
        h = cfg.hardware
        return cls(h.weight_lanes, h.axi_width, word_bits(cfg.precision), h.bundle_of["weights"])

    @property
    def lane_bits(self) -> int:
        """Bits of one lane of a bus word: the width of each lane's pointer element and m_axi port."""
        return self.beat_bits // self.count

    @property
    def lane_words(self) -> int:
        """Weight words in one lane of a bus word."""
        return self.lane_bits // self.word_bits

    @property
    def names(self) -> tuple[str, ...]:
        """The kernel's m_axi arguments of the weights, lane 0 first."""
        return ("weights",) if self.count == 1 else tuple(f"weights_{i}" for i in range(self.count))

    @property
    def bundles(self) -> tuple[str, ...]:
        """The m_axi bundle of each lane (one each: a lane is a memory port's stream)."""
        return (self.bundle,) if self.count == 1 else tuple(f"{self.bundle}_{i}" for i in range(self.count))

    def split(self, buf: np.ndarray) -> list[np.ndarray]:
        """The lanes of a packed buffer (whole bus words of weight words): one contiguous array per lane."""
        beats = np.asarray(buf).reshape(-1, self.count, self.lane_words)
        return [np.ascontiguousarray(beats[:, i, :]).reshape(-1) for i in range(self.count)]

    def join(self, lanes) -> np.ndarray:
        """The packed buffer from its lanes (the inverse of :meth:`split`)."""
        return join_lanes(lanes, self.lane_words)


def join_lanes(lanes, lane_words: int) -> np.ndarray:
    """Weight words from lane buffers of ``lane_words`` words per bus word (:meth:`WeightLanes.join`; the
    simulated device joins the buffers it is given with the lane width its overlay records)."""
    return np.stack([np.asarray(a).reshape(-1, lane_words) for a in lanes], axis=1).reshape(-1)


def lane_counts(axi_width: int, word_bits_: int) -> tuple[int, ...]:
    """The ``hardware.weight_lanes`` a bus word of ``axi_width`` bits can be split into: lanes of equal width,
    each >= 32 bits (the narrowest m_axi port the kernel uses) and a whole number of weight words."""
    return tuple(n for n in range(1, axi_width // 32 + 1)
                 if axi_width % n == 0 and (axi_width // n) % word_bits_ == 0 and axi_width // n >= 32)


def buffer_digest(buf: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(buf).tobytes()).hexdigest()
