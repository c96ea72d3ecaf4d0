"""The host runtime: images in, segmentation and depth maps out, through the accelerator.

    acc = Accelerator("m3vit-micro", weights="micro.weights.npz", device="sim")
    res = acc.infer(["a.png", "b.png"], task="all")     # both tasks, both images in one kernel call each
    res.labels      # [B, H, W] semseg class per pixel
    res.depth       # [B, H, W] depth
    res.timings     # seconds per stage: preprocess, transfer, kernel, head

What happens:

1. the device is chosen (``sim``, ``board`` or ``auto`` = a board if pynq
   finds one, else the simulated device) and the choice is printed;
2. the overlay (.bit/.hwh, .xclbin, or a .simbit for the simulated device)
   is checked against bitstreams/manifest.json (files, checksums, config) and
   loaded with ``pynq.Overlay``; pynq binds :class:`~edgemoe.host.driver.EdgeMoEDriver`
   to the kernel by its VLNV and the driver takes its offsets from the build's
   register map; the kernel's config_hash register must match the config;
3. the packed weights are written once into a ``pynq.allocate`` buffer that
   stays for the accelerator's lifetime: a task switch only writes the task
   register (every MoE block then uses that task's gate), nothing is reloaded.
   Every buffer is allocated where the kernel's port for it reaches memory:
   on Zynq the one PS DDR (the device's memory); on Alveo the HBM bank the
   overlay links its argument to (``overlay.ip_dict[cu]["registers"][arg]["memory"]``,
   from the xclbin's connectivity, checked against the generator's placement
   in the manifest), with as many images per call as fit there;
4. per call: images are cropped/resized to the configured size and turned into
   pixel codes, up to ``max_batch`` images go to the kernel per call
   (ap_start, then ap_done within ``timeout``), the tokens come back and the
   float task heads run on the host (torch).

A kernel that never raises ap_done gives :class:`~edgemoe.host.errors.KernelTimeout`;
the overlay is downloaded again (a PL reset) so the next call works.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pynq
import torch

from edgemoe.boards import BOARDS
from edgemoe.config import Config
from edgemoe.hls.interface import VLNVS, kernel_args
from edgemoe.hls.plan import KernelPlan
from edgemoe.images import ImageError
from edgemoe.loading import load_config

from . import manifest as mf
from .driver import EdgeMoEDriver
from .errors import DeviceError, KernelTimeout, ManifestError, OverlayMismatchError, WeightsFileError
from .simdevice import SimDevice
from .weights_file import PackedWeights, is_weights_file, load_weights_file, packed_for

DEVICE_KINDS = ("auto", "sim", "board")
STAGES = ("preprocess", "transfer", "kernel", "head")


def _quiet(*_args, **_kwargs) -> None:
    pass


# --- device ------------------------------------------------------------------------------

def real_devices() -> list:
    """The boards pynq finds (every probed pynq device that is not the simulated one)."""
    try:
        found = list(pynq.Device.devices)
    except RuntimeError:
        found = []
    return [d for d in found if not isinstance(d, SimDevice)]


def select_device(kind="auto", hang: bool | int = False, log=print):
    """``sim``, ``board``, ``auto`` or a pynq.Device -> (device, one-line description); prints the choice."""
    if isinstance(kind, pynq.Device):
        what = "sim" if isinstance(kind, SimDevice) else "board"
        desc = f"device: {what} ({type(kind).__name__} {kind.tag!r}, given)"
        log(desc)
        return kind, desc
    if kind not in DEVICE_KINDS:
        raise DeviceError(f"--device = {kind!r}: must be one of {', '.join(DEVICE_KINDS)}")
    if kind == "sim":
        dev, desc = SimDevice(hang=hang), "device: sim (simulated PYNQ device running the kernel's C simulation; " \
                                          "selected explicitly)"
    else:
        boards = real_devices()
        if boards:
            dev = boards[0]
            desc = f"device: board ({type(dev).__name__} {dev.tag!r}; {'auto: pynq found a board' if kind == 'auto' else 'selected explicitly'})"
        elif kind == "board":
            raise DeviceError("--device board: pynq found no board here (on a PYNQ image or an Alveo host, "
                              "source the XRT environment so XILINX_XRT is set); use --device sim to run "
                              "the simulated device")
        else:
            dev = SimDevice(hang=hang)
            desc = ("device: sim (auto: pynq found no board, so the simulated PYNQ device runs the kernel's "
                    "C simulation; --device board to require one)")
    log(desc)
    return dev, desc


# --- images -----------------------------------------------------------------------------------

def preprocess(images, cfg) -> tuple[torch.Tensor, np.ndarray]:
    """Images -> (float [B, C, H, W] model input, pixel codes for the kernel).

    ``images``: image files (any size: centre-cropped to the configured aspect
    and resized), HxWxC photos (same), or an array/tensor already in the
    configured shape [B, C, H, W] (float in [0, 1] or uint8 codes), which is
    taken as is and must match exactly.
    """
    from edgemoe.golden.fixed_model import pixel_codes
    from edgemoe.images import load_images, to_model_input

    m = cfg.model
    expected = (m.in_chans, m.img_height, m.img_width)
    if isinstance(images, (str, Path)):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ImageError("no images given")
        parts = []
        for i, im in enumerate(images):
            if isinstance(im, (str, Path)):
                parts.append(load_images([im], m.img_height, m.img_width)[0])
            else:
                a = im.detach().cpu().numpy() if isinstance(im, torch.Tensor) else np.asarray(im)
                if a.ndim == 3 and a.shape == expected:
                    parts.append(_model_shaped(a[None], expected, f"image {i}")[0])
                else:
                    parts.append(to_model_input(a, m.img_height, m.img_width, f"image {i}"))
        x = torch.stack(parts)
    else:
        a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if a.ndim in (2, 3) and a.shape != expected:  # one photo, HxW or HxWxC
            x = to_model_input(a, m.img_height, m.img_width, "image")[None]
        else:
            x = _model_shaped(a, expected, "images")
    try:
        codes = pixel_codes(x, cfg.precision.pixel)
    except ValueError as e:
        raise ImageError(str(e)) from None
    top = (1 << cfg.precision.pixel.bits) - 1
    dtype = KernelPlan.from_config(cfg).buffer_types["image"]
    return (codes.to(torch.float64) / top).to(torch.float32), codes.numpy().astype(dtype)


def _model_shaped(a: np.ndarray, expected: tuple[int, ...], what: str) -> torch.Tensor:
    if a.ndim == 3 and a.shape == expected:
        a = a[None]
    if a.ndim != 4 or tuple(a.shape[1:]) != expected:
        raise ImageError(f"{what}: shape {list(a.shape)} is not the configured input [B, {', '.join(map(str, expected))}]"
                         f" (wrong size or channels); give image files or HxWxC photos to have them cropped and resized")
    if a.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(a))
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (np.isnan(a).any() or a.min() < 0 or a.max() > 1):
            raise ImageError(f"{what}: float pixels must be in [0, 1] (got {np.nanmin(a):.3g}..{np.nanmax(a):.3g})")
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    raise ImageError(f"{what}: pixel type {a.dtype} not supported (uint8 codes or float in [0, 1])")


# --- result -------------------------------------------------------------------------------------

@dataclass
class Result:
    """What :meth:`Accelerator.infer` returns (arrays have the batch axis first)."""

    images: np.ndarray                                   # [B, C, H, W] float: what the kernel saw (codes / (2^b-1))
    pixels: np.ndarray                                   # [B, C, H, W] pixel codes sent to the kernel
    tokens: dict[str, np.ndarray] = field(default_factory=dict)   # task -> [B, N, D] raw backbone words
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # task -> [B, C, H, W] float head output
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    kernel_calls: int = 0
    device: str = ""

    def map(self, task: str) -> np.ndarray:
        """[B, H, W]: class labels (argmax) of a multi-channel task, the value of a one-channel task."""
        out = self.outputs[task]
        return out.argmax(1).astype(np.uint8) if out.shape[1] > 1 else out[:, 0]

    @property
    def maps(self) -> dict[str, np.ndarray]:
        return {t: self.map(t) for t in self.outputs}

    @property
    def labels(self) -> np.ndarray:
        """Segmentation labels of the first multi-class task (semseg)."""
        return self.map(next(t for t, o in self.outputs.items() if o.shape[1] > 1))

    @property
    def depth(self) -> np.ndarray:
        """The map of the first one-channel task (depth)."""
        return self.map(next(t for t, o in self.outputs.items() if o.shape[1] == 1))

    def format_timings(self) -> str:
        total = sum(self.timings.values())
        n = len(self.pixels)
        parts = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in self.timings.items())
        return (f"{n} image(s), {self.kernel_calls} kernel call(s): {parts}; total {total * 1e3:.1f} ms "
                f"({total / max(n, 1) * 1e3:.1f} ms/image)")


# --- memory banks (Alveo) ----------------------------------------------------------------------

#: room a buffer may take beyond its bytes in a memory bank (allocations are page-aligned)
PAGE_SLACK = 4096


def _bank_tags(tag: str, mem_dict: dict) -> list[str]:
    """The banks a memory tag stands for: itself, or the members of an XRT memory group ``MBG[i,j,...]``
    (``i``, ``j``: indices in the memory topology)."""
    if not tag.startswith("MBG["):
        return [tag]
    by_idx = {m["idx"]: m["tag"] for m in mem_dict.values()}
    return [by_idx.get(int(i), f"memory #{i}") for i in tag[4:].rstrip("]").split(",") if i.strip().isdigit()]


# --- the accelerator -----------------------------------------------------------------------------


def resolve_weights(cfg, weights=None, seed: int = 0, cache_dir=None, log=print, source: str = "") -> PackedWeights:
    """A packed weights file, an M3ViT checkpoint, a float state dict (``source`` names it; packed and
    cached), PackedWeights, or None (synthetic, ``seed``)."""
    from .paths import cache_dir as default_cache

    cache = Path(cache_dir) if cache_dir is not None else default_cache() / "host-cache" / "weights"
    if isinstance(weights, PackedWeights):
        if weights.config_digest != cfg.digest():
            raise WeightsFileError(f"packed weights for config {weights.config_name!r} (digest "
                                   f"{weights.config_digest[:12]}), runtime config is {cfg.name!r} "
                                   f"(digest {cfg.digest()[:12]})")
        return weights
    if weights is None:
        from edgemoe.golden.synthetic import synthetic_state_dict

        log(f"weights: synthetic (seed {seed})")
        return packed_for(cfg, synthetic_state_dict(cfg.model, seed=seed), f"synthetic (seed {seed})", cache, log)
    if isinstance(weights, dict):
        return packed_for(cfg, weights, source or "state dict", cache, log)
    path = Path(weights)
    if is_weights_file(path):
        packed = load_weights_file(path, cfg)
        log(f"weights: {path} (packed: {packed.source or 'unknown source'}; sha256 {packed.sha256[:12]})")
        return packed
    if not path.exists():
        raise WeightsFileError(f"weights {path}: no such file or directory")
    from edgemoe.golden.checkpoint import load_m3vit_checkpoint

    loaded = load_m3vit_checkpoint(path, cfg.model)
    log(f"weights: M3ViT checkpoint {path}")
    for n in loaded.notices:
        log(f"  {n}")
    return packed_for(cfg, loaded.state_dict, f"M3ViT checkpoint {path.name}", cache, log)


def resolve_overlay(cfg, overlay, device, manifest=None, cache_dir=None, log=print) -> mf.Entry:
    """The manifest entry of the overlay to load: the given path, else the registered one for this config.

    On the simulated device an overlay is built (and registered) when none is; ``cache_dir`` is the
    build cache root (default <repo>/build).
    """
    sim = isinstance(device, SimDevice)
    if overlay is not None:
        entry = mf.verify_overlay(overlay, cfg, manifest)
        if sim != (entry.flow == "sim"):
            raise ManifestError(f"overlay {entry.overlay.name} is a {entry.flow} build: "
                                + ("the simulated device loads .simbit overlays (--device board for this one)" if sim
                                   else "a board needs a .bit/.hwh or .xclbin build (--device sim for a .simbit)"))
        return entry
    if sim:
        from .paths import cache_dir as default_cache
        from .sim_overlay import build_sim_overlay

        cache = (Path(cache_dir) if cache_dir is not None else default_cache()) / "csim-cache"
        return build_sim_overlay(cfg, None if manifest is None else mf.manifest_path(manifest).parent,
                                 cache_dir=cache, log=log)
    flows = ("zynq", "alveo")
    for flow in flows:
        entry = mf.find_overlay(cfg, flow, manifest)
        if entry is not None:
            return entry
    raise ManifestError(f"no overlay for config {cfg.name!r} (digest {cfg.digest()[:12]}) is registered in "
                        f"{mf.manifest_path(manifest)}: build one (edgemoe generate --config {cfg.name} ...; "
                        f"make bitstream), register it (edgemoe register) or pass --overlay")


class Accelerator:
    """One loaded accelerator: overlay, driver, weight buffer and task heads, reused across calls."""

    def __init__(self, config: Config | str, overlay: str | Path | None = None, weights=None, device="auto", *,
                 manifest: str | Path | None = None, timeout: float = 10.0, max_batch: int = 8, seed: int = 0,
                 cache_dir: str | Path | None = None, hang: bool | int = False, weights_source: str = "",
                 log=print):
        """``cache_dir``: root of the build caches (compiled csim libraries, packed weights; default <repo>/build).
        ``hang``: fault injection for the simulated device (see :class:`SimDevice`)."""
        self.cfg = config if isinstance(config, Config) else load_config(config)
        self.log = log or _quiet
        self.timeout = float(timeout)
        if max_batch < 1:
            raise DeviceError(f"max_batch = {max_batch}: must be >= 1")
        self.device, self.device_description = select_device(device, hang=hang, log=self.log)
        self.is_sim = isinstance(self.device, SimDevice)
        self.entry = resolve_overlay(self.cfg, overlay, self.device, manifest, cache_dir, self.log)
        self.overlay = pynq.Overlay(str(self.entry.overlay), device=self.device)
        self.driver = self._find_driver()
        self.driver.bind_register_map(self.entry.regmap())
        self.max_batch = min(max_batch, 0xFFFF) if self.driver.supports_batch else 1  # num_images is 16-bit
        self._check_config_hash()
        self.log(f"overlay: {self.entry.overlay} (manifest entry {self.entry.name!r}, {self.entry.flow}; "
                 f"config hash {self.driver_config_hash:#010x} verified)")
        self.targets = self._memory_targets()
        self.weights = resolve_weights(self.cfg, weights, seed, None if cache_dir is None else
                                       Path(cache_dir) / "host-cache" / "weights", self.log, weights_source)
        plan = KernelPlan.from_config(self.cfg)
        self.types = plan.buffer_types
        #: the weight buffer, or one per weight lane (lane i of every bus word) on the memory its port is linked to
        bufs = []
        for name, words in zip(plan.lanes.names, plan.lanes.split(self.weights.words)):
            buf = pynq.allocate(words.shape, self.types["weights"], target=self.targets[name])
            buf[:] = words
            buf.sync_to_device()
            bufs.append(buf)
        self._wbuf = bufs[0] if len(bufs) == 1 else tuple(bufs)
        self._ibuf = self._abuf = None
        self._cap_images = self._cap_words = 0
        self.heads = self._build_heads()
        self.kernel_calls = 0
        import skimage.io  # noqa: F401  (imported here so the first call's preprocess time is the work's)
        import skimage.transform  # noqa: F401

    # --- setup ------------------------------------------------------------------------------
    def _find_driver(self) -> EdgeMoEDriver:
        types = {name: d.get("type") for name, d in self.overlay.ip_dict.items()}
        ours = [n for n, t in types.items() if t and t.split(":")[2:3] == ["edgemoe_vit"]]
        if not ours:
            raise OverlayMismatchError(f"overlay {self.entry.overlay.name} contains no edgemoe_vit kernel "
                                       f"(IP: {', '.join(f'{n} [{t}]' for n, t in types.items()) or 'none'})")
        drv = getattr(self.overlay, ours[0])
        if not isinstance(drv, EdgeMoEDriver):
            raise OverlayMismatchError(f"{ours[0]} is {types[ours[0]]}; the edgemoe driver binds to "
                                       f"{', '.join(VLNVS)}: the bitstream holds another version of the kernel")
        return drv

    def _memory_targets(self) -> dict:
        """m_axi argument -> where its buffer is allocated (``pynq.allocate(..., target=)``).

        Zynq: the device (every PS port, HP or HPC, reaches the one PS DDR).  Alveo: the memory bank the overlay
        links the argument to, read from the overlay's description (pynq's ``memory`` of the argument's
        register; ``MBG`` when it is linked to several banks: the largest of them), which must be the
        banks the generator placed it on (the manifest's ``memory``).  ``max_batch`` drops to the
        images that fit the banks of the image and activation buffers.
        """
        from edgemoe.hls.memory_map import buffer_bytes

        args = [a.name for a in kernel_args(self.cfg) if a.kind == "m_axi"]
        if BOARDS[self.cfg.hardware.board].flow != "alveo":
            return dict.fromkeys(args, self.device)
        regs = self.overlay.ip_dict[self.driver.name]["registers"]
        mem_dict = self.overlay.mem_dict
        placed = self.entry.placement()
        targets, tags_of = {}, {}
        for name in args:
            reg = regs.get(name, {})
            tags = list(reg.get("MBG") or ([reg["memory"]] if reg.get("memory") else []))
            if not tags or any(t not in mem_dict for t in tags):
                raise OverlayMismatchError(f"overlay {self.entry.overlay.name}: kernel argument {name!r} of "
                                           f"{self.driver.name} is linked to no memory bank of its memory topology "
                                           f"({tags or 'none'}); link the .xo with the generated alveo_link.cfg")
            banks = sorted({b for t in tags for b in _bank_tags(t, mem_dict)})
            want = None if placed is None or name not in placed else sorted(f"HBM[{i}]" for i in placed[name]["banks"])
            if want is not None and banks != want:
                raise OverlayMismatchError(f"overlay {self.entry.overlay.name} links kernel argument {name!r} to "
                                           f"{', '.join(banks)}, but the generator placed it on "
                                           f"{placed[name]['target']} (manifest entry {self.entry.name!r}): the "
                                           f".xclbin was linked with another alveo_link.cfg; link it with the "
                                           f"generated one")
            desc = max((mem_dict[t] for t in tags), key=lambda d: (d["size"], -d["idx"]))
            targets[name], tags_of[name] = self.device.get_memory(desc), desc["tag"]
        need = buffer_bytes(self.cfg)
        lanes = KernelPlan.from_config(self.cfg).lanes.names   # the weight buffers: written once, any batch
        per_memory: dict[str, list[str]] = {}
        for name, tag in tags_of.items():
            per_memory.setdefault(tag, []).append(name)
        for tag, names in per_memory.items():
            room = targets[names[0]].size - PAGE_SLACK * len(names)
            fixed = sum(need[n] for n in names if n in lanes)
            per_image = sum(need[n] for n in names if n not in lanes)
            fit = (room - fixed) // per_image if per_image else self.max_batch
            if fixed > room or fit < 1:
                what = ", ".join(f"{n} {need[n]} bytes" + ("" if n in lanes else " per image") for n in names)
                raise DeviceError(f"{what}: more than {tag} holds ({targets[names[0]].size} bytes), the largest "
                                  f"memory the overlay links {' and '.join(names)} to (a buffer lies in one memory)")
            if fit < self.max_batch:
                self.log(f"  {tag} holds {fit} image(s) of {' and '.join(names)}: at most {fit} per kernel call")
                self.max_batch = fit
        self.log("memory: " + ", ".join(f"{n} on {t}" for n, t in tags_of.items()))
        return targets

    def _check_config_hash(self) -> None:
        from edgemoe.hls.interface import config_hash32

        want = config_hash32(self.cfg)
        if self.entry.data.get("config_hash") not in (None, want):
            raise ManifestError(f"manifest entry {self.entry.name!r} records config hash "
                                f"{self.entry.data['config_hash']:#010x}, config {self.cfg.name!r} has {want:#010x}")
        try:
            got = self.driver.read_config_hash(timeout=self.timeout)
        except KernelTimeout as e:
            raise KernelTimeout(f"reading the config_hash register: {e}") from None
        if got is None:
            self.log("  note: the kernel exposes no config_hash register; relying on the manifest's config check")
            self.driver_config_hash = want
            return
        if got != want:
            raise OverlayMismatchError(f"kernel {self.driver.name}: config_hash register reads {got:#010x}, but config "
                                       f"{self.cfg.name!r} (digest {self.cfg.digest()[:12]}, edgemoe generator) "
                                       f"expects {want:#010x}: the loaded bitstream was built for another config "
                                       f"or generator version")
        self.driver_config_hash = got

    def _build_heads(self) -> dict[str, torch.nn.Module]:
        from edgemoe.golden.heads import UpHead

        heads = {}
        m = self.cfg.model
        for spec in m.tasks:
            prefix = f"decoders.{spec.name}."
            head = UpHead(m, spec.out_channels)
            head.load_state_dict({k[len(prefix):]: v for k, v in self.weights.heads.items() if k.startswith(prefix)})
            heads[spec.name] = head.eval()
        return heads

    # --- buffers ---------------------------------------------------------------------------
    def _ensure_buffers(self, n: int, act_words: int) -> None:
        """Allocate image/activation buffers; reallocated only when a bigger call needs more."""
        m = self.cfg.model
        pix = m.in_chans * m.img_height * m.img_width
        if n > self._cap_images or act_words > self._cap_words:
            self._cap_images = max(n, self._cap_images)
            self._cap_words = max(act_words, self._cap_words)
            self._ibuf = self._abuf = None  # the old buffers' memory is free before the new ones take it
            self._ibuf = pynq.allocate((self._cap_images, pix), self.types["image"], target=self.targets["image"])
            self._abuf = pynq.allocate((self._cap_images * self._cap_words,), self.types["activations"],
                                       target=self.targets["activations"])

    def _read_activations(self, n: int, tap: str | None) -> np.ndarray:
        """The output words of the last call's ``n`` images, golden-shaped ``[n, *shape]``: the output tokens
        (``tap`` None) or the tap's.  Image i's region starts at word i x the call's stride, whole bus words, and
        each part of it (a head's, in a per-head tap) on a bus word (:class:`~edgemoe.hls.plan.ActRegion`)."""
        plan = KernelPlan.from_config(self.cfg)
        stride = plan.image_stride(tap is not None)
        self._abuf.sync_from_device()
        return plan.region(tap).unpack(np.asarray(self._abuf[:n * stride]).reshape(n, stride))

    def _kernel(self, task: int, n: int, tap: int | None) -> float:
        try:
            seconds = self.driver.run(self._ibuf, self._wbuf, self._abuf, task, n, tap, timeout=self.timeout)
        except KernelTimeout as e:
            self.reset()
            raise KernelTimeout(f"{e}; the kernel was reset (overlay downloaded again) and the accelerator is "
                                f"ready for the next call") from None
        self.kernel_calls += 1
        return seconds

    def reset(self) -> None:
        """Reset the kernel: download the overlay again (a PL reset); buffers and weights stay."""
        self.overlay.download()
        self.log(f"kernel reset: overlay {self.entry.overlay.name} downloaded again")

    # --- inference -----------------------------------------------------------------------------
    def tasks(self, task="all") -> list[str]:
        m = self.cfg.model
        if task == "all" or task is None:
            return list(m.task_names)
        if isinstance(task, (list, tuple)):
            return [m.task_names[m.task_index(t)] for t in task]
        return [m.task_names[m.task_index(task)]]

    def _batches(self, b: int) -> list[tuple[int, int]]:
        return [(s, min(s + self.max_batch, b)) for s in range(0, b, self.max_batch)]

    def _progress(self, total: int, enabled, desc: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="call", leave=False,
                    disable=(not enabled) if enabled is not None else total <= 1)

    def infer(self, images, task="all", progress=None) -> Result:
        """Run ``images`` for ``task`` (a name, an index, a list, or 'all'); see :class:`Result`."""
        m = self.cfg.model
        tasks = self.tasks(task)
        t0 = time.perf_counter()
        x, codes = preprocess(images, self.cfg)
        res = Result(x.numpy(), codes, device=self.device_description)
        res.timings["preprocess"] = time.perf_counter() - t0
        b = len(codes)
        words = KernelPlan.from_config(self.cfg).image_stride(False)
        tokens = {t: np.empty((b, m.num_tokens, m.embed_dim), np.int64) for t in tasks}
        batches = self._batches(b)
        calls_before = self.kernel_calls
        with self._progress(len(batches) * len(tasks), progress if b > 1 else False, "kernel") as bar:
            for s, e in batches:
                n = e - s
                t1 = time.perf_counter()
                self._ensure_buffers(n, words)
                self._ibuf[:n] = codes[s:e].reshape(n, -1)
                self._ibuf.sync_to_device()
                res.timings["transfer"] += time.perf_counter() - t1
                for name in tasks:
                    res.timings["kernel"] += self._kernel(m.task_index(name), n, None)
                    t1 = time.perf_counter()
                    tokens[name][s:e] = self._read_activations(n, None)
                    res.timings["transfer"] += time.perf_counter() - t1
                    bar.update(1)
        res.kernel_calls = self.kernel_calls - calls_before
        res.tokens = tokens
        t1 = time.perf_counter()
        for name in tasks:
            res.outputs[name] = self.run_head(tokens[name], name)
        res.timings["head"] = time.perf_counter() - t1
        return res

    @torch.no_grad()
    def run_head(self, tokens: np.ndarray, task: str) -> np.ndarray:
        """The float task head on raw backbone tokens (as golden FixedM3ViT.run_head)."""
        from edgemoe.golden.numerics.fixed import to_float

        x = to_float(torch.from_numpy(np.asarray(tokens, dtype=np.int64)), self.cfg.precision.act).to(torch.float32)
        return self.heads[task](x).numpy()

    def run_tap(self, images, task, tap: str | int, progress=None) -> np.ndarray:
        """A debug tap's raw words [B, *tap shape] (the kernel stops after that step)."""

        m = self.cfg.model
        plan = KernelPlan.from_config(self.cfg)
        taps = plan.taps
        if isinstance(tap, str):
            if tap not in taps:
                raise OverlayMismatchError(f"tap {tap!r} is not a tap of config {self.cfg.name!r} (see taps.json)")
            tap_id, name = taps.index(tap), tap
        else:
            tap_id, name = int(tap), taps[int(tap)]
        shape = plan.tap_shapes[name]
        stride = plan.image_stride(True)
        _, codes = preprocess(images, self.cfg)
        b = len(codes)
        out = np.empty((b, *shape), np.int64)
        t = m.task_index(task)
        for s, e in self._batches(b):
            n = e - s
            self._ensure_buffers(n, stride)
            self._ibuf[:n] = codes[s:e].reshape(n, -1)
            self._ibuf.sync_to_device()
            self._kernel(t, n, tap_id)
            out[s:e] = self._read_activations(n, name)
        return out

    def close(self) -> None:
        self._wbuf = self._ibuf = self._abuf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
