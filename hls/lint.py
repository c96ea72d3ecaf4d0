"""Synthesizability and performance checks of generated kernel code (what Vitis HLS would reject or mis-build).

Vitis HLS is not on these machines, so the rules it enforces are checked on
the source text of the kernel (not the csim bridge or the testbench):

- no dynamic memory (new, delete, malloc, calloc, realloc, free);
- no STL containers or other std:: library types;
- no recursion (direct or through other functions of the kernel);
- every loop has constant bounds or a LOOP_TRIPCOUNT pragma; no while loops;
- no floating point (float, double, floating literals);
- every pointer argument of the top function has an m_axi INTERFACE pragma and
  every argument an s_axilite one.

The performance rules (:data:`PERF_RULES`, each a named rule) catch code that
Vitis builds, but slow or oversized.  They read a loop tree of every file
(labels, bodies, PIPELINE / UNROLL pragmas) and the call graph: a function
called from a pipelined loop is under that pipeline too, and a pointer
argument passed down from the top function's m_axi ports is an m_axi pointer
in the callee.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

KERNEL_FILES = ("src/edgemoe_vit.cpp", "include/edgemoe_kernel.h", "include/edgemoe_config.h",
                "include/edgemoe_numerics.h")

#: the performance rules: name -> what it flags
PERF_RULES = {
    "allocation-scope": "an ALLOCATION pragma limiting function F outside the function that holds F's calls "
                        "(it limits instances at its own level of the hierarchy only), or F not kept a "
                        "function (INLINE off)",
    "unroll-in-pipeline": "UNROLL factor=N under a PIPELINE'd loop: Vitis unrolls everything under a pipeline "
                          "fully, whatever the factor",
    "conditional-axi-read": "an m_axi pointer read under a condition (ternary, if, or after a continue / break) "
                            "in a pipelined loop: no burst is inferred",
    "shared-bundle-loop": "two different arrays or offsets read from one m_axi bundle in one loop body: "
                          "no burst for either",
    "unpipelined-loop": "an innermost loop with neither PIPELINE nor UNROLL (nor a pipelined or unrolled parent) "
                        "and no '// sequential: <reason>' comment on its line or the line above",
}
#: the comment that says why a loop stays sequential
SEQUENTIAL_REASON = re.compile(r"//\s*sequential:\s*\S")


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    rule: str
    text: str
    #: why the rule fired (performance rules)
    detail: str = ""

    def __str__(self) -> str:
        out = f"{self.file}:{self.line}: {self.rule}: {self.text.strip()}"
        return f"{out}  [{self.detail}]" if self.detail else out


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


def _close(code: str, i: int) -> int:
    """Index just past the bracket that closes the one at ``code[i]``."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    open_ch, close_ch = code[i], pairs[code[i]]
    depth = 0
    for j in range(i, len(code)):
        if code[j] == open_ch:
            depth += 1
        elif code[j] == close_ch:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


def _function_defs(src: str) -> dict[str, tuple[str, int, int]]:
    """Function name -> (parameter text, body start, body end) for functions defined in ``src``."""
    out = {}
    for m in _FUNC_DEF.finditer(src):
        name = m.group(1)
        if name in _CONTROL:
            continue
        out[name] = (m.group(2), m.end(), _close(src, m.end() - 1) - 1)
    return out


def _functions(src: str) -> dict[str, tuple[int, int]]:
    """Function name -> (body start, body end) for functions defined in ``src``."""
    return {name: (a, b) for name, (_, a, b) in _function_defs(src).items()}


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


# --- the loop tree and the call graph (performance rules) ------------------------------------------

_STMT_KEYWORD = re.compile(r"(for|while|if|switch)\s*\(")
_STMT_LABEL = re.compile(r"(\w+)\s*:(?!:)")


def _skip_space(code: str, i: int) -> int:
    while i < len(code) and code[i].isspace():
        i += 1
    return i


