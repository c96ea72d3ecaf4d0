"""The kernel's RTL as Vitis HLS exports it: where it is, and its port list.

``make hls`` in a generated project (``vitis_hls -f build_prj.tcl``, see
``hls/templates/Makefile.j2``) leaves the synthesised Verilog of the top
function ``edgemoe_vit`` in::

    <project dir>/edgemoe_vit_prj/solution1/syn/verilog/*.v     (csynth_design)
    <project dir>/edgemoe_vit_prj/solution1/impl/verilog/*.v    (export_design)

with the memory initialisation files (``*.dat``, read by ``$readmemh``)
beside them.  :func:`find_exported_rtl` returns the file list and the top
module (:class:`KernelRTL`) or raises :class:`NoExportedRTL`, naming the
folders searched, when there is none (no Vitis HLS here: the harness then
runs the stand-in of :mod:`edgemoe.sim.kernel.standin`).

The port names are Vitis HLS's for this top function (``hls/interface.py``:
every argument ``s_axilite``, the pointers ``m_axi`` in the bundles of
``edgemoe.hls.interface.m_axi_bundles``): ``ap_clk``, ``ap_rst_n`` (active low),
``interrupt``, ``s_axi_control_<AW|W|B|AR|R><signal>`` (32-bit data) and per
bundle ``m_axi_<bundle>_<signal>`` with the AXI4 set of :data:`M_AXI_SIGNALS`.
Vitis widens an m_axi port up to ``max_widen_bitwidth`` when it can prove
wide accesses, so the data width of a bundle is read from the RTL
(:func:`parse_ports` statically, ``len(dut.m_axi_<b>_WDATA)`` at run time),
never assumed.
"""
from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from edgemoe.hls.interface import TOP

#: Vitis HLS's project and solution names (hls/templates/build_prj.tcl.j2: open_project / open_solution)
PROJECT = f"{TOP}_prj"
SOLUTION = "solution1"
#: where the exported Verilog lies inside a solution, in order of preference
RTL_SUBDIRS = ("syn/verilog", "impl/verilog", "impl/ip/hdl/verilog")
#: where a solution may be, relative to the directory given (generated project, Vitis project, solution)
SOLUTION_DIRS = (f"{PROJECT}/{SOLUTION}", SOLUTION, ".")

#: AXI4 master signals Vitis HLS emits per m_axi bundle: (name, direction from the kernel, width).
#: Width: an int, or "addr" / "data" / "strb" / "id" / "user" (parameters of the bundle;
#: Vitis: 64-bit addresses with ``config_interface -m_axi_addr64``, 1-bit ID and USER).
#: AxLOCK is 2 bits wide in Vitis's ports (AXI3 heritage) and WID exists too.
M_AXI_SIGNALS: tuple[tuple[str, str, int | str], ...] = (
    ("AWVALID", "o", 1), ("AWREADY", "i", 1), ("AWADDR", "o", "addr"), ("AWID", "o", "id"),
    ("AWLEN", "o", 8), ("AWSIZE", "o", 3), ("AWBURST", "o", 2), ("AWLOCK", "o", 2), ("AWCACHE", "o", 4),
    ("AWPROT", "o", 3), ("AWQOS", "o", 4), ("AWREGION", "o", 4), ("AWUSER", "o", "user"),
    ("WVALID", "o", 1), ("WREADY", "i", 1), ("WDATA", "o", "data"), ("WSTRB", "o", "strb"), ("WLAST", "o", 1),
    ("WID", "o", "id"), ("WUSER", "o", "user"),
    ("ARVALID", "o", 1), ("ARREADY", "i", 1), ("ARADDR", "o", "addr"), ("ARID", "o", "id"),
    ("ARLEN", "o", 8), ("ARSIZE", "o", 3), ("ARBURST", "o", 2), ("ARLOCK", "o", 2), ("ARCACHE", "o", 4),
    ("ARPROT", "o", 3), ("ARQOS", "o", 4), ("ARREGION", "o", 4), ("ARUSER", "o", "user"),
    ("RVALID", "i", 1), ("RREADY", "o", 1), ("RDATA", "i", "data"), ("RLAST", "i", 1), ("RID", "i", "id"),
    ("RUSER", "i", "user"), ("RRESP", "i", 2),
    ("BVALID", "i", 1), ("BREADY", "o", 1), ("BRESP", "i", 2), ("BID", "i", "id"), ("BUSER", "i", "user"),
)
#: Vitis's s_axilite slave (no AxPROT): (name, direction from the kernel, width); "addr" = the map's width
S_AXI_SIGNALS: tuple[tuple[str, str, int | str], ...] = (
    ("AWVALID", "i", 1), ("AWREADY", "o", 1), ("AWADDR", "i", "addr"),
    ("WVALID", "i", 1), ("WREADY", "o", 1), ("WDATA", "i", 32), ("WSTRB", "i", 4),
    ("ARVALID", "i", 1), ("ARREADY", "o", 1), ("ARADDR", "i", "addr"),
    ("RVALID", "o", 1), ("RREADY", "i", 1), ("RDATA", "o", 32), ("RRESP", "o", 2),
    ("BVALID", "o", 1), ("BREADY", "i", 1), ("BRESP", "o", 2),
)
CONTROL_PREFIX = "s_axi_control"


