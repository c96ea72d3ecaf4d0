"""Synthesizability checks of generated kernel code (what Vitis HLS would reject or mis-build).

Vitis HLS is not on these machines, so the rules it enforces are checked on
the source text of the kernel (not the csim bridge or the testbench):

- no dynamic memory (new, delete, malloc, calloc, realloc, free);
- no STL containers or other std:: library types;
- no recursion (direct or through other functions of the kernel);
- every loop has constant bounds or a LOOP_TRIPCOUNT pragma; no while loops;
- no floating point (float, double, floating literals);
- every pointer argument of the top function has an m_axi INTERFACE pragma and
  every argument an s_axilite one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

KERNEL_FILES = ("src/edgemoe_vit.cpp", "include/edgemoe_kernel.h", "include/edgemoe_config.h",
                "include/edgemoe_numerics.h")


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    rule: str
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.text.strip()}"


def _strip_comments(src: str) -> str:
    """Remove comments and string literals, keeping line numbers."""
    def blank(m: re.Match) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))
    src = re.sub(r"/\*.*?\*/", blank, src, flags=re.S)
    src = re.sub(r"//[^\n]*", blank, src)
    return re.sub(r'"(?:\\.|[^"\\])*"', blank, src)


def _line_of(src: str, pos: int) -> int:
    return src.count("\n", 0, pos) + 1


_CONTROL = {"if", "for", "while", "switch", "return", "sizeof", "defined"}
_FUNC_DEF = re.compile(r"^[ \t]*(?:template\s*<[^>]*>\s*)?(?:static\s+)?(?:inline\s+)?"
                       r"[\w:<>,\s\*&]+?\b(\w+)\s*\(([^;{}]*)\)\s*\{", re.M)


def _functions(src: str) -> dict[str, tuple[int, int]]:
    """Function name -> (body start, body end) for functions defined in ``src``."""
    out = {}
    for m in _FUNC_DEF.finditer(src):
        name = m.group(1)
        if name in _CONTROL:
            continue
        depth, i = 0, m.end() - 1
        while i < len(src):
            if src[i] == "{":
                depth += 1
            elif src[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        out[name] = (m.end(), i)
    return out


def _loop_bounded(cond: str, body_head: str, constants: set[str]) -> bool:
    if "LOOP_TRIPCOUNT" in body_head:
        return True
    m = re.match(r"\s*\w+\s*(<=|<|>=|>|!=)\s*(.+?)\s*$", cond)
    if not m:
        return False
    bound = m.group(2)
    tokens = re.findall(r"[A-Za-z_]\w*", bound)
    return all(t in constants for t in tokens)


def constant_names(code: str) -> set[str]:
    """Names declared const (every declarator of a const statement), #defined or enumerated."""
    names = set(re.findall(r"#define\s+(\w+)", code))
    for m in re.finditer(r"\bconst\s+[^;(){}]*;", code):
        names |= set(re.findall(r"(?:^|,)\s*(?:\w+\s+)*?(\w+)\s*(?:=|\[)", m.group(0)[5:]))
    for m in re.finditer(r"\benum\s*\w*\s*\{([^}]*)\}", code):
        names |= set(re.findall(r"(\w+)\s*(?:=|,|$)", m.group(1)))
    return names


def check_source(name: str, src: str, top: str | None = None, constants: set[str] | None = None) -> list[Violation]:
    """Violations in one file's text."""
    code = _strip_comments(src)
    found: list[Violation] = []
    lines = src.splitlines()

    def add(pos: int, rule: str) -> None:
        ln = _line_of(code, pos)
        found.append(Violation(name, ln, rule, lines[ln - 1] if ln - 1 < len(lines) else ""))

    for m in re.finditer(r"\bnew\b|\bdelete\b|\b(?:malloc|calloc|realloc|free)\s*\(", code):
        add(m.start(), "dynamic memory")
    for m in re.finditer(r"\bstd::\w+|#include\s*<(?:vector|map|set|list|deque|string|unordered_\w+|memory)>", code):
        add(m.start(), "STL / std library")
    for m in re.finditer(r"\b(?:float|double)\b|(?<![\w.])\d+\.\d*(?:[eE][-+]?\d+)?[fF]?\b|\b\d+[eE][-+]?\d+\b", code):
        add(m.start(), "floating point")
    for m in re.finditer(r"\bwhile\s*\(", code):
        add(m.start(), "unbounded loop (while)")
    consts = set(constants or ()) | constant_names(code)
    for m in re.finditer(r"\bfor\s*\(([^;]*);([^;]*);([^)]*)\)", code):
        head = code[m.end():m.end() + 200]
        if not _loop_bounded(m.group(2), head, consts):
            add(m.start(), "loop without constant bound or LOOP_TRIPCOUNT")
    funcs = _functions(code)
    calls = {f: {g for g in funcs if re.search(rf"\b{g}\s*\(", code[a:b])} for f, (a, b) in funcs.items()}
    for f in funcs:
        seen, stack = set(), list(calls[f])
        while stack:
            g = stack.pop()
            if g == f:
                add(funcs[f][0], f"recursion ({f})")
                break
            if g not in seen:
                seen.add(g)
                stack.extend(calls.get(g, ()))
    if top and top in funcs:
        sig = re.search(rf"\b{top}\s*\(([^)]*)\)\s*\{{", code)
        body = code[funcs[top][0]:funcs[top][1]]
        for param in sig.group(1).split(","):
            pname = re.findall(r"\w+", param)[-1]
            if "*" in param and not re.search(rf"#pragma HLS INTERFACE \w+ port={pname}\b", body):
                add(sig.start(), f"pointer argument '{pname}' has no INTERFACE pragma")
            if "*" in param and param.strip().startswith("const") and \
                    not re.search(rf"#pragma HLS INTERFACE m_axi port={pname}\b", body):
                add(sig.start(), f"input array '{pname}' has no m_axi INTERFACE pragma")
            if not re.search(rf"#pragma HLS INTERFACE s_axilite port={pname}\b", body):
                add(sig.start(), f"argument '{pname}' has no s_axilite INTERFACE pragma")
    return found


def check_project(project_dir: str | Path, top: str = "edgemoe_vit") -> list[Violation]:
    """Violations in every kernel file of a generated project."""
    project_dir = Path(project_dir)
    texts = {rel: (project_dir / rel).read_text() for rel in KERNEL_FILES}
    constants = set()
    for text in texts.values():
        constants |= constant_names(_strip_comments(text))
    out = []
    for rel, text in texts.items():
        out += check_source(rel, text, top if rel.endswith(".cpp") else None, constants)
    return out
