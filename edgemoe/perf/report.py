"""``edgemoe report``: one self-contained HTML (or markdown + PNG) page about a config.

Sections: summary; per-layer latency breakdown (bar chart, both modes);
per-step table; roofline plot and the roofline of every board; resources vs
the board's limits (and model vs yosys for the RTL units when their figures
exist); the template-as-written findings; routing statistics per task
(tokens per expert from the golden model on synthetic images); fixed-point
vs float accuracy per tap (golden/report.py ``compare``).

Figures are matplotlib PNGs, embedded as base64 in the HTML; with an ``.md``
output they are written next to it.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemoe.boards import BOARDS

from .cycles import MODES, as_written_findings, estimate
from .measured import SimResults
from .resources import DEFAULT_CAP, estimate_resources, yosys_comparison
from .routing import Routing, uniform_routing

KIND_COLORS = {"linear": "#4C72B0", "attention": "#DD8452", "moe": "#55A868", "norm": "#C44E52",
               "elementwise": "#8172B3", "io": "#937860"}


@dataclass
class Figure:
    name: str
    title: str
    png: bytes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# --- golden runs ---------------------------------------------------------------------------

def golden_runs(cfg, images: int = 1, seed: int = 0, tasks=None, state_dict=None):
    """Per task: (TaskReport of fixed vs float, expert counts per MoE block [images, E])."""
    import torch

    from edgemoe.golden.fixed_model import FixedM3ViT
    from edgemoe.golden.float_model import M3ViT
    from edgemoe.golden.report import compare
    from edgemoe.golden.synthetic import synthetic_images, synthetic_state_dict

    m = cfg.model
    sd = state_dict if state_dict is not None else synthetic_state_dict(m, seed=seed)
    imgs = synthetic_images(m, images, seed=seed)
    fixed = FixedM3ViT(cfg, sd)
    float_model = M3ViT.from_state_dict(m, sd)
    captured = {}
    forward = fixed.forward

    def spy(*a, **kw):  # keep the fixed run compare() makes: its taps hold the expert counts
        res = forward(*a, **kw)
        captured["res"] = res
        return res

    fixed.forward = spy
    out = {}
    with torch.no_grad():
        for task in (tasks or m.task_names):
            t0 = time.perf_counter()
            rep = compare(fixed, float_model, imgs, task)
            res = captured["res"]
            counts = [res.taps[f"blocks.{b}.expert_counts"].to(torch.float64).numpy() for b in m.moe_blocks]
            out[task] = (rep, counts, time.perf_counter() - t0)
    return out, imgs


# --- figures ----------------------------------------------------------------------------------

def fig_layers(estimates: dict) -> Figure:
    """Stacked bars of us per block by step kind, one panel per estimate."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(estimates), figsize=(6.2 * len(estimates), 3.8), squeeze=False)
    for ax, (title, est) in zip(axes[0], estimates.items()):
        depth = est.cfg.model.depth
        blocks = sorted({s.block for s in est.steps})
        labels = ["emb" if b < 0 else "out" if b >= depth else str(b) for b in blocks]
        bottom = np.zeros(len(blocks))
        us = 1.0 / est.clock_mhz / est.batch
        for kind, color in KIND_COLORS.items():
            vals = np.array([sum(s.cycles_total for s in est.steps if s.block == b and s.kind == kind) * us
                             for b in blocks])
            if vals.sum() == 0:
                continue
            ax.bar(labels, vals, bottom=bottom, color=color, label=kind, width=0.75)
            bottom += vals
        ax.set_title(f"{title}: {est.ms_per_image:.2f} ms/image", fontsize=10)
        ax.set_xlabel("block (MoE blocks: " + ", ".join(map(str, est.cfg.model.moe_blocks)) + ")", fontsize=8)
        ax.set_ylabel("us per image")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle("per-layer latency breakdown", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    return Figure("layers", "Per-layer latency breakdown", _png(fig))


def fig_roofline(cfg, points: list[tuple[str, object]]) -> Figure:
    """Roofline of the config's board (and the design's own unit / port roof) with the modelled points."""
    plt = _plt()
    est0 = points[0][1]
    r = est0.roofline
    clock = cfg.hardware.clock_mhz * 1e6
    peak = r.board_macs_per_cycle * clock / 1e9            # GMAC/s
    unit = r.unit_macs_per_cycle * clock / 1e9
    bw, port = r.board_gbps, r.port_gbps                    # GB/s
    xs = np.logspace(-1, 4, 200)                            # MAC per weight byte
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    ax.loglog(xs, np.minimum(peak, bw * xs), "k-", lw=2, label=f"{cfg.hardware.board} roof: {peak:.0f} GMAC/s, {bw:.1f} GB/s")
    ax.loglog(xs, np.minimum(unit, port * xs), "k--", lw=1.2,
              label=f"design roof: CU {cfg.hardware.cu_in}x{cfg.hardware.cu_out} {unit:.0f} GMAC/s, port {port:.1f} GB/s")
    markers = "osD^vP*X"
    for i, (label, est) in enumerate(points):
        oi = est.macs_per_image / max(1.0, est.weight_bytes_per_image)
        perf = est.macs_per_image / (est.ms_per_image * 1e-3) / 1e9
        ax.loglog([oi], [perf], markers[i % len(markers)], ms=9, label=f"{label}: {est.ms_per_image:.1f} ms, "
                  f"{est.roofline.ratio:.1f}x below roof")
    ax.set_xlabel("operational intensity (MAC per weight byte from DRAM)")
    ax.set_ylabel("GMAC/s")
    ax.grid(which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"roofline: {cfg.name}, {cfg.precision.name} ({r.dsp_per_mac} DSP/MAC)", fontsize=10)
    fig.tight_layout()
    return Figure("roofline", "Roofline", _png(fig))


def fig_routing(cfg, runs: dict) -> Figure:
    plt = _plt()
    m = cfg.model
    fig, axes = plt.subplots(1, len(runs), figsize=(max(4.5, 0.35 * m.num_experts + 2) * len(runs), 0.45 * len(m.moe_blocks) + 1.8),
                             squeeze=False)
    for ax, (task, (_, counts, _)) in zip(axes[0], runs.items()):
        mat = np.stack([c.mean(axis=0) for c in counts])  # [moe blocks, experts]
        im = ax.imshow(mat, cmap="viridis", aspect="auto", vmin=0, vmax=m.num_tokens)
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if mat[i, j] > 0:
                    ax.text(j, i, f"{mat[i, j]:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if mat[i, j] < 0.6 * m.num_tokens else "black")
        ax.set_yticks(range(len(m.moe_blocks)), [f"block {b}" for b in m.moe_blocks], fontsize=7)
        ax.set_xticks(range(m.num_experts), range(m.num_experts), fontsize=7)
        ax.set_xlabel("expert")
        ax.set_title(f"task {task}: tokens per expert", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return Figure("routing", "Routing statistics", _png(fig))


def fig_accuracy(runs: dict) -> Figure:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for task, (rep, _, _) in runs.items():
        rows = [t for t in rep.taps if not t.note or t.note.startswith("label")]
        err = [max(1e-12, 1 - t.cosine) for t in rows]
        ax.semilogy(range(len(rows)), err, ".-", label=f"task {task}")
    names = ["head (task output)" if t.name.startswith("head.") else t.name for t in rows]
    step = max(1, len(names) // 24)
    ax.set_xticks(range(0, len(names), step), names[::step], rotation=75, fontsize=6)
    ax.set_ylabel("1 - cosine(fixed, float)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("fixed-point vs float, per tap", fontsize=10)
    fig.tight_layout()
    return Figure("accuracy", "Fixed-point vs float accuracy", _png(fig))


# --- tables -----------------------------------------------------------------------------------

def _table(head: list[str], rows: list[list], align: str | None = None) -> str:
    al = align or ("l" + "r" * (len(head) - 1))
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td class='{'l' if a == 'l' else 'r'}'>{html.escape(str(c))}</td>"
                                    for c, a in zip(r, al)) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _md_table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _fmt(x, nd=2):
    if isinstance(x, float):
        if not math.isfinite(x):
            return "n/a"
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


# --- the report --------------------------------------------------------------------------------

@dataclass
class Section:
    title: str
    text: str = ""                     # paragraph (plain)
    tables: list = None                # [(head, rows)]
    figures: list = None               # [Figure]
    pre: str = ""                      # preformatted block


def task_metrics_section(figures: dict, source: str) -> Section:
    """The task metrics of ``edgemoe eval --json`` (float, fixed-point profiles, device) as a report section."""
    classes = figures["classes"]
    rows = []
    for name, r in figures["rows"].items():
        rows.append([name, r["scenes"], f"{100 * r['miou']:.2f}", f"{100 * r['pixel_acc']:.2f}", f"{r['abs_rel']:.4f}",
                     f"{r['rmse_m']:.2f}", f"{100 * r['delta1']:.2f}"]
                    + ["n/a" if v is None or v != v else f"{100 * v:.1f}" for v in r["iou"]])
    equal = figures.get("device_equal")
    text = (f"From {source} (edgemoe eval): segmentation mIoU and pixel accuracy, depth AbsRel, RMSE (m) and "
            "delta < 1.25, then IoU per class, on generated test scenes."
            + ("" if equal is None else f" Device tokens equal the golden fixed-point tokens: {'yes' if equal else 'NO'}."))
    tables = [(["model", "scenes", "mIoU %", "pixel acc %", "AbsRel", "RMSE m", "d<1.25 %"]
               + [f"{c} IoU %" for c in classes], rows)]
    by_class = [[name] + ["n/a" if v is None or v != v else f"{v:.3f}" for v in r["abs_rel_by_class"]]
                for name, r in figures["rows"].items() if "abs_rel_by_class" in r]
    if by_class:
        # where the depth error is: AbsRel over each true class's pixels
        tables.append((["model"] + [f"{c} AbsRel" for c in classes], by_class))
    return Section("Task metrics: float vs fixed point vs device", text=text, tables=tables)


def build_sections(cfg, *, mode: str = "onchip", batch: int = 8, images: int = 1, seed: int = 0,
                   tasks=None, state_dict=None, cap: float = DEFAULT_CAP,
                   task_metrics: tuple[dict, str] | None = None,
                   measured: SimResults | None = None) -> tuple[list[Section], dict]:
    """The report's sections; ``measured``: what the sim tools wrote (unit latencies, yosys figures)."""
    m, h = cfg.model, cfg.hardware
    t0 = time.perf_counter()
    runs, _ = golden_runs(cfg, images, seed, tasks, state_dict)
    golden_s = time.perf_counter() - t0
    first = next(iter(runs))
    routing = Routing(tuple(runs[first][1]), False, f"golden gating of {images} synthetic image(s), task {first}")
    est = {md: estimate(cfg, routing, 1, md, measured=measured) for md in MODES}
    est_b = {md: estimate(cfg, routing, batch, md, measured=measured) for md in MODES} if batch > 1 else {}
    main = est[mode]
    res = estimate_resources(cfg, mode, 1)
    secs: list[Section] = []

    # summary
    r = main.roofline
    summary = [
        ["config", f"{cfg.name} ({cfg.precision.name}), digest {cfg.digest()[:12]}"],
        ["hardware", f"{h.board}, CU {h.cu_in}x{h.cu_out}, P={h.attn_parallel}, AXI {h.axi_width} bits, {h.clock_mhz:g} MHz"],
        ["mode of this report", f"{mode} ({'the generated kernel' if mode == 'onchip' else 'Edge-MoE dataflow'})"],
        ["latency (batch 1)", f"{main.ms_per_image:.2f} ms/image, {main.images_per_s:.1f} img/s"
         + (" (the kernel as written)" if main.loops is not None else "")],
        ["intended schedule (batch 1)", f"{main.intended_ms_per_image:.2f} ms/image (every PIPELINE II met, "
                                         "loads behind the compute)"],
    ]
    for md in MODES:
        summary.append([f"{md}, batch 1 / batch {batch}", f"{est[md].ms_per_image:.2f} ms"
                        + (f" / {est_b[md].ms_per_image:.2f} ms per image (weights shared)" if est_b else "")])
    summary += [
        ["work", f"{main.macs_per_image / 1e9:.3f} GMAC/image, weights {main.weight_bytes_per_image / 1e6:.2f} MB/image"],
        ["roofline", f"compute {r.compute_ms:.2f} ms, weight traffic {r.traffic_ms:.2f} ms -> {r.bound_kind} bound "
                     f"{r.bound_ms:.2f} ms; modelled / roofline {r.ratio:.1f}x (design roof {r.design_ratio:.1f}x)"],
        ["calibration", ", ".join(f"{u} {c['latency']} cycles ({c['how']})" for u, c in sorted(main.calibration.items()))
         or "none: default unit latencies"],
        ["routing used", routing.source],
        ["resources", ", ".join(f"{k} {res.totals[k]:,.0f} ({100 * res.utilisation[k]:.0f}%)" for k in ("dsp", "bram36", "lut"))
         + (" - fits" if res.fits(cap) else f" - exceeds the {cap:.0%} cap: {', '.join(res.violations(cap))}")],
    ]
    secs.append(Section("Summary", tables=[(["", ""], summary)]))

    figs = {"onchip (generated kernel, as written)": est["onchip"], "edgemoe-dram (Edge-MoE dataflow)": est["edgemoe-dram"]}
    secs.append(Section("Per-layer latency", text="Cycles per block and step kind, batch 1, golden routing.",
                        figures=[fig_layers(figs)]))

    steps = [[("emb" if s.block < 0 else "out" if s.block >= m.depth else s.block), s.name, s.kind,
              _fmt(s.cycles_compute, 0), _fmt(s.cycles_memory, 0), _fmt(s.cycles_total, 0),
              _fmt(s.cycles_total / h.clock_mhz, 1), _fmt(s.cycles_intended, 0), _fmt(s.bytes / 1024, 1),
              _fmt(s.macs / 1e6, 2)]
             for s in main.steps]
    secs.append(Section(f"Per-step cycles ({mode}, batch 1)",
                        tables=[(["block", "step", "kind", "compute", "memory", "total", "us", "intended", "DRAM KB", "MMAC"],
                                 steps)]))

    # roofline
    pts = [(f"{md} B=1", est[md]) for md in MODES]
    for md, e in est_b.items():
        fits = estimate_resources(cfg, md, batch).fits(cap)
        pts.append((f"{md} B={batch}" + ("" if fits else f" (does not fit {h.board})"), e))
    board_rows = []
    for bname in BOARDS:
        c2 = cfg.replace(hardware=dataclasses.replace(h, board=bname, part=""))
        for md in MODES:
            e = estimate(c2, routing, 1, md, measured=measured)
            rr = e.roofline
            board_rows.append([bname, md, _fmt(rr.compute_ms), _fmt(rr.traffic_ms), _fmt(rr.bound_ms), rr.bound_kind,
                               _fmt(e.ms_per_image), f"{rr.ratio:.1f}x", f"{rr.design_ratio:.1f}x"])
    secs.append(Section("Roofline", text="Compute bound = all of the board's DSPs at this precision's DSPs per MAC; "
                        "weight-traffic bound = weight bytes per image at the board's sustained bandwidth. "
                        "Design roof = this CU's MACs per cycle and the weights port's bandwidth.",
                        figures=[fig_roofline(cfg, pts)],
                        tables=[(["board", "mode", "compute ms", "traffic ms", "bound ms", "bound", "modelled ms",
                                  "vs roofline", "vs design roof"], board_rows)]))

    # resources
    lim, tot, ut = res.limits, res.totals, res.utilisation
    rows = [[u.name, u.dsp, _fmt(u.bram36, 1), u.uram, u.lut, u.ff] for u in res.units]
    rows.append(["total", _fmt(tot["dsp"], 0), _fmt(tot["bram36"], 1), _fmt(tot["uram"], 0), _fmt(tot["lut"], 0),
                 _fmt(tot["ff"], 0)])
    rows.append([f"{res.board} limit", lim["dsp"], lim["bram36"], lim["uram"], lim["lut"], lim["ff"]])
    rows.append(["utilisation"] + [f"{100 * ut[k]:.1f}%" if math.isfinite(ut[k]) else "n/a"
                                   for k in ("dsp", "bram36", "uram", "lut", "ff")])
    ys_rows, ys_text = yosys_comparison(cfg, measured)
    tables = [(["unit", "DSP", "BRAM36", "URAM", "LUT", "FF"], rows)]
    if ys_rows:
        def side_by_side(r_, k):
            q = r_["ratio"].get(k)
            return [(r_["model"] or {}).get(k, "-"), r_["yosys"].get(k, "-"), "-" if q is None else f"{q:.2f}x"]

        tables.append((["RTL unit"] + [f"{k} {w}" for k in ("DSP", "LUT", "FF") for w in ("model", "yosys", "y/m")],
                       [[r_["unit"]] + side_by_side(r_, "dsp") + side_by_side(r_, "lut") + side_by_side(r_, "ff")
                        for r_ in ys_rows]))
    secs.append(Section(f"Resources vs {res.board} limits ({mode})",
                        text="DSP and memories follow the types and sizes; LUT/FF are rough. "
                             + ("" if ys_rows else ys_text),
                        tables=tables, pre=res.table(details=True)))

    # as written
    fr = as_written_findings(cfg, routing, measured=measured)
    on = est["onchip"]
    loop_rows = [[r_["label"], r_["function"], _fmt(r_["iterations"], 0), "-" if r_["ii"] == 0 else f"{r_['ii']:.3g}",
                  r_["target_ii"] or "-", r_["binding"], _fmt(r_["cycles"], 0), f"{100 * r_['share']:.1f}%",
                  r_["detail"].get(r_["binding"], "")]
                 for r_ in on.loops.rows()[:25]]
    secs.append(Section("The template as written",
                        text="The headline figures are the kernel as written: every loop at the II its constraints "
                             "allow (bank ports, m_axi accesses, recurrences, DSPs), nothing overlapped that the code "
                             "does not overlap. The first table groups the loops by the constraint that binds them "
                             "(excess: ms beyond the pragmas' II, relative to the intended schedule); the second lists "
                             "the 25 costliest loops (onchip mode, batch 1).",
                        tables=[(["binding constraint", "ms/image", "excess", "loops (achievable II)"],
                                 [[f_["penalty"], _fmt(f_["ms_per_image"]), f"{f_['factor']:.2f}", f_["description"]]
                                  for f_ in fr]),
                                (["loop", "function", "iterations/image", "II", "pragma II", "binding", "cycles/image",
                                  "share", "why"], loop_rows)]))

    # routing
    rrows = []
    for task, (_, counts, _) in runs.items():
        for b, c in zip(m.moe_blocks, counts):
            mean = c.mean(axis=0)
            rrows.append([task, b, f"{np.mean((c > 0).sum(axis=1)):.1f}", f"{mean.max():.0f}",
                          int(np.argmax(mean)), " ".join(f"{v:.0f}" for v in mean)])
    u = uniform_routing(cfg)
    secs.append(Section("Routing statistics per task",
                        text=f"Tokens per expert from the golden fixed-point model on {images} synthetic image(s) "
                             f"(seed {seed}), synthetic weights unless given. Uniform routing would give "
                             f"{u.counts[0][0, 0]:.1f} tokens to each of {m.num_experts} experts.",
                        figures=[fig_routing(cfg, runs)],
                        tables=[(["task", "block", "active experts", "max tokens", "busiest", "tokens per expert"], rrows)]))

    # accuracy
    tables = []
    for task, (rep, _, secs_) in runs.items():
        rows = [[t.name, "x".join(map(str, t.shape)), "" if t.note == "expert-set agreement" else f"{t.max_abs:.3e}",
                 "" if t.note == "expert-set agreement" else f"{t.rms:.3e}",
                 f"{t.cosine:.2%}" if t.note == "expert-set agreement" else f"{t.cosine:.6f}", t.note]
                for t in rep.taps]
        tables.append(([f"tap ({task})", "shape", "max |err|", "float rms", "cosine", "note"], rows))
    secs.append(Section("Fixed-point vs float accuracy per tap",
                        text=f"golden/report.py compare(): bit-accurate model ({cfg.precision.name}) against the float "
                             "model on the same 8-bit pixels.",
                        figures=[fig_accuracy(runs)], tables=tables))

    if task_metrics is not None:
        secs.append(task_metrics_section(*task_metrics))
    notes = main.notes
    secs.append(Section("Model notes", pre="\n".join(notes)))
    meta = {"golden_s": golden_s, "estimate": main, "resources": res, "runs": runs}
    return secs, meta


_CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;font-size:.82em;margin:.6em 0}td,th{border:1px solid #ddd;padding:2px 7px}
th{background:#f3f3f3}td.r{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
pre{background:#f7f7f7;padding:.6em;font-size:.78em;overflow-x:auto}"""


def render_html(cfg, sections: list[Section]) -> str:
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           f"<title>edgemoe report: {html.escape(cfg.name)}</title><style>{_CSS}</style></head><body>",
           f"<h1>edgemoe report: {html.escape(cfg.name)}</h1>"]
    for s in sections:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            out.append(f"<p>{html.escape(s.text)}</p>")
        for f in s.figures or []:
            b64 = base64.b64encode(f.png).decode()
            out.append(f"<figure><img alt='{html.escape(f.title)}' src='data:image/png;base64,{b64}'></figure>")
        for head, rows in s.tables or []:
            out.append(_table(head, rows))
        if s.pre:
            out.append(f"<pre>{html.escape(s.pre)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def render_markdown(cfg, sections: list[Section], out: Path) -> str:
    lines = [f"# edgemoe report: {cfg.name}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        for f in s.figures or []:
            png = out.with_name(f"{out.stem}_{f.name}.png")
            png.write_bytes(f.png)
            lines += [f"![{f.title}]({png.name})", ""]
        for head, rows in s.tables or []:
            lines += [_md_table(head, rows), ""]
        if s.pre:
            lines += ["```", s.pre, "```", ""]
    return "\n".join(lines)


def write_report(cfg, out: str | Path, **kw) -> Path:
    """Write the report to ``out`` (``.html``: self-contained; ``.md``: markdown + PNGs beside it)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sections, _ = build_sections(cfg, **kw)
    if out.suffix.lower() == ".md":
        out.write_text(render_markdown(cfg, sections, out))
    else:
        out.write_text(render_html(cfg, sections))
    return out
