"""The performance rules of the kernel lint: each flags a crafted snippet that breaks it and passes one that keeps it;
the generated kernel keeps every rule for every config shape, and seeding it with a broken pattern is caught."""
from __future__ import annotations

import pytest

from edgemoe.hls.lint import PERF_RULES, check_source, check_sources
from edgemoe.hls.writer import SOURCES, render
from edgemoe.loading import load_config

#: a top function with three m_axi ports: a and b share bundle gmem0, out is on gmem1
TOP = """static const int N = 16, M = 4;
{helpers}
void top(const int* a, const int* b, int* out) {{
#pragma HLS INTERFACE m_axi port=a offset=slave bundle=gmem0 depth=64
#pragma HLS INTERFACE m_axi port=b offset=slave bundle=gmem0 depth=64
#pragma HLS INTERFACE m_axi port=out offset=slave bundle=gmem1 depth=64
#pragma HLS INTERFACE s_axilite port=a
#pragma HLS INTERFACE s_axilite port=b
#pragma HLS INTERFACE s_axilite port=out
#pragma HLS INTERFACE s_axilite port=return
{body}
}}
"""


def found(body: str, helpers: str = "", rule: str | None = None) -> list:
    """The violations of ``rule`` (every rule when None) in TOP with ``body`` and ``helpers``."""
    vs = check_source("k.cpp", TOP.format(body=body, helpers=helpers), top="top")
    return [v for v in vs if rule is None or v.rule == rule]


def test_every_rule_is_named_and_described():
    assert set(PERF_RULES) == {"allocation-scope", "unroll-in-pipeline", "conditional-axi-read",
                               "shared-bundle-loop", "unpipelined-loop"}
    assert all(PERF_RULES.values())


def test_clean_snippet_passes_every_rule():
    body = """    int buf[N];
    READ: for (int i = 0; i < N; i++) {
#pragma HLS PIPELINE II=1
        buf[i] = a[i];
    }
    WRITE: for (int i = 0; i < N; i++) {
#pragma HLS PIPELINE II=1
        out[i] = buf[i] + 1;
    }"""
    assert found(body) == []


# --- allocation-scope ---------------------------------------------------------------------------------

UNIT = """static void unit(const int* w, int* y) {{
{inline}    UNIT_L: for (int i = 0; i < N; i++) {{
#pragma HLS PIPELINE II=1
        y[i] = w[i];
    }}
}}
static void run(const int* w, int* y) {{
{pragma_in_run}    unit(w, y);
    unit(w + N, y);
}}
"""
LIMIT = "#pragma HLS ALLOCATION function instances=unit limit=1\n"
INLINE_OFF = "#pragma HLS INLINE off\n"


def test_allocation_in_a_function_without_the_calls_is_flagged():
    helpers = UNIT.format(inline=INLINE_OFF, pragma_in_run="")
    body = LIMIT + "    run(a, out);"
    vs = found(body, helpers, "allocation-scope")
    assert len(vs) == 1 and "called in run" in vs[0].detail and vs[0].file == "k.cpp"
    lines = TOP.format(body=body, helpers=helpers).splitlines()
    assert vs[0].text == LIMIT.strip() and lines[vs[0].line - 1] == LIMIT.strip()


def test_allocation_beside_the_calls_with_inline_off_passes():
    helpers = UNIT.format(inline=INLINE_OFF, pragma_in_run=LIMIT)
    assert found("    run(a, out);", helpers) == []


def test_allocation_of_an_inlinable_function_is_flagged():
    helpers = UNIT.format(inline="", pragma_in_run=LIMIT)
    vs = found("    run(a, out);", helpers, "allocation-scope")
    assert len(vs) == 1 and "INLINE off" in vs[0].detail


def test_allocation_with_calls_in_two_functions_is_flagged():
    helpers = UNIT.format(inline=INLINE_OFF, pragma_in_run=LIMIT)
    vs = found("    run(a, out);\n    unit(b, out);", helpers, "allocation-scope")
    assert len(vs) == 1 and "called in top" in vs[0].detail


# --- unroll-in-pipeline -------------------------------------------------------------------------------

def _nest(unroll: str) -> str:
    return f"""    int acc[M];
    OUTER: for (int i = 0; i < N; i++) {{
#pragma HLS PIPELINE II=1
        INNER: for (int j = 0; j < M; j++) {{
#pragma HLS {unroll}
            acc[j] += i;
        }}
    }}
    OUT_L: for (int j = 0; j < M; j++) {{
#pragma HLS PIPELINE II=1
        out[j] = acc[j];
    }}"""