def _statement_end(code: str, i: int) -> int:
    """Index just past the statement that starts at (or after white space from) ``i``."""
    i = _skip_space(code, i)
    if i >= len(code):
        return i
    if code[i] == "{":
        return _close(code, i)
    m = _STMT_KEYWORD.match(code, i)
    if m:
        end = _statement_end(code, _close(code, m.end() - 1))
        if m.group(1) == "if":
            j = _skip_space(code, end)
            if re.match(r"else\b", code[j:j + 5]):
                end = _statement_end(code, j + 4)
        return end
    m = _STMT_LABEL.match(code, i)
    if m and m.group(1) not in ("else", "return"):
        return _statement_end(code, m.end())
    depth = 0
    for j in range(i, len(code)):
        c = code[j]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return j
        elif c == ";" and depth == 0:
            return j + 1
    return len(code)


def _split_top(text: str, brackets: str = "([{") -> list[str]:
    """``text`` split at the commas outside every bracket of ``brackets`` (and their closers)."""
    closers = {"(": ")", "[": "]", "{": "}", "<": ">"}
    opens, shuts = set(brackets), {closers[b] for b in brackets}
    parts, depth, start = [], 0, 0
    for j, c in enumerate(text):
        if c in opens:
            depth += 1
        elif c in shuts:
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:j])
            start = j + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def _param(text: str) -> tuple[str, bool]:
    """(name, is a pointer) of one parameter declaration."""
    decl = re.sub(r"\[.*", "", text.strip())
    names = re.findall(r"\w+", decl)
    return (names[-1] if names else ""), "*" in decl


@dataclass(eq=False)
class _Loop:
    pos: int                      # of the ``for`` keyword
    body: tuple[int, int]         # [start, end) of its body statement
    label: str | None
    func: str
    parent: "_Loop | None" = None
    children: list = field(default_factory=list)
    pipelined: bool = False
    unrolled: bool = False
    unroll_factor: str | None = None
    calls: set = field(default_factory=set)   # functions called in its body

    def contains(self, pos: int) -> bool:
        return self.body[0] <= pos < self.body[1]

    def ancestors(self):
        a = self.parent
        while a is not None:
            yield a
            a = a.parent

    @property
    def name(self) -> str:
        return self.label or "unlabelled loop"


@dataclass
class _Read:
    pos: int
    pointer: str
    bundle: str
    index: str
    func: str