def m_axi_prefix(bundle: str) -> str:
    return f"m_axi_{bundle}"


def bundles(cfg) -> dict[str, list[str]]:
    """m_axi bundle -> the pointer arguments in it, in argument order (args may share a bundle)."""
    from edgemoe.hls.interface import m_axi_bundles

    out: dict[str, list[str]] = {}
    for name, bundle in m_axi_bundles(cfg).items():
        out.setdefault(bundle, []).append(name)
    return out


def control_addr_bits(cfg) -> int:
    """Address width of the s_axilite slave: enough for the highest register word (as Vitis sizes it)."""
    from edgemoe.hls.interface import register_map

    top = 0
    for r in register_map(cfg)["registers"].values():
        top = max(top, r["offset"] + (8 if r.get("kind") == "pointer" else 4), r.get("ctrl_offset", 0) + 4)
    return (top - 1).bit_length()


class NoExportedRTL(FileNotFoundError):
    """No Verilog exported by Vitis HLS under a project directory."""

    def __init__(self, path: Path, searched: list[Path] | None = None):
        self.path = Path(path)
        self.searched = list(searched or [])
        super().__init__(f"no exported RTL under {self.path} (run `make hls` there; needs Vitis HLS, "
                         f"`vitis_hls` on PATH); searched {self.path}/{_brace(SOLUTION_DIRS)}/{_brace(RTL_SUBDIRS)}")


def _brace(items) -> str:
    return "{" + ",".join(items) + "}" if len(items) > 1 else items[0]


class KernelInterfaceError(RuntimeError):
    """The RTL's top module lacks ports the harness needs (not this kernel's interface)."""


@dataclass(frozen=True)
class Port:
    name: str
    direction: str        #: "input" / "output" / "inout"
    width: int | None     #: None when the range could not be evaluated


@dataclass
class KernelRTL:
    """Verilog sources of the kernel and its top module."""

    sources: list[Path]
    top: str = TOP
    data_files: list[Path] = field(default_factory=list)   #: $readmemh files, copied to the run folder
    origin: str = "exported"                                #: "exported" (Vitis HLS) or "stand-in"
    root: Path | None = None                                #: the folder the sources came from

    @cached_property
    def ports(self) -> dict[str, Port]:
        """Ports of the top module, read from the source that defines it."""
        for src in self.sources:
            text = Path(src).read_text(errors="replace")
            if re.search(rf"\bmodule\s+{re.escape(self.top)}\b", text):
                return parse_ports(text, self.top)
        raise KernelInterfaceError(f"no source of {self.describe()} defines module {self.top!r}")

    def describe(self) -> str:
        where = self.root if self.root is not None else (self.sources[0].parent if self.sources else "?")
        return f"{self.origin} RTL of {self.top} ({len(self.sources)} Verilog file(s) in {where})"

    def digest(self) -> str:
        """Hash of every source and data file (names the simulator build folder)."""
        import hashlib

        h = hashlib.sha256(self.top.encode())
        for p in [*self.sources, *self.data_files]:
            h.update(Path(p).name.encode())
            h.update(Path(p).read_bytes())
        return h.hexdigest()[:12]

    def axi_widths(self, cfg) -> dict[str, int | None]:
        """Data width of each m_axi bundle as declared in the RTL (None if not evaluable statically)."""
        return {b: self.ports[f"{m_axi_prefix(b)}_WDATA"].width for b in bundles(cfg)}

    def check_interface(self, cfg) -> None:
        """Raise :class:`KernelInterfaceError` unless the top has every port the harness drives for ``cfg``."""
        names = {n.lower(): p for n, p in self.ports.items()}
        want = ["ap_clk", "ap_rst_n"] + [f"{CONTROL_PREFIX}_{s}" for s, _, _ in S_AXI_SIGNALS]
        for b in bundles(cfg):
            # what cocotbext-axi's AxiRam needs (the rest of M_AXI_SIGNALS is optional to it)
            want += [f"{m_axi_prefix(b)}_{s}" for s in (
                "AWVALID", "AWREADY", "AWADDR", "AWID", "AWLEN", "AWSIZE", "AWBURST", "WVALID", "WREADY", "WDATA",
                "WLAST", "BVALID", "BREADY", "BID", "ARVALID", "ARREADY", "ARADDR", "ARID", "ARLEN", "ARSIZE",
                "ARBURST", "RVALID", "RREADY", "RDATA", "RLAST", "RID")]
        missing = [n for n in want if n.lower() not in names]
        if missing:
            have = sorted({m.group(1) for n in self.ports if (m := re.match(r"(m_axi_\w+?)_[A-Z]+$", n))})
            raise KernelInterfaceError(
                f"{self.describe()}: module {self.top} lacks {len(missing)} port(s) of this config's interface, "
                f"e.g. {', '.join(missing[:6])} (m_axi bundles expected: {', '.join(bundles(cfg))}; "
                f"found: {', '.join(have) or 'none'}) -- RTL of another config or another top?")