def test_partial_unroll_under_a_pipeline_is_flagged():
    vs = found(_nest("UNROLL factor=2"), rule="unroll-in-pipeline")
    assert len(vs) == 1 and "INNER" in vs[0].text and "OUTER" in vs[0].detail


def test_full_unroll_under_a_pipeline_passes():
    assert found(_nest("UNROLL")) == []


def test_partial_unroll_without_a_pipeline_passes():
    body = """    int acc[N];
    ALONE: for (int j = 0; j < N; j++) {
#pragma HLS UNROLL factor=2
        acc[j] = j;
    }
    OUT_L: for (int j = 0; j < N; j++) {
#pragma HLS PIPELINE II=1
        out[j] = acc[j];
    }"""
    assert found(body, rule="unroll-in-pipeline") == []


def test_partial_unroll_in_a_function_called_from_a_pipeline_is_flagged():
    helpers = """static int dot(const int x[M]) {
#pragma HLS INLINE
    int s = 0;
    DOT: for (int d = 0; d < M; d++) {
#pragma HLS UNROLL factor=2
        s += x[d];
    }
    return s;
}"""
    body = """    int x[M];
    CALLER: for (int i = 0; i < N; i++) {
#pragma HLS PIPELINE II=1
        out[i] = dot(x);
    }"""
    vs = found(body, helpers, "unroll-in-pipeline")
    assert len(vs) == 1 and "DOT" in vs[0].text and "dot is called from a pipelined loop" in vs[0].detail
    # the same function called outside any pipeline: a partial unroll is what it says
    plain = body.replace("#pragma HLS PIPELINE II=1\n", "// sequential: test\n", 1)
    assert found(plain, helpers, "unroll-in-pipeline") == []


# --- conditional-axi-read -----------------------------------------------------------------------------

def _loop(statement: str, pragma: str = "#pragma HLS PIPELINE II=1") -> str:
    return f"""    int buf[N];
    int lim = out[0];
    COND: for (int i = 0; i < N; i++) {{
{pragma}
        {statement}
    }}
    WB: for (int i = 0; i < N; i++) {{
#pragma HLS PIPELINE II=1
        out[i] = buf[i];
    }}"""


@pytest.mark.parametrize("statement", [
    "buf[i] = i < lim ? a[i] : 0;",
    "buf[i] = i < lim ? 0 : (a[i] + 1);",
    "if (i < lim) buf[i] = a[i];",
    "if (i < lim) { buf[i] = 0; } else { buf[i] = a[i]; }",
    "if (i >= lim) continue; buf[i] = a[i];",
])
def test_conditional_read_in_a_pipeline_is_flagged(statement):
    vs = found(_loop(statement), rule="conditional-axi-read")
    assert len(vs) == 1 and "a[i]" in vs[0].detail and "gmem0" in vs[0].detail


@pytest.mark.parametrize("statement", [
    "buf[i] = a[i];",
    "buf[i] = a[i] > lim ? 1 : 0;",               # the read is the condition, not a branch
    "if (a[i] > lim) buf[i] = 1; else buf[i] = 0;",
    "int v = a[i]; buf[i] = i < lim ? v : 0;",   # read unconditionally, selected afterwards
    "buf[i] = (i < lim ? 1 : 2) + a[i];",
])
def test_unconditional_read_in_a_pipeline_passes(statement):
    assert found(_loop(statement)) == []


def test_conditional_read_outside_a_pipeline_passes():
    assert found(_loop("buf[i] = i < lim ? a[i] : 0;", "// sequential: test"), rule="conditional-axi-read") == []


def test_conditional_read_of_a_local_array_passes():
    body = _loop("buf[i] = i < lim ? buf[i] : 0;").replace("int buf[N];", "int buf[N] = {0};")
    assert found(body, rule="conditional-axi-read") == []