class _Kernel:
    """The loop tree, call graph, call contexts and m_axi reads of one file's code (comments stripped)."""

    def __init__(self, code: str, top: str | None):
        self.code = code
        self.defs = _function_defs(code)
        self.calls = self._call_sites()
        self.loops = self._loop_tree()
        self.pipe_any, self.covered_all = self._contexts()
        self.has_loops = self._has_loops()
        self.axi = self._axi_pointers(top)
        self.reads = self._reads()

    def func_at(self, pos: int) -> str | None:
        for name, (_, a, b) in self.defs.items():
            if a <= pos < b:
                return name
        return None

    def loop_at(self, pos: int) -> _Loop | None:
        """The innermost loop whose body holds ``pos`` (a loop's own ``for`` is not in its body)."""
        best = None
        for lp in self.loops:
            if lp.contains(pos) and (best is None or lp.body[0] >= best.body[0]):
                best = lp
        return best

    def _call_sites(self) -> dict[str, list[tuple[int, str]]]:
        """Function -> [(position of the call, calling function)]."""
        out: dict[str, list[tuple[int, str]]] = {f: [] for f in self.defs}
        for caller, (_, a, b) in self.defs.items():
            for f in self.defs:
                for m in re.finditer(rf"\b{f}\s*\(", self.code[a:b]):
                    out[f].append((a + m.start(), caller))
        return out

    def _loop_tree(self) -> list[_Loop]:
        code, loops = self.code, []
        for m in re.finditer(r"\bfor\s*\(", code):
            func = self.func_at(m.start())
            if func is None:
                continue
            head_end = _close(code, m.end() - 1)
            start = _skip_space(code, head_end)
            line_start = code.rfind("\n", 0, m.start()) + 1
            label = re.search(r"(\w+)\s*:\s*$", code[line_start:m.start()])
            loops.append(_Loop(m.start(), (start, _statement_end(code, start)), label.group(1) if label else None,
                               func))
        self.loops = loops
        for lp in loops:
            lp.parent = self.loop_at(lp.pos)
            if lp.parent:
                lp.parent.children.append(lp)
        # a PIPELINE / UNROLL pragma belongs to the innermost loop around it; a PIPELINE outside every loop
        # pipelines its function
        self.func_pipelined = set()
        for m in re.finditer(r"#pragma\s+HLS\s+(PIPELINE|UNROLL)\b([^\n]*)", code, re.I):
            kind, args = m.group(1).upper(), m.group(2)
            owner = self.loop_at(m.start())
            if owner is None:
                func = self.func_at(m.start())
                if func and kind == "PIPELINE" and not re.search(r"\boff\b", args, re.I):
                    self.func_pipelined.add(func)
            elif kind == "PIPELINE":
                owner.pipelined = not re.search(r"\boff\b", args, re.I)
            else:
                owner.unrolled = True
                factor = re.search(r"\bfactor\s*=\s*(\w+)", args)
                owner.unroll_factor = factor.group(1) if factor else None
        for f, sites in self.calls.items():
            for pos, _ in sites:
                for lp in loops:
                    if lp.contains(pos):
                        lp.calls.add(f)
        return loops

    def _contexts(self) -> tuple[set[str], set[str]]:
        """Functions called under a pipeline (at any call site), and those whose every call is pipelined or unrolled."""
        pipe_any, covered_all = set(self.func_pipelined), set(self.func_pipelined)
        changed = True
        while changed:
            changed = False
            for f, sites in self.calls.items():
                if not sites:
                    continue
                pipes, covers = [], []
                for pos, caller in sites:
                    chain = [lp for lp in self.loops if lp.contains(pos)]
                    pipes.append(caller in pipe_any or any(lp.pipelined for lp in chain))
                    covers.append(caller in covered_all or any(lp.pipelined or lp.unrolled for lp in chain))
                if any(pipes) and f not in pipe_any:
                    pipe_any.add(f)
                    changed = True
                if all(covers) and f not in covered_all:
                    covered_all.add(f)
                    changed = True
        return pipe_any, covered_all

    def _has_loops(self) -> set[str]:
        out = {lp.func for lp in self.loops}
        changed = True
        while changed:
            changed = False
            for f, sites in self.calls.items():
                if f in out:
                    for _, caller in sites:
                        if caller not in out:
                            out.add(caller)
                            changed = True
        return out

    def under_pipeline(self, lp: _Loop) -> _Loop | str | None:
        """The pipelined loop (or the function called under a pipeline) above ``lp``, if any."""
        for a in lp.ancestors():
            if a.pipelined:
                return a
        return lp.func if lp.func in self.pipe_any else None

    def covered(self, lp: _Loop) -> bool:
        """Pipelined or unrolled, or under a pipelined or unrolled loop (here or at every call)."""
        return (lp.pipelined or lp.unrolled or any(a.pipelined or a.unrolled for a in lp.ancestors())
                or lp.func in self.covered_all)

    def innermost(self, lp: _Loop) -> bool:
        return not lp.children and not (lp.calls & self.has_loops)

    def _axi_pointers(self, top: str | None) -> dict[str, dict[str, str]]:
        """Function -> {m_axi pointer parameter: bundle}: the top's m_axi ports and what they are passed as."""
        axi: dict[str, dict[str, str]] = {f: {} for f in self.defs}
        if not top or top not in self.defs:
            return axi
        params, a, b = self.defs[top]
        body = self.code[a:b]
        for text in _split_top(params, "([{<"):
            name, pointer = _param(text)
            prag = re.search(rf"#pragma\s+HLS\s+INTERFACE\s+m_axi\b[^\n]*\bport={name}\b[^\n]*", body)
            if pointer and prag:
                bundle = re.search(r"\bbundle=(\w+)", prag.group(0))
                axi[top][name] = bundle.group(1) if bundle else "gmem"
        changed = True
        while changed:
            changed = False
            for f, sites in self.calls.items():
                callee_params = [_param(t) for t in _split_top(self.defs[f][0], "([{<")]
                for pos, caller in sites:
                    if not axi[caller]:
                        continue
                    open_paren = self.code.index("(", pos)
                    args = _split_top(self.code[open_paren + 1:_close(self.code, open_paren) - 1])
                    for (pname, pointer), arg in zip(callee_params, args):
                        hit = [w for w in re.findall(r"\w+", arg) if w in axi[caller]]
                        if pointer and hit and pname not in axi[f]:
                            axi[f][pname] = axi[caller][hit[0]]
                            changed = True
        return axi

    def _reads(self) -> list[_Read]:
        out = []
        for f, ports in self.axi.items():
            if not ports:
                continue
            _, a, b = self.defs[f]
            for m in re.finditer(rf"\b({'|'.join(map(re.escape, ports))})\s*\[", self.code[a:b]):
                open_br = a + m.end() - 1
                close = _close(self.code, open_br)
                if re.match(r"\s*=(?!=)", self.code[close:close + 3]):
                    continue  # a write
                index = re.sub(r"\s+", "", self.code[open_br + 1:close - 1])
                out.append(_Read(a + m.start(), m.group(1), ports[m.group(1)], index, f))
        return out

    # --- conditions of a read -------------------------------------------------------------
    def pipeline_region(self, pos: int, func: str) -> int | None:
        """Start of the outermost pipelined region holding ``pos`` (a loop body, or the function's body)."""
        if func in self.pipe_any:
            return self.defs[func][1]
        starts = [lp.body[0] for lp in self.loops if lp.contains(pos) and lp.pipelined]
        return min(starts) if starts else None

    def condition_of(self, pos: int, region: int) -> str | None:
        """What makes the code at ``pos`` conditional within the region starting at ``region`` (None: nothing)."""
        code = self.code
        stmt = max(code.rfind(";", region, pos), code.rfind("{", region, pos), code.rfind("}", region, pos), region)
        depth, questions = 0, []
        for c in code[stmt:pos]:
            if c in "([":
                depth += 1
            elif c in ")]":
                depth -= 1
                while questions and questions[-1] > depth:
                    questions.pop()
            elif c == "?":
                questions.append(depth)
            elif c == "," and questions and questions[-1] == depth:
                questions.pop()
        if questions:
            return "a ternary branch"
        for m in re.finditer(r"\bif\s*\(", code[region:pos]):
            cond_end = _close(code, region + m.end() - 1)
            if cond_end <= pos < _statement_end(code, cond_end) or self._in_else(region + m.start(), pos):
                return f"the if on line {_line_of(code, region + m.start())}"
        inner = self.loop_at(pos)
        for m in re.finditer(r"\b(continue|break|return)\b", code[region:pos]):
            at = region + m.start()
            holder = self.loop_at(at)
            if m.group(1) == "return" or holder is None or holder is inner or \
                    (inner is not None and holder in inner.ancestors()):
                return f"the {m.group(1)} on line {_line_of(code, at)}"
        return None

    def _in_else(self, if_pos: int, pos: int) -> bool:
        code = self.code
        cond_end = _close(code, code.index("(", if_pos))
        then_end = _statement_end(code, cond_end)
        j = _skip_space(code, then_end)
        return bool(re.match(r"else\b", code[j:j + 5])) and j <= pos < _statement_end(code, j + 4)