def candidate_dirs(project: Path) -> list[Path]:
    """Folders that may hold exported Verilog: ``project`` may be the generated project,
    the Vitis project (``edgemoe_vit_prj``) or the solution folder."""
    project = Path(project)
    return [project / s / sub for s in SOLUTION_DIRS for sub in RTL_SUBDIRS]


def find_exported_rtl(project: Path | str, top: str = TOP) -> KernelRTL:
    """The Verilog Vitis HLS exported under ``project`` (see the module doc), or :class:`NoExportedRTL`."""
    project = Path(project)
    searched = candidate_dirs(project)
    for d in searched:
        sources = sorted(d.glob("*.v"))
        if not sources:
            continue
        defining = [s for s in sources if re.search(rf"\bmodule\s+{re.escape(top)}\b",
                                                    s.read_text(errors="replace"))]
        if not defining:
            continue
        data = sorted(p for p in d.iterdir() if p.suffix in (".dat", ".mem", ".hex") and p.is_file())
        return KernelRTL(sources, top, data, "exported", d)
    raise NoExportedRTL(project, searched)


# --- static port list ------------------------------------------------------------------

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
        ast.Div: operator.floordiv, ast.Mod: operator.mod, ast.LShift: operator.lshift, ast.RShift: operator.rshift,
        ast.Pow: operator.pow}


def _eval(expr: str, params: dict[str, int]) -> int:
    """A Verilog constant expression of integers, parameters and + - * / % << >> ** ( )."""
    text = re.sub(r"\d+'[sS]?[dD](\d+)", r"\1", expr.strip())
    text = re.sub(r"\d+'[sS]?[hH]([0-9a-fA-F_]+)", lambda m: str(int(m.group(1).replace("_", ""), 16)), text)
    text = re.sub(r"\d+'[sS]?[bB]([01_]+)", lambda m: str(int(m.group(1).replace("_", ""), 2)), text)
    text = text.replace("$clog2", "_clog2")

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in params:
            return params[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_clog2" and len(node.args) == 1:
            return max(int(ev(node.args[0]) - 1).bit_length(), 0)
        raise ValueError(expr)

    return int(ev(ast.parse(text, mode="eval")))


def parse_ports(text: str, module: str = TOP) -> dict[str, Port]:
    """Ports of ``module`` in Verilog ``text`` (ANSI or non-ANSI headers; widths through parameters)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"\(\*.*?\*\)", " ", text, flags=re.S)
    m = re.search(rf"\bmodule\s+{re.escape(module)}\b(.*?)\bendmodule\b", text, flags=re.S)
    if not m:
        raise KernelInterfaceError(f"module {module} not found")
    body = m.group(1)
    params: dict[str, int] = {}
    for pm in re.finditer(r"\b(?:parameter|localparam)\b\s*(?:integer\s+|\[[^\]]*\]\s*)?(\w+)\s*=\s*"
                          r"((?:[^;,()]|\([^()]*\))+)", body):
        try:
            params[pm.group(1)] = _eval(pm.group(2), params)
        except (ValueError, SyntaxError, ZeroDivisionError):
            pass
    ports: dict[str, Port] = {}
    decl = re.compile(r"\b(input|output|inout)\b\s*(?:wire|reg|logic)?\s*(?:signed\s*)?(\[[^\]]*\])?\s*"
                      r"((?:\\?\w+\s*,\s*)*\\?\w+)\s*(?=[;,)=])")
    for dm in decl.finditer(body):
        direction, rng, names = dm.group(1), dm.group(2), dm.group(3)
        width: int | None = 1
        if rng:
            try:
                hi, lo = rng[1:-1].split(":", 1)
                width = abs(_eval(hi, params) - _eval(lo, params)) + 1
            except (ValueError, SyntaxError, ZeroDivisionError):
                width = None
        for n in re.split(r"\s*,\s*", names.strip()):
            n = n.lstrip("\\")
            if n in ("input", "output", "inout", "wire", "reg", "logic", "signed"):
                continue
            ports.setdefault(n, Port(n, direction, width))
    return ports