def test_conditional_read_through_a_pointer_passed_down_is_flagged():
    helpers = """static void load(const int* src, int off, int lim, int dst[N]) {
    LOAD: for (int i = 0; i < N; i++) {
#pragma HLS PIPELINE II=1
        dst[i] = i < lim ? src[off + i] : 0;
    }
}"""
    body = """    int buf[N];
    load(a + 4, 2, 5, buf);
    WB: for (int i = 0; i < N; i++) {
#pragma HLS PIPELINE II=1
        out[i] = buf[i];
    }"""
    vs = found(body, helpers, "conditional-axi-read")
    assert len(vs) == 1 and "src[off+i]" in vs[0].detail and "gmem0" in vs[0].detail
    # the same function on a local array: no m_axi read
    local = body.replace("load(a + 4, 2, 5, buf);", "int mem[N] = {0};\n    load(mem, 2, 5, buf);")
    assert found(local, helpers, "conditional-axi-read") == []


# --- shared-bundle-loop -------------------------------------------------------------------------------

def test_two_offsets_of_one_pointer_in_one_loop_are_flagged():
    body = """    int g[N], h[N];
    BOTH: for (int d = 0; d < N; d++) {
#pragma HLS PIPELINE II=1
        g[d] = a[d];
        h[d] = a[N + d];
    }
    WB: for (int d = 0; d < N; d++) {
#pragma HLS PIPELINE II=1
        out[d] = g[d] + h[d];
    }"""
    vs = found(body, rule="shared-bundle-loop")
    assert len(vs) == 1 and "a[N+d]" in vs[0].text.replace(" ", "") and "BOTH" in vs[0].detail
    split = body.replace("""        h[d] = a[N + d];
    }""", """    }
    SECOND: for (int d = 0; d < N; d++) {
#pragma HLS PIPELINE II=1
        h[d] = a[N + d];
    }""")
    assert found(split) == []


def test_two_pointers_on_one_bundle_are_flagged_and_on_two_bundles_pass():
    body = """    int g[N];
    PAIR: for (int d = 0; d < N; d++) {
#pragma HLS PIPELINE II=1
        g[d] = a[d] + b[d];
    }
    WB: for (int d = 0; d < N; d++) {
#pragma HLS PIPELINE II=1
        out[d] = g[d];
    }"""
    vs = found(body, rule="shared-bundle-loop")
    assert len(vs) == 1 and "gmem0" in vs[0].detail
    apart = TOP.format(body=body, helpers="").replace("port=b offset=slave bundle=gmem0",
                                                      "port=b offset=slave bundle=gmem2")
    assert [v for v in check_source("k.cpp", apart, top="top") if v.rule == "shared-bundle-loop"] == []


def test_a_read_between_the_bursts_of_an_inner_loop_is_flagged():
    body = """    int w[M][N], bias[M];
    ROWS_L: for (int o = 0; o < M; o++) {
        bias[o] = a[o];
        COLS_L: for (int k = 0; k < N; k++) {
#pragma HLS PIPELINE II=1
            w[o][k] = a[M + o * N + k];
        }
    }
    WB: for (int o = 0; o < M; o++) {
#pragma HLS PIPELINE II=1
        out[o] = w[o][0] + bias[o];
    }"""
    vs = found(body, rule="shared-bundle-loop")
    assert len(vs) == 1 and "ROWS_L" in vs[0].detail


def test_one_read_per_loop_and_sibling_loops_pass():
    body = """    int w[M][N];
    ROWS_L: for (int o = 0; o < M; o++) {
        COLS_L: for (int k = 0; k < N; k++) {
#pragma HLS PIPELINE II=1
            w[o][k] = a[o * N + k];
        }
        MORE_L: for (int k = 0; k < N; k++) {
#pragma HLS PIPELINE II=1
            w[o][k] += a[M * N + k];
        }
    }
    WB: for (int o = 0; o < M; o++) {
#pragma HLS PIPELINE II=1
        out[o] = w[o][0];
    }"""
    assert found(body) == []


# --- unpipelined-loop ---------------------------------------------------------------------------------

def _fill(above: str = "", same: str = "", pragma: str = "") -> str:
    return f"""    int buf[N];
{above}    FILL: for (int i = 0; i < N; i++) {{ {same}
{pragma}        buf[i] = i;
    }}
    WB: for (int i = 0; i < N; i++) {{
#pragma HLS PIPELINE II=1
        out[i] = buf[i];
    }}"""


def test_innermost_loop_without_pipeline_is_flagged():
    vs = found(_fill(), rule="unpipelined-loop")
    assert len(vs) == 1 and vs[0].text.strip().startswith("FILL:") and "FILL" in vs[0].detail
    assert str(vs[0]).startswith(f"k.cpp:{vs[0].line}: unpipelined-loop: FILL:")