def _perf_violations(code: str, src: str, top: str | None) -> list[tuple[int, str, str]]:
    """(position, rule, detail) of every performance-rule finding in one file."""
    k = _Kernel(code, top)
    found: list[tuple[int, str, str]] = []
    raw = src.splitlines()

    # allocation-scope
    for m in re.finditer(r"#pragma\s+HLS\s+ALLOCATION\b([^\n]*)", code, re.I):
        args = m.group(1)
        target = re.search(r"\binstances\s*=\s*(\w+)", args)
        if not target or not re.search(r"\bfunction\b", args):
            continue
        f, holder = target.group(1), k.func_at(m.start())
        sites = k.calls.get(f, [])
        if holder is None:
            found.append((m.start(), "allocation-scope", f"outside every function: it limits no call of {f}"))
            continue
        elsewhere = sorted({caller for _, caller in sites if caller != holder})
        if elsewhere:
            own = sum(1 for _, caller in sites if caller == holder)
            found.append((m.start(), "allocation-scope",
                          f"in {holder} ({own} calls of {f}), but {f} is called in {', '.join(elsewhere)}: "
                          f"the pragma limits instances at its own level only; state it where the calls are"))
        if f in k.defs:
            _, a, b = k.defs[f]
            if not re.search(r"#pragma\s+HLS\s+INLINE\s+off\b", code[a:b], re.I):
                found.append((m.start(), "allocation-scope",
                              f"{f} has no '#pragma HLS INLINE off': an inlined function has no instances to share"))

    for lp in k.loops:
        # unroll-in-pipeline
        if lp.unrolled and lp.unroll_factor is not None:
            above = k.under_pipeline(lp)
            if above is not None:
                where = f"the PIPELINE of {above.name}" if isinstance(above, _Loop) else \
                    f"a pipeline ({above} is called from a pipelined loop)"
                found.append((lp.pos, "unroll-in-pipeline",
                              f"{lp.name}: UNROLL factor={lp.unroll_factor} under {where}: Vitis unrolls it "
                              f"fully; write UNROLL"))
        # unpipelined-loop
        if k.innermost(lp) and not k.covered(lp):
            ln = _line_of(code, lp.pos)
            lines = [raw[i - 1] for i in (ln, ln - 1) if 0 < i <= len(raw)]
            if not any(SEQUENTIAL_REASON.search(t) for t in lines):
                found.append((lp.pos, "unpipelined-loop",
                              f"{lp.name}: innermost loop without PIPELINE or UNROLL; pipeline it or say why not "
                              f"with '// sequential: <reason>'"))
        # shared-bundle-loop: a pipelined loop issues every read inside it each iteration; another loop breaks
        # the bursts of its inner loops when it reads between them itself
        inside = [r for r in k.reads if lp.contains(r.pos)]
        reads = inside if lp.pipelined or any(k.loop_at(r.pos) is lp for r in inside) else []
        by_bundle: dict[str, list[_Read]] = {}
        for r in reads:
            by_bundle.setdefault(r.bundle, []).append(r)
        for bundle, rs in by_bundle.items():
            distinct: dict[tuple[str, str], _Read] = {}
            for r in rs:
                distinct.setdefault((r.pointer, r.index), r)
            if len(distinct) > 1:
                second = list(distinct.values())[1]
                spelled = ", ".join(f"{p}[{i}]" for p, i in distinct)
                found.append((second.pos, "shared-bundle-loop",
                              f"{lp.name} reads {spelled} from bundle {bundle}: split the reads into loops of "
                              f"their own"))

    # conditional-axi-read
    for r in k.reads:
        region = k.pipeline_region(r.pos, r.func)
        if region is None:
            continue
        why = k.condition_of(r.pos, region)
        if why:
            found.append((r.pos, "conditional-axi-read",
                          f"{r.pointer}[{r.index}] (bundle {r.bundle}) is read under {why} in a pipelined "
                          f"region: read an unconditional, contiguous range"))
    return sorted(found)


