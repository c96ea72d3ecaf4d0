"""Packed weights: a float checkpoint converted once into the kernel's DRAM layout, as a versioned file.

    packed = pack_state_dict(cfg, state_dict, source="synthetic (seed 0)")   # or pack_quantized(cfg, golden.weights, heads)
    packed.save("micro.weights.npz")
    packed = load_weights_file("micro.weights.npz", cfg)    # checks everything
    packed.words        # the weight buffer, exactly what the kernel reads (layout.json)
    packed.heads        # decoders.* float tensors: the task heads run on the host
    packed.quantized()  # the same words as golden QuantizedWeights (for the bit-exact reference)

The file is a ``.npz`` holding a JSON ``header`` (format name and version,
config name and digest, generator version, the weight layout's signature,
where the weights came from, the tensors that saturated when packed, the head
tensors' shapes and the SHA-256 of the whole content), the ``words`` array and one ``head.<key>`` array per head
tensor.  Loading checks the format, version, checksum, config, layout and
every shape, and names the first problem it finds.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgemoe import __version__
from edgemoe.files import atomic_output
from edgemoe.golden.file_kind import describe
from edgemoe.hls.layout import pack_weights
from edgemoe.hls.plan import KernelPlan

from .errors import WeightsFileError

FORMAT = "edgemoe-weights"
#: format version this code writes and reads
VERSION = 1
HEAD_PREFIX = "decoders."


def layout_signature(cfg) -> dict:
    """What the packed words depend on: word width, size and the tensor table (offsets, shapes, classes)."""
    layout = KernelPlan.from_config(cfg).layout
    table = [[s.key, s.offset, list(s.shape), s.tensor_class] for s in layout.slots]
    return {"word_bits": layout.word_bits, "total_words": layout.total_words, "align_words": layout.align_words,
            "tensors_sha256": hashlib.sha256(json.dumps(table).encode()).hexdigest()}


def expected_head_shapes(cfg) -> dict[str, tuple[tuple[int, ...], str]]:
    """decoders.* key -> (shape, numpy dtype name) of the config's task heads."""
    from edgemoe.golden.float_model import expected_shapes

    out = {}
    for key, (shape, dtype) in expected_shapes(cfg.model).items():
        if key.startswith(HEAD_PREFIX):
            out[key] = (tuple(shape), str(torch.empty(0, dtype=dtype).numpy().dtype))
    return out