@pytest.mark.parametrize("kw", [
    {"pragma": "#pragma HLS PIPELINE II=1\n"},
    {"pragma": "#pragma HLS UNROLL\n"},
    {"above": "    // sequential: one element per call, not worth the pipeline registers\n"},
    {"same": "// sequential: a loop-carried recurrence through buf"},
])
def test_pipelined_unrolled_or_explained_loops_pass(kw):
    assert found(_fill(**kw)) == []


@pytest.mark.parametrize("kw", [
    {"above": "    // sequential:\n"},                                    # no reason
    {"above": "    // sequential: too far up\n\n"},                       # not the line above
    {"same": "// this loop is sequential on purpose"},                   # not the form
    {"pragma": "#pragma HLS PIPELINE off\n"},
])
def test_missing_or_misplaced_reasons_are_flagged(kw):
    assert len(found(_fill(**kw), rule="unpipelined-loop")) == 1


def test_loops_under_a_pipelined_or_unrolled_parent_pass():
    for pragma in ("PIPELINE II=1", "UNROLL"):
        body = f"""    int acc[M][M];
    PARENT: for (int i = 0; i < M; i++) {{
#pragma HLS {pragma}
        CHILD: for (int j = 0; j < M; j++) acc[i][j] = i + j;
    }}
    WB: for (int i = 0; i < M; i++) {{
#pragma HLS PIPELINE II=1
        out[i] = acc[i][0];
    }}"""
        assert found(body) == [], pragma


def test_only_innermost_loops_need_a_pipeline():
    # OUTER holds a loop, CALLS calls a function with a loop: neither is innermost
    helpers = """static void fill(int row[N]) {
    FILL_ROW: for (int i = 0; i < N; i++) {
#pragma HLS PIPELINE II=1
        row[i] = i;
    }
}"""
    body = """    int buf[M][N];
    OUTER: for (int r = 0; r < M; r++) {
        INNER: for (int i = 0; i < N; i++) {
#pragma HLS PIPELINE II=1
            buf[r][i] = r;
        }
    }
    CALLS: for (int r = 0; r < M; r++) fill(buf[r]);
    WB: for (int r = 0; r < M; r++) {
#pragma HLS PIPELINE II=1
        out[r] = buf[r][0];
    }"""
    assert found(body, helpers) == []


def test_a_function_loop_is_covered_only_when_every_call_is_pipelined():
    helpers = """static int sum(const int x[M]) {
    int s = 0;
    SUM: for (int d = 0; d < M; d++) s += x[d];
    return s;
}"""
    body = """    int x[M] = {0};
    PIPED: for (int i = 0; i < N; i++) {
#pragma HLS PIPELINE II=1
        out[i] = sum(x);
    }"""
    assert found(body, helpers) == []
    vs = found(body + "\n    out[0] = sum(x);", helpers, "unpipelined-loop")
    assert len(vs) == 1 and "SUM" in vs[0].text


# --- the generated kernel -----------------------------------------------------------------------------

#: kernel shapes: every preset, precision profile and board flow, and the model / hardware knobs that change
#: the kernel's loops (heads, top-k, experts, MoE placement, compute-unit and attention sizes, image grid)
KERNELS = {
    "micro": ("m3vit-micro", []),
    "tiny": ("m3vit-tiny-cityscapes", []),
    "micro-w16a16": ("m3vit-micro", ["precision.profile=w16a16"]),
    "micro-w8a16": ("m3vit-micro", ["precision.profile=w8a16"]),
    "micro-u280": ("m3vit-micro", ["hardware.board=u280"]),
    "heads2-top1-p3": ("m3vit-micro", ["model.num_heads=2", "model.top_k=1", "hardware.attn_parallel=3"]),
    "experts8-top3-cu16": ("m3vit-micro", ["model.num_experts=8", "model.top_k=3", "hardware.cu_in=16",
                                           "hardware.cu_out=16", "hardware.attn_parallel=5"]),
    "allmoe-cu4x16-p1": ("m3vit-micro", ["model.moe_blocks=all", "model.num_experts=5", "hardware.cu_in=4",
                                         "hardware.cu_out=16", "hardware.attn_parallel=1"]),
    "grid2x3-depth3": ("m3vit-micro", ["model.img_height=32", "model.img_width=48", "model.depth=3",
                                       "model.moe_blocks=[0]", "model.num_heads=1", "hardware.attn_parallel=7",
                                       "model.mlp_ratio=2"]),
}


