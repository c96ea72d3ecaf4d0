"""C simulation: the generated kernel compiled with g++ into a shared library, called with numpy.

Libraries live in a content-addressed cache: ``<cache>/<key>/`` where the
key is a SHA-256 of the compiler command (with its ``-D`` defines, see
:data:`DEFINES`) and of every source file's name and bytes.  g++ compiles a
private snapshot of exactly the bytes that were hashed (never the project
folder itself, which another run may be rewriting), into a temporary
folder beside the entry that is renamed into place when complete, under a
per-key lock.  Each entry holds the library,
``compile.log`` and ``library.json``, the build record: the library's
SHA-256, its size in bytes and the config hash the library itself exports.
An entry is reused only when the library matches its record (and the
caller's expected config hash); any other entry is rebuilt, and the result
says why.  Warnings are split into those from the generated code and
those from the vendor ap_types headers (which g++ reports inside inlined
ap_private code).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .shared_files import exclusive, sha256_file


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
#: file names inside a cache entry
LIBRARY, LOG, RECORD = "libedgemoe_csim.so", "compile.log", "library.json"
#: the macros a C simulation build may define (``defines``): name -> what it selects in the kernel
DEFINES = {
    "EDGEMOE_SYNTH_ARITH": "the synthesis arithmetic: exact-width accum_t accumulators instead of 64-bit integers",
}


@dataclass
class CompileResult:
    library: Path
    seconds: float
    cached: bool
    warnings: list[str] = field(default_factory=list)         # in generated code
    vendor_warnings: int = 0                                   # inside the ap_types headers
    config_hash: int | None = None                             # exported by the library (its build record)
    sha256: str = ""                                           # of the library (its build record)
    notice: str | None = None                                  # why a cached entry was rebuilt, if it was


def read_sources(project_dir: str | Path, units: list[str]) -> dict[str, bytes]:
    """What g++ reads from a generated project: ``units`` and every ``include/*.h``, each read once."""
    project_dir = Path(project_dir)
    headers = [p.relative_to(project_dir).as_posix() for p in (project_dir / "include").glob("*.h")]
    files = {}
    for rel in sorted({*units, *headers}):
        try:
            files[rel] = (project_dir / rel).read_bytes()
        except OSError as e:
            raise ToolError(f"{project_dir / rel}: cannot be read ({e.strerror}); generate the project first") from None
    return files


def compile_library(project_dir: str | Path, sources: list[str], cache_root: str | Path,
                    config_hash: int | None = None, defines: tuple[str, ...] = ()) -> CompileResult:
    """g++ a generated project's ``sources`` (paths relative to it) into ``libedgemoe_csim.so``, cached.

    The folder is read once (:func:`read_sources`); see :func:`compile_sources`.
    """
    return compile_sources(read_sources(project_dir, sources), sources, cache_root, config_hash, defines)


def define_flags(defines: tuple[str, ...] | list[str]) -> list[str]:
    """``-D`` flags of ``defines`` (names of :data:`DEFINES`), sorted and without repeats."""
    unknown = sorted(set(defines) - set(DEFINES))
    if unknown:
        raise ToolError(f"C simulation defines {unknown}: not macros the kernel reads; known: {', '.join(DEFINES)}")
    return [f"-D{name}" for name in sorted(set(defines))]


def compiler_command(cxx: str, defines: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The g++ command (without sources and output) that builds a library with ``defines``."""
    return [cxx, *CXX_FLAGS, *define_flags(defines)]


def cache_key(files: dict[str, bytes], command: list[str]) -> str:
    """Cache entry name of ``files`` built by ``command``: SHA-256 of the command and every file's name and bytes."""
    h = hashlib.sha256(" ".join(command).encode())
    for rel in sorted(files):
        h.update(f"\0{rel}\0{len(files[rel])}\0".encode())
        h.update(files[rel])
    return h.hexdigest()[:20]


def compile_sources(files: dict[str, bytes], units: list[str], cache_root: str | Path,
                    config_hash: int | None = None, defines: tuple[str, ...] = ()) -> CompileResult:
    """g++ the translation units ``units`` of the source tree ``files`` (relative path -> bytes), cached by content.

    ``config_hash``: what the library must export (``edgemoe_config_hash``); a
    cached entry recording another value is rebuilt, a fresh build reporting
    another value is an error.  ``defines``: macros of :data:`DEFINES` to
    compile with (part of the cache key).
    """
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise ToolError("C simulation needs a C++ compiler: g++ not found on PATH (apt-get install g++)")
    flags = compiler_command(cxx, defines)
    command = " ".join(flags)
    cache_root = Path(cache_root)
    entry = cache_root / cache_key(files, flags)
    with exclusive(cache_root / f"{entry.name}.lock"):
        problem = entry_problem(entry, config_hash)
        if problem is None:
            return _result(entry, 0.0, True)
        seconds = _build(flags, files, units, entry, config_hash, command)
    notice = None if problem == _MISSING else f"cached C simulation library {entry / LIBRARY}: {problem}; rebuilt it"
    return _result(entry, seconds, False, notice)


_MISSING = "not built yet"


def entry_problem(entry: Path, config_hash: int | None = None) -> str | None:
    """Why the cache entry ``entry`` cannot be reused (None when its library matches its build record)."""
    lib, record_path = entry / LIBRARY, entry / RECORD
    if not entry.exists():
        return _MISSING
    if not lib.is_file():
        return "the library is missing"
    try:
        record = json.loads(record_path.read_text())
        want_sha, want_bytes, exported = record["sha256"], record["bytes"], record["config_hash"]
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
        return f"no readable build record ({RECORD})"
    size = lib.stat().st_size
    if size != want_bytes:
        return f"{size} bytes, its build record says {want_bytes}"
    got = sha256_file(lib)
    if got != want_sha:
        return f"SHA-256 {got[:12]}... differs from its build record ({str(want_sha)[:12]}...)"
    if config_hash is not None and exported != config_hash:
        return f"exports config hash {exported:#010x}, the sources were generated for {config_hash:#010x}"
    return None


def _build(flags: list[str], files: dict[str, bytes], units: list[str], entry: Path, config_hash: int | None,
           command: str) -> float:
    """Compile a snapshot of ``files`` into a fresh folder beside ``entry``, then rename it into place."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=entry.parent))
    try:
        os.chmod(build, 0o755)
        with tempfile.TemporaryDirectory(prefix="edgemoe-csim-src-") as tmp:
            src = Path(tmp)
            for rel, data in files.items():
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                (src / rel).write_bytes(data)
            cmd = [*flags, f"-I{src / 'include'}", f"-isystem{ap_types_dir()}",
                   *[str(src / u) for u in units], "-o", str(build / LIBRARY)]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
        log = proc.stderr.replace(f"{src}/", "")  # name the generated files by their project paths
        (build / LOG).write_text(log)
        if proc.returncode != 0:
            errors = [ln for ln in log.splitlines() if ": error:" in ln][:10]
            raise ToolError("g++ failed to compile the generated kernel:\n"
                            + "\n".join(errors or log.splitlines()[-20:]))
        exported = CsimLibrary(build / LIBRARY).config_hash
        if config_hash is not None and exported != config_hash:
            raise ToolError(f"the compiled kernel exports config hash {exported:#010x}, but its sources were "
                            f"generated for {config_hash:#010x}")
        record = {"sha256": sha256_file(build / LIBRARY), "bytes": (build / LIBRARY).stat().st_size,
                  "config_hash": exported, "compiler": command}
        (build / RECORD).write_text(json.dumps(record, indent=1) + "\n")
        if entry.exists():  # a bad entry: move it aside, then put the new one in its place
            stale = entry.with_name(f".{entry.name}.{os.getpid()}.stale")
            os.rename(entry, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(build, entry)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return seconds


def _result(entry: Path, seconds: float, cached: bool, notice: str | None = None) -> CompileResult:
    log = entry / LOG
    text = log.read_text() if log.is_file() else ""
    ours, vendor = [], 0
    for line in text.splitlines():
        if ": warning:" not in line:
            continue
        if "/ap_types/" in line.split(":", 1)[0]:
            vendor += 1
        else:
            ours.append(line)
    record = json.loads((entry / RECORD).read_text())
    return CompileResult(entry / LIBRARY, seconds, cached, ours, vendor, record["config_hash"], record["sha256"],
                         notice)


class CsimLibrary:
    """ctypes view of a compiled kernel (see csim_bridge.cpp)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lib = ctypes.CDLL(str(self.path))
        self._lib.edgemoe_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                          ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self._lib.edgemoe_run.restype = ctypes.c_int
        self._lib.edgemoe_config_hash.restype = ctypes.c_uint
        self._lib.edgemoe_image_words.argtypes = [ctypes.c_int]
        self.max_tap_words = self._lib.edgemoe_max_tap_words()
        self.out_dtype = np.dtype(f"<i{self._lib.edgemoe_out_word_bits() // 8}")
        self.num_taps = self._lib.edgemoe_num_taps()
        self.config_hash = self._lib.edgemoe_config_hash()

    def image_words(self, tap: int) -> int:
        """Output words from one image's region of the activations buffer to the next in a call with ``tap``
        (whole bus words: ``KernelPlan.image_stride``)."""
        return self._lib.edgemoe_image_words(int(tap))

    def run(self, pixels: np.ndarray, weights: np.ndarray, task: int, num_images: int, tap: int,
            out: np.ndarray | None = None) -> tuple[np.ndarray, int, int]:
        """Call the top function once; returns (the activations buffer, config_hash, status).

        The activations buffer is the host's array of output words (``out_dtype``), ``num_images x
        image_words(tap)`` of them: ``out`` (written in place, as the device's memory: the kernel writes only
        its regions' bus words) or a zeroed one.  Its bytes are the kernel's bus words (``act_beat_t``)."""
        pix = np.ascontiguousarray(pixels, dtype=np.int32)
        w = np.ascontiguousarray(weights, dtype=np.int32)
        words = max(0, int(num_images)) * self.image_words(tap)
        if out is None:
            out = np.zeros(words, dtype=self.out_dtype)
        if out.dtype != self.out_dtype or not out.flags.c_contiguous or out.size < words:
            raise ValueError(f"the activations buffer must be {words} contiguous {self.out_dtype} words, got "
                             f"{out.size} {out.dtype}")
        scratch = np.zeros(1, dtype=np.int64)   # a valid pointer when the call writes nothing
        h = ctypes.c_uint32(0)
        st = ctypes.c_uint32(0)
        self._lib.edgemoe_run(pix.ctypes.data, w.ctypes.data, out.ctypes.data if words else scratch.ctypes.data,
                              int(task), int(num_images), int(tap), ctypes.byref(h), ctypes.byref(st))
        return out[:words], h.value, st.value