def _checksum(header: dict, words: np.ndarray, heads: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in header.items() if k != "sha256"}, sort_keys=True).encode())
    h.update(f"words {words.dtype.str} {list(words.shape)}".encode())
    h.update(np.ascontiguousarray(words).tobytes())
    for key in sorted(heads):
        a = heads[key]
        h.update(f"{key} {a.dtype.str} {list(a.shape)}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@dataclass
class PackedWeights:
    """The kernel's weight words plus the float task heads, for one config."""

    config_name: str
    config_digest: str
    words: np.ndarray
    heads: dict[str, torch.Tensor]
    layout: dict
    source: str = ""
    generator_version: str = __version__
    sha256: str = ""
    path: Path | None = field(default=None, compare=False)
    saturation: list[str] = field(default_factory=list)  # one notice per tensor that did not fit its type

    # --- file -------------------------------------------------------------------------
    def header(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "config_name": self.config_name,
                "config_digest": self.config_digest, "generator_version": self.generator_version,
                "source": self.source, "layout": self.layout, "saturation": list(self.saturation),
                "words": {"dtype": self.words.dtype.str, "shape": list(self.words.shape)},
                "heads": {k: list(v.shape) for k, v in sorted(self.heads.items())}}

    def save(self, path: str | Path) -> Path:
        """Write the file atomically (a temporary file, then rename); records the checksum."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        heads = {k: v.detach().cpu().numpy() for k, v in self.heads.items()}
        header = self.header()
        header["sha256"] = self.sha256 = _checksum(header, self.words, heads)
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, header=np.array(json.dumps(header, indent=1)), words=self.words,
                     **{"head." + k: v for k, v in heads.items()})
        self.path = path
        return path

    # --- views ------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return int(self.words.nbytes)

    def quantized(self, cfg):
        """The packed words back as golden :class:`~edgemoe.golden.weights.QuantizedWeights` (M3ViT keys)."""
        return unpack_words(cfg, self.words)


def pack_state_dict(cfg, state_dict: dict[str, torch.Tensor], source: str = "") -> PackedWeights:
    """Quantise the backbone of a float M3ViT state dict and pack it into the kernel's layout.

    The ``decoders.*`` tensors (the task heads) are kept in float: they run on the host.
    NaN / inf in any tensor packed is an error naming the tensors; backbone
    tensors that saturate are listed in ``saturation``.
    """
    from edgemoe.golden.weights import nonfinite, quantize_weights, tensor_class

    expected = expected_head_shapes(cfg)
    bad = nonfinite({k: v for k, v in state_dict.items() if k in expected or tensor_class(k) is not None})
    if bad:
        raise WeightsFileError(f"the state dict holds non-finite values in {len(bad)} tensor(s), which cannot "
                               f"be packed for config {cfg.name}: " + _first(bad, 5))
    problems = []
    for key, (shape, _) in expected.items():
        if key not in state_dict:
            problems.append(f"{key} missing")
        elif tuple(state_dict[key].shape) != shape:
            problems.append(f"{key} is {list(state_dict[key].shape)}, config expects {list(shape)}")
    if problems:
        raise WeightsFileError(f"the state dict's task heads do not fit config {cfg.name}: " + _first(problems, 5))
    try:
        q = quantize_weights(cfg, state_dict)
    except (KeyError, ValueError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise WeightsFileError(f"the state dict does not fit config {cfg.name}: {msg}") from None
    return pack_quantized(cfg, q, {k: state_dict[k] for k in expected}, source)


def _first(problems: list[str], shown: int) -> str:
    """The first ``shown`` problems on one line, and how many more there are."""
    more = len(problems) - shown
    return "; ".join(problems[:shown]) + (f" (+{more} more)" if more > 0 else "")


def pack_quantized(cfg, weights, heads: dict[str, torch.Tensor], source: str = "") -> PackedWeights:
    """Pack the golden model's quantised weights (``FixedM3ViT.weights``) with the float ``decoders.*`` heads."""
    from edgemoe.golden.weights import QuantizedWeights

    try:
        words = pack_weights(cfg, weights)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise WeightsFileError(f"the weights do not fit config {cfg.name}: {msg}") from None
    heads = {k: v.detach().clone() for k, v in heads.items()}
    saturation = weights.saturation_notices() if isinstance(weights, QuantizedWeights) else []
    return PackedWeights(cfg.name, cfg.digest(), words, heads, layout_signature(cfg), source, saturation=saturation)


def unpack_words(cfg, words: np.ndarray):
    """Packed weight words -> golden QuantizedWeights (inverse of :func:`edgemoe.hls.layout.pack_weights`)."""
    from edgemoe.golden.float_model import expected_shapes
    from edgemoe.golden.weights import QuantizedTensor, QuantizedWeights

    layout = KernelPlan.from_config(cfg).layout
    shapes = expected_shapes(cfg.model)
    p = cfg.precision
    experts: dict[str, dict[int, torch.Tensor]] = {}
    classes: dict[str, str] = {}
    out = QuantizedWeights()
    for s in layout.slots:
        t = getattr(p, s.tensor_class)
        raw = layout.slot_words(np.asarray(words), s)
        if not t.signed:
            raw &= (1 << t.bits) - 1
        raw = torch.from_numpy(raw.reshape(s.shape))
        parts = s.key.split(".")
        if ".mlp.experts." in s.key:
            stacked = ".".join(parts[:-3] + parts[-2:])
            experts.setdefault(stacked, {})[int(parts[-3])] = raw
            classes[stacked] = s.tensor_class
            continue
        if s.key.endswith("w_gate"):
            raw = raw.transpose(0, 1).contiguous()
        key_shape = tuple(shapes[s.key][0])
        out[s.key] = QuantizedTensor(raw.reshape(key_shape), t, s.tensor_class)
    for key, per_expert in experts.items():
        stacked = torch.stack([per_expert[e] for e in range(len(per_expert))])
        cls = classes[key]
        out[key] = QuantizedTensor(stacked.reshape(tuple(shapes[key][0])), getattr(p, cls), cls)
    return out


def is_weights_file(path: str | Path) -> bool:
    """True when ``path`` is a zip archive with an edgemoe weights header (cheap: reads the directory only)."""
    try:
        with zipfile.ZipFile(path) as z:
            return "header.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def load_weights_file(path: str | Path, cfg) -> PackedWeights:
    """Read and check a packed weights file for ``cfg``; every problem is a :class:`WeightsFileError`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file {path}: no such file")
    what = f"weights file {path}"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        header = json.loads(str(arrays.pop("header")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        raise WeightsFileError(f"{what}: not an edgemoe weights file ({describe(path)}; expected a .npz written "
                               f"by `edgemoe pack`)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise WeightsFileError(f"{what}: not an edgemoe weights file (header format is not {FORMAT!r})")
    if header.get("version") != VERSION:
        raise WeightsFileError(f"{what}: format version {header.get('version')!r}, but edgemoe {__version__} reads "
                               f"version {VERSION}; re-pack the checkpoint with `edgemoe pack`")
    if "words" not in arrays:
        raise WeightsFileError(f"{what}: the 'words' array is missing")
    words = arrays.pop("words")
    heads = {k[len("head."):]: v for k, v in arrays.items() if k.startswith("head.")}
    got = _checksum(header, words, heads)
    if got != header.get("sha256"):
        raise WeightsFileError(f"{what}: bad checksum (content SHA-256 {got[:16]}..., the header records "
                               f"{str(header.get('sha256'))[:16]}...): the file is corrupted or was modified; re-pack it")
    want_layout = layout_signature(cfg)
    if header.get("config_digest") != cfg.digest():
        shapes = "" if header.get("layout") == want_layout else (
            f"; its weight layout differs too ({header.get('layout', {}).get('total_words')} words of "
            f"{header.get('layout', {}).get('word_bits')} bits vs {want_layout['total_words']} of {want_layout['word_bits']})")
        raise WeightsFileError(f"{what}: packed for config {header.get('config_name')!r} (digest "
                               f"{str(header.get('config_digest'))[:12]}), but the runtime config is {cfg.name!r} "
                               f"(digest {cfg.digest()[:12]}){shapes}; pack the weights for this config")
    if header.get("layout") != want_layout:
        raise WeightsFileError(f"{what}: wrong shapes: its weight layout {header.get('layout')} is not the layout "
                               f"of config {cfg.name!r} {want_layout} (packed by edgemoe "
                               f"{header.get('generator_version')}); re-pack it")
    dtype = KernelPlan.from_config(cfg).buffer_types["weights"]
    if words.dtype != dtype or words.shape != (want_layout["total_words"],):
        raise WeightsFileError(f"{what}: wrong shapes: 'words' holds {words.shape} {words.dtype}, config "
                               f"{cfg.name!r} needs ({want_layout['total_words']},) {dtype}")
    expected = expected_head_shapes(cfg)
    problems = [f"{k} missing" for k in expected if k not in heads]
    problems += [f"{k} is not a head tensor of this config" for k in heads if k not in expected]
    problems += [f"{k} is {list(heads[k].shape)}, config expects {list(expected[k][0])}"
                 for k in expected if k in heads and tuple(heads[k].shape) != expected[k][0]]
    if problems:
        raise WeightsFileError(f"{what}: wrong shapes in the task heads: " + _first(problems, 4))
    saturation = header.get("saturation", [])
    if not isinstance(saturation, list) or not all(isinstance(n, str) for n in saturation):
        raise WeightsFileError(f"{what}: the header's 'saturation' is not a list of strings; re-pack it")
    return PackedWeights(header["config_name"], header["config_digest"], words,
                         {k: torch.from_numpy(v) for k, v in heads.items()}, header["layout"],
                         header.get("source", ""), header.get("generator_version", ""), header["sha256"], path,
                         saturation)


def state_dict_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's keys, dtypes, shapes and values (for caching packed files)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key} {t.dtype} {list(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def packed_for(cfg, state_dict: dict[str, torch.Tensor], source: str = "", cache_dir: str | Path | None = None,
               log=None) -> PackedWeights:
    """Pack ``state_dict`` for ``cfg``, reusing a cached file keyed by the config and the tensors' digest."""
    if cache_dir is None:
        return pack_state_dict(cfg, state_dict, source)
    path = Path(cache_dir) / f"{cfg.file_label()}-{cfg.digest()[:12]}-{state_dict_digest(state_dict)[:16]}.weights.npz"
    if path.is_file():
        try:
            packed = load_weights_file(path, cfg)
            if log:
                log(f"packed weights: {path} (cached)")
                log_saturation(packed, log)
            return packed
        except WeightsFileError:
            pass  # stale or damaged cache entry: re-pack below
    packed = pack_state_dict(cfg, state_dict, source)
    packed.save(path)
    if log:
        log(f"packed weights: {path} ({packed.nbytes / 1e6:.1f} MB of {packed.layout['word_bits']}-bit words)")
        log_saturation(packed, log)
    return packed


def log_saturation(packed: PackedWeights, log=print) -> None:
    """One line per tensor that saturated when ``packed`` was packed."""
    for notice in packed.saturation:
        log(f"  saturated weights: {notice}")
