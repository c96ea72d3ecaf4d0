"""Float versus fixed-point: per-tap error of the bit-accurate model.

For every tap the two models share, the report gives the largest absolute
error, the float tensor's RMS (for scale) and the cosine similarity; for the
expert choice it gives the fraction of tokens whose expert set agrees; for
the heads, the same figures on the task outputs (and label agreement for
segmentation).  The overflow table holds the weights that saturated when
they were quantised (``weights.<key>``) and every overflow of the run.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .fixed_model import FixedM3ViT, pixel_codes, tap_schedule
from .numerics.overflow import OverflowCounter


@dataclass(frozen=True)
class TapError:
    """Error of one tap: fixed (dequantised) against float."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    rms: float          # RMS of the float tensor
    cosine: float       # over the whole tensor; for topk_idx: fraction of tokens with the same expert set
    note: str = ""


@dataclass
class TaskReport:
    task: str
    taps: list[TapError]
    overflow: OverflowCounter
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # float / fixed head outputs

    @property
    def output(self) -> TapError:
        return self.taps[-1]

    def worst(self) -> TapError:
        """The value tap with the lowest cosine similarity."""
        return min((t for t in self.taps if not t.note), key=lambda t: t.cosine)


def float_name(fixed_tap: str) -> str:
    """Float-model tap name of a fixed tap (block outputs are ``blocks.i`` there)."""
    return fixed_tap[:-4] if fixed_tap.endswith(".out") else fixed_tap


def tap_error(name: str, ref: torch.Tensor, got: torch.Tensor) -> TapError:
    ref = ref.detach().to(torch.float64).flatten()
    got = got.detach().to(torch.float64).flatten()
    diff = (got - ref).abs()
    cos = torch.nn.functional.cosine_similarity(got, ref, dim=0, eps=1e-30).item()
    return TapError(name, (), diff.max().item() if diff.numel() else 0.0, ref.pow(2).mean().sqrt().item(), cos)


def _expert_agreement(name: str, ref: torch.Tensor, got: torch.Tensor) -> TapError:
    same = (ref.sort(-1).values == got.sort(-1).values).all(-1).to(torch.float64).mean().item()
    return TapError(name, tuple(got.shape), float("nan"), float("nan"), same, "expert-set agreement")


@torch.no_grad()
def compare(fixed: FixedM3ViT, float_model, images: torch.Tensor, task: str | int) -> TaskReport:
    """Run both models on ``images`` for ``task`` and measure every shared tap."""
    m = fixed.cfg.model
    t = m.task_index(task)
    name = m.task_names[t]
    # the float model sees the very pixels the hardware gets (8-bit codes), so
    # the report measures the datapath's error, not the input quantisation's
    codes = pixel_codes(images, fixed.cfg.precision.pixel)
    float_images = (codes.to(torch.float64) / ((1 << fixed.cfg.precision.pixel.bits) - 1)).to(torch.float32)
    ref_taps = float_model.forward_taps(float_images, t, heads=[name])
    with OverflowCounter() as ovf:
        ovf.stats.update({f"weights.{key}": replace(sat.stats) for key, sat in fixed.weights.saturation.items()})
        result = fixed.forward(codes, t)
    rows: list[TapError] = []
    for tap in tap_schedule(m):
        ref = ref_taps.get(float_name(tap))
        if ref is None:
            continue
        got = result.taps[tap]
        if tap.endswith("topk_idx"):
            rows.append(_expert_agreement(tap, ref, got))
            continue
        err = tap_error(tap, ref, fixed.tap_to_float(tap, got))
        rows.append(TapError(tap, tuple(got.shape), err.max_abs, err.rms, err.cosine))
    out_fixed = fixed.run_head(result.tokens, t)
    out_float = ref_taps[f"head.{name}"]
    err = tap_error(f"head.{name}", out_float, out_fixed)
    note = ""
    if m.tasks[t].out_channels > 1:
        agree = (out_fixed.argmax(1) == out_float.argmax(1)).to(torch.float64).mean().item()
        note = f"label agreement {agree:.2%}"
    rows.append(TapError(f"head.{name}", tuple(out_fixed.shape), err.max_abs, err.rms, err.cosine, note))
    return TaskReport(name, rows, ovf, {"float": out_float, "fixed": out_fixed})


def format_report(report: TaskReport) -> str:
    width = max(len(r.name) for r in report.taps)
    lines = [f"task {report.task}: fixed-point vs float, per tap",
             f"  {'tap':<{width}}  {'shape':<18} {'max |err|':>10} {'float rms':>10} {'cosine':>10}"]
    for r in report.taps:
        shape = "x".join(map(str, r.shape))
        if r.note == "expert-set agreement":
            lines.append(f"  {r.name:<{width}}  {shape:<18} {'':>10} {'':>10} {r.cosine:>9.2%}  {r.note}")
        else:
            lines.append(f"  {r.name:<{width}}  {shape:<18} {r.max_abs:>10.3e} {r.rms:>10.3e} {r.cosine:>10.6f}"
                         + (f"  {r.note}" if r.note else ""))
    worst = report.worst()
    lines.append(f"  lowest cosine: {worst.name} ({worst.cosine:.6f}); output cosine {report.output.cosine:.6f}")
    lines.append("  overflows: " + ("none" if not report.overflow.offenders() else
                                    "\n" + "\n".join("    " + s for s in report.overflow.table().splitlines())))
    return "\n".join(lines)
