"""C simulation: the generated kernel compiled with g++ into a shared library, called with numpy.

The library is cached by a hash of the generated sources and the compiler
command, so an unchanged project compiles once.  Warnings are collected and
split into those from the generated code and those from the vendor
ap_types headers (which g++ reports inside inlined ap_private code).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ToolError(RuntimeError):
    """A required external tool is missing or failed; the message names it."""


def ap_types_dir() -> Path:
    """hls4ml's copy of the Xilinx ap_types headers."""
    try:
        import hls4ml
    except ImportError:  # pragma: no cover - pinned dependency
        raise ToolError("the ap_types headers come with the hls4ml package: pip install hls4ml") from None
    path = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
    if not (path / "ap_int.h").is_file():
        raise ToolError(f"ap_types headers not found under {path}")
    return path


CXX_FLAGS = ["-std=c++14", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra",
             # HLS pragmas and loop labels are for Vitis HLS; g++ would flag every one
             "-Wno-unknown-pragmas", "-Wno-unused-label"]


@dataclass
class CompileResult:
    library: Path
    seconds: float
    cached: bool
    warnings: list[str] = field(default_factory=list)         # in generated code
    vendor_warnings: int = 0                                   # inside the ap_types headers


def compile_library(project_dir: Path, sources: list[str], cache_root: Path) -> CompileResult:
    """g++ the generated sources into ``libedgemoe_csim.so`` (cached by content)."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise ToolError("C simulation needs a C++ compiler: g++ not found on PATH (apt-get install g++)")
    inc = [project_dir / "include", ap_types_dir()]
    h = hashlib.sha256(" ".join([cxx, *CXX_FLAGS]).encode())
    for rel in sorted(sources) + sorted(p.relative_to(project_dir).as_posix()
                                        for p in (project_dir / "include").glob("*.h")):
        h.update(rel.encode())
        h.update((project_dir / rel).read_bytes())
    out_dir = Path(cache_root) / h.hexdigest()[:20]
    lib = out_dir / "libedgemoe_csim.so"
    log = out_dir / "compile.log"
    if lib.is_file():
        return _result(lib, log, 0.0, True)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [cxx, *CXX_FLAGS, f"-I{inc[0]}", f"-isystem{inc[1]}", *[str(project_dir / s) for s in sources],
           "-o", f"{lib}.{os.getpid()}.tmp"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log.write_text(proc.stderr)
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ": error:" in ln][:10]
        raise ToolError("g++ failed to compile the generated kernel:\n" + "\n".join(errors or proc.stderr.splitlines()[-20:]))
    os.replace(f"{lib}.{os.getpid()}.tmp", lib)  # atomic: parallel compiles of one source are safe
    return _result(lib, log, seconds, False)


def _result(lib: Path, log: Path, seconds: float, cached: bool) -> CompileResult:
    text = log.read_text() if log.is_file() else ""
    ours, vendor = [], 0
    for line in text.splitlines():
        if ": warning:" not in line:
            continue
        if "/ap_types/" in line.split(":", 1)[0]:
            vendor += 1
        else:
            ours.append(line)
    return CompileResult(lib, seconds, cached, ours, vendor)


class CsimLibrary:
    """ctypes view of a compiled kernel (see csim_bridge.cpp)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lib = ctypes.CDLL(str(self.path))
        self._lib.edgemoe_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                          ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self._lib.edgemoe_run.restype = ctypes.c_int
        self._lib.edgemoe_config_hash.restype = ctypes.c_uint
        self.max_tap_words = self._lib.edgemoe_max_tap_words()
        self.num_taps = self._lib.edgemoe_num_taps()
        self.config_hash = self._lib.edgemoe_config_hash()

    def run(self, pixels: np.ndarray, weights: np.ndarray, task: int, num_images: int, tap: int,
            out_words: int) -> tuple[np.ndarray, int, int]:
        """Call the top function once; returns (output words int64, config_hash, status)."""
        pix = np.ascontiguousarray(pixels, dtype=np.int32)
        w = np.ascontiguousarray(weights, dtype=np.int32)
        out = np.zeros(max(1, num_images * out_words), dtype=np.int64)
        h = ctypes.c_uint32(0)
        st = ctypes.c_uint32(0)
        self._lib.edgemoe_run(pix.ctypes.data, w.ctypes.data, out.ctypes.data, int(task), int(num_images),
                              int(tap), ctypes.byref(h), ctypes.byref(st))
        return out[:num_images * out_words], h.value, st.value