def _kernel(name: str) -> dict[str, str]:
    preset, overrides = KERNELS[name]
    return render(load_config(preset, overrides), list(SOURCES))


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_generated_kernel_keeps_every_rule(name):
    vs = check_sources(_kernel(name))
    assert vs == [], "\n".join(map(str, vs))


@pytest.mark.parametrize("rule, old, new", [
    # the compute unit's limit stated in the top function, away from the calls
    ("allocation-scope", "#pragma HLS INTERFACE s_axilite port=return\n",
     "#pragma HLS INTERFACE s_axilite port=return\n#pragma HLS ALLOCATION function instances=compute_unit limit=1\n"),
    # a partial unroll of the softmax's lanes, which SM_STEPS pipelines
    ("unroll-in-pipeline", "SM_LANES: for (int p = 0; p < ATTN_P; p++) {\n#pragma HLS UNROLL\n",
     "SM_LANES: for (int p = 0; p < ATTN_P; p++) {\n#pragma HLS UNROLL factor=2\n"),
    # the weight tile's bus words read behind a guard
    ("conditional-axi-read", "beats.write(weights[first + i]);\n    }\n    if (next.src",
     "beats.write(i < count ? weights[first + i] : weight_beat_t(0));\n    }\n    if (next.src"),
    # a layer's biases and weights read from two places in one loop
    ("shared-bundle-loop", "beats.write(weights[first + i]);\n    }\n    if (next.src",
     "beats.write(weights[first + i]);\n        beats.write(weights[b_off / WORDS_PER_BEAT + i]);\n"
     "    }\n    if (next.src"),
    # the MoE output cast's lanes left to config_compile -pipeline_loops 0
    ("unpipelined-loop", "MOE_OUT_D: for (int it = 0; it < N_TOKENS * (DIM / CAST_LANES); it++) {\n"
     "#pragma HLS PIPELINE II=1\n", "MOE_OUT_D: for (int it = 0; it < N_TOKENS * (DIM / CAST_LANES); it++) {\n"),
], ids=["allocation-scope", "unroll-in-pipeline", "conditional-axi-read", "shared-bundle-loop",
        "unpipelined-loop"])
def test_seeded_kernel_patterns_are_caught(rule, old, new):
    texts = _kernel("micro")
    src = texts["src/edgemoe_vit.cpp"]
    assert src.count(old) == 1, old
    texts["src/edgemoe_vit.cpp"] = src.replace(old, new)
    vs = check_sources(texts)
    assert vs and all(v.rule == rule for v in vs), [str(v) for v in vs]


# --- the m_axi settings of build_prj.tcl ----------------------------------------------------------------

@pytest.mark.parametrize("board, clock, latency", [("zcu102", 300, 60), ("zcu102", 250, 50), ("u280", 300, 90)])
def test_build_script_sets_m_axi_from_the_plan(board, clock, latency, tmp_path):
    from edgemoe.hls.plan import KernelPlan
    from edgemoe.hls.project import HLSProject

    cfg = load_config("m3vit-micro", [f"hardware.board={board}", f"hardware.clock_mhz={clock}"])
    plan = KernelPlan.from_config(cfg)
    tcl = (HLSProject(cfg).write(tmp_path / "prj") / "build_prj.tcl").read_text()
    line = next(ln for ln in tcl.splitlines() if ln.startswith("config_interface"))
    words, opts = line.split(), {}
    for i, w in enumerate(words):
        if w.startswith("-") and i + 1 < len(words) and not words[i + 1].startswith("-"):
            opts[w] = words[i + 1]
    assert "-m_axi_addr64" in words
    assert int(opts["-m_axi_latency"]) == plan.m_axi_latency == latency   # DRAM latency (ns) at the clock
    assert int(opts["-m_axi_alignment_byte_size"]) == plan.m_axi_alignment_bytes == cfg.hardware.axi_width // 8
    assert int(opts["-m_axi_max_widen_bitwidth"]) == cfg.hardware.axi_width
    # every weight tensor starts on the alignment the tool is told
    word_bytes = plan.weight_word_bits // 8
    assert all(s.offset * word_bytes % plan.m_axi_alignment_bytes == 0 for s in plan.layout.slots)
