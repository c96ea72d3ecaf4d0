"""The user-facing HLS project: write, compile, predict, build (hls4ml's verbs).

    proj = HLSProject("m3vit-micro")            # config; synthetic weights (seed 0)
    proj.write("out/micro")                       # the Vitis HLS project
    proj.compile()                                # g++ -> shared library (cached)
    tokens = proj.predict(images, task="semseg")  # C simulation, raw words [B, N, D]
    qkv = proj.predict(images, "semseg", tap="blocks.0.qkv")
    proj.build(csim=True, synth=True)             # drives vitis_hls when installed
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

from edgemoe.config import Config, ConfigError
from edgemoe.golden.fixed_model import pixel_codes, tap_type
from edgemoe.golden.numerics.fixed import to_float
from edgemoe.golden.weights import QuantizedWeights, quantize_weights
from edgemoe.loading import load_config

from .csim import CompileResult, CsimLibrary, ToolError, compile_sources
from .errors import KernelError
from .interface import STATUS, TAP_NONE, config_hash32
from .layout import WeightLayout, pack_weights
from .plan import KernelPlan
from .shared_files import Busy, exclusive
from .writer import SOURCES, render, write

#: the translation units of the C simulation library (the headers under include/ come with them)
CSIM_SOURCES = ["src/edgemoe_vit.cpp", "src/csim_bridge.cpp"]


def kernel_sources(cfg: Config) -> dict[str, bytes]:
    """The kernel's generated sources (relative path -> bytes): what the C simulation compiles."""
    return {rel: text.encode() for rel, text in render(cfg, list(SOURCES)).items() if rel in SOURCES}


def default_cache_dir() -> Path:
    """Where compiled libraries are cached: ``<cache>/csim-cache`` (``$EDGEMOE_CACHE``, else <repo>/build)."""
    from edgemoe.paths import cache_dir

    return cache_dir() / "csim-cache"


class HLSProject:
    """A generated accelerator for one config and one set of weights."""

    def __init__(self, config: Config | str, weights=None, seed: int = 0, cache_dir: str | Path | None = None):
        self.config = config if isinstance(config, Config) else load_config(config)
        if weights is None:
            from edgemoe.golden.synthetic import synthetic_state_dict
            weights = synthetic_state_dict(self.config.model, seed=seed)
        self.weights: QuantizedWeights = weights if isinstance(weights, QuantizedWeights) \
            else quantize_weights(self.config, weights)
        self.plan = KernelPlan.from_config(self.config)
        self.layout: WeightLayout = self.plan.layout
        self.packed_weights: np.ndarray = pack_weights(self.config, self.weights)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.project_dir: Path | None = None
        self.compiled: CompileResult | None = None
        self._lib: CsimLibrary | None = None
        self.taps = list(self.plan.taps)
        self._shapes = self.plan.tap_shapes

    # --- write -------------------------------------------------------------------------
    def write(self, out_dir: str | Path) -> Path:
        """Write the complete Vitis HLS project to ``out_dir``.

        The folder is locked while it is written; a second process writing the same folder at the same
        time is refused (``ConfigError`` naming it) instead of waiting, since whichever wrote last would
        silently replace the other's project.
        """
        from .project_files import write_project_files

        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise ConfigError("out", str(out), "is a file; the project needs a folder (a new or existing one)")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError("out", str(out), f"cannot be created ({e.strerror})") from None
        try:
            with exclusive(out, wait=False):
                write(self.config, out)
                write_project_files(self, out)
        except Busy:
            raise ConfigError("out", str(out), "another edgemoe process is writing a project into this folder; "
                                               "wait for it to finish or choose another folder") from None
        self.project_dir = out
        return out

    # --- compile / predict (C simulation) ---------------------------------------------
    def compile(self) -> CompileResult:
        """Compile the kernel with g++ (cached by a hash of the sources, under ``cache_dir/lib``).

        Compiles the sources generated for this config, from memory: the project folder, which another
        run may be rewriting, is never read back.
        """
        self.compiled = compile_sources(kernel_sources(self.config), CSIM_SOURCES, self.cache_dir / "lib",
                                        config_hash32(self.config))
        self._lib = CsimLibrary(self.compiled.library)
        return self.compiled

    def tap_id(self, tap: str | int | None) -> int:
        if tap is None:
            return TAP_NONE
        if isinstance(tap, int):
            if 0 <= tap < len(self.taps):
                return tap
        elif tap in self.taps:
            return self.taps.index(tap)
        raise ConfigError("tap", tap, f"must be a tap name of this config (e.g. {self.taps[1]!r}) "
                                      f"or an id 0..{len(self.taps) - 1}; see taps.json")

    def pixels(self, images) -> np.ndarray:
        """Images (float [0,1] or integer codes) [B, C, H, W] -> pixel codes for the kernel."""
        m = self.config.model
        x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        expected = (m.in_chans, m.img_height, m.img_width)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ConfigError("images", list(x.shape), f"must have shape [B, {', '.join(map(str, expected))}]")
        return pixel_codes(x, self.config.precision.pixel).numpy()

    def run_raw(self, pixels: np.ndarray, task: int, tap: int) -> np.ndarray:
        """Call the kernel on pixel codes; returns the activations buffer [B, image stride] (each image's output
        words as the kernel wrote them: :class:`~edgemoe.hls.plan.ActRegion` unpacks them)."""
        if self._lib is None:
            self.compile()
        b = pixels.shape[0]
        out, config_hash, status = self._lib.run(pixels.reshape(-1), self.packed_weights, task, b, tap)
        if status != STATUS["ok"]:
            name = {v: k for k, v in STATUS.items()}.get(status, f"status {status}")
            raise KernelError(f"kernel refused the call: {name}")
        return out.reshape(b, self._lib.image_words(tap))

    def predict(self, images, task: str | int = 0, tap: str | int | None = None,
                dequantize: bool = False) -> np.ndarray:
        """C simulation of ``images``: backbone tokens [B, N, D] or the tap's words, golden-shaped.

        Raw int64 words by default; ``dequantize=True`` gives real values.
        """
        t = self.config.model.task_index(task)
        tap_i = self.tap_id(tap)
        pixels = self.pixels(images)
        out = self.run_raw(pixels, t, tap_i)
        m = self.config.model
        name = f"blocks.{m.depth - 1}.out" if tap_i == TAP_NONE else self.taps[tap_i]
        words = self.plan.region(None if tap_i == TAP_NONE else name).unpack(out).astype(np.int64)
        if not dequantize:
            return words
        ft = tap_type(name, self.config.precision)
        return words if ft is None else to_float(torch.from_numpy(words), ft).numpy()

    # --- build (vendor tools) -------------------------------------------------------------
    def build(self, csim: bool = True, synth: bool = True, cosim: bool = False, export: bool = False,
              vitis_hls: str = "vitis_hls") -> subprocess.CompletedProcess:
        """Run ``build_prj.tcl`` in Vitis HLS with the chosen steps (needs ``vitis_hls`` on PATH)."""
        if self.project_dir is None:
            raise ToolError("call write(dir) before build()")
        exe = shutil.which(vitis_hls)
        if exe is None:
            raise ToolError(f"build() needs Xilinx Vitis HLS: '{vitis_hls}' is not on PATH "
                            "(source <Vitis>/settings64.sh); C simulation without it: compile() + predict()")
        steps = {"csim": csim, "synth": synth, "cosim": cosim, "export": export}
        args = [f"{k}={int(v)}" for k, v in steps.items()]
        return subprocess.run([exe, "-f", "build_prj.tcl", "-tclargs", *args], cwd=self.project_dir,
                              check=True)