def check_source(name: str, src: str, top: str | None = None, constants: set[str] | None = None) -> list[Violation]:
    """Violations in one file's text (``top``: the top function, whose m_axi ports the read rules follow)."""
    code = _strip_comments(src)
    found: list[Violation] = []
    lines = src.splitlines()

    def add(pos: int, rule: str, detail: str = "") -> None:
        ln = _line_of(code, pos)
        found.append(Violation(name, ln, rule, lines[ln - 1] if ln - 1 < len(lines) else "", detail))

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
    for pos, rule, detail in _perf_violations(code, src, top):
        add(pos, rule, detail)
    return found


def check_sources(texts: dict[str, str], top: str = "edgemoe_vit") -> list[Violation]:
    """Violations in the kernel files of ``texts`` (relative path -> text; others are ignored)."""
    kernel = {rel: text for rel, text in texts.items() if rel in KERNEL_FILES}
    constants = set()
    for text in kernel.values():
        constants |= constant_names(_strip_comments(text))
    out = []
    for rel, text in kernel.items():
        out += check_source(rel, text, top if rel.endswith(".cpp") else None, constants)
    return out


def check_project(project_dir: str | Path, top: str = "edgemoe_vit") -> list[Violation]:
    """Violations in every kernel file of a generated project."""
    project_dir = Path(project_dir)
    return check_sources({rel: (project_dir / rel).read_text() for rel in KERNEL_FILES}, top)
