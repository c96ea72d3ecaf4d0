"""Device against golden: bit-exactness per tap, and fixed-vs-float error per task output.

The device (board or simulated) and the bit-accurate golden model run the same
pixel codes with the same packed weights (the golden model is built from the
very words in the weight buffer); every selected tap and the final tokens are
compared word for word.  The task outputs are compared with the float model
(when the float weights are at hand).
"""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class TapCheck:
    """One tap: equal word for word, or where it first differs."""

    name: str
    shape: tuple[int, ...]
    exact: bool
    mismatches: int = 0
    first_index: tuple[int, ...] | None = None
    device_value: int | None = None
    golden_value: int | None = None

    def describe(self) -> str:
        if self.exact:
            return "yes"
        if self.first_index is None:
            return f"NO: shape {self.shape} differs"
        total = int(np.prod(self.shape))
        return (f"NO: {self.mismatches} of {total} words differ; first at {list(self.first_index)}: "
                f"device {self.device_value}, golden {self.golden_value}")


def check_tap(name: str, device: np.ndarray, golden: np.ndarray) -> TapCheck:
    device, golden = np.asarray(device), np.asarray(golden)
    if device.shape != golden.shape:
        return TapCheck(name, tuple(golden.shape), False)
    diff = device != golden
    if not diff.any():
        return TapCheck(name, tuple(golden.shape), True)
    first = tuple(int(i) for i in np.argwhere(diff)[0])
    return TapCheck(name, tuple(golden.shape), False, int(diff.sum()), first, int(device[first]), int(golden[first]))


@dataclass
class TaskComparison:
    task: str
    images: int
    taps: list[TapCheck] = field(default_factory=list)
    head: object | None = None            # golden.report.TapError: device output vs float model
    label_agreement: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return all(t.exact for t in self.taps)


def select_taps(cfg, spec: str | None) -> list[str]:
    """``none``, ``all``, ``blocks`` (every block output) or a comma list of tap names / globs ('blocks.1.*')."""
    from edgemoe.config import ConfigError
    from edgemoe.hls.plan import KernelPlan

    schedule = list(KernelPlan.from_config(cfg).taps)
    if spec in (None, "", "none"):
        return []
    if spec == "all":
        return schedule
    if spec == "blocks":
        return [t for t in schedule if t.endswith(".out")]
    chosen: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        hits = [t for t in schedule if fnmatch.fnmatchcase(t, part)]
        if not hits:
            raise ConfigError("--taps", part, f"matches no tap of config {cfg.name} (e.g. {schedule[3]!r}, "
                                              f"'blocks.1.*', 'all', 'blocks', 'none')")
        chosen += [t for t in hits if t not in chosen]
    return [t for t in schedule if t in chosen]


@torch.no_grad()
def compare_device(acc, images, tasks="all", taps: list[str] = (), float_state_dict=None,
                   progress=None, result=None) -> list[TaskComparison]:
    """Run ``images`` on the accelerator and on the golden model; see :class:`TaskComparison`.

    ``result``: an :class:`~edgemoe.host.runtime.Result` of these images already run on the
    device (its tokens and outputs are checked instead of running the kernel again).
    """
    from edgemoe.golden.fixed_model import FixedM3ViT
    from edgemoe.golden.report import tap_error

    from .runtime import preprocess

    cfg = acc.cfg
    m = cfg.model
    x, codes = preprocess(images, cfg)
    golden = FixedM3ViT.from_quantized(cfg, acc.weights.quantized(cfg))
    float_model = None
    if float_state_dict is not None:
        from edgemoe.golden.float_model import M3ViT

        float_model = M3ViT.from_state_dict(m, float_state_dict)
    from tqdm import tqdm

    out = []
    task_names = acc.tasks(tasks)
    bar = tqdm(total=len(task_names) * (len(taps) + 1), desc="device", unit="call", leave=False,
               disable=not (progress if progress is not None else len(codes) > 1))
    for task in task_names:
        t = m.task_index(task)
        cmp = TaskComparison(task, len(codes))
        t0 = time.perf_counter()
        reuse = result is not None and task in result.tokens and np.array_equal(result.pixels, codes)
        res = result if reuse else acc.infer(codes, task, progress=False)
        bar.update(1)
        dev_taps = {}
        for name in taps:
            dev_taps[name] = acc.run_tap(codes, task, name)
            bar.update(1)
        cmp.seconds["device"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = golden.forward(torch.from_numpy(codes.astype(np.int64)), t, keep_taps=bool(taps))
        cmp.seconds["golden"] = time.perf_counter() - t0
        for name in taps:
            cmp.taps.append(check_tap(name, dev_taps[name], ref.taps[name].numpy()))
        cmp.taps.append(check_tap("tokens (kernel output)", res.tokens[task], ref.tokens.numpy()))
        if float_model is not None:
            t0 = time.perf_counter()
            ref_out = float_model.forward_taps(torch.from_numpy(res.images), t, heads=[task])[f"head.{task}"]
            dev_out = torch.from_numpy(res.outputs[task])
            cmp.head = tap_error(f"head.{task}", ref_out, dev_out)
            if dev_out.shape[1] > 1:
                cmp.label_agreement = (dev_out.argmax(1) == ref_out.argmax(1)).to(torch.float64).mean().item()
            cmp.seconds["float"] = time.perf_counter() - t0
        out.append(cmp)
    bar.close()
    return out


def format_comparison(c: TaskComparison, float_note: str = "") -> str:
    width = max([len(t.name) for t in c.taps] + [20])
    lines = [f"task {c.task}: device vs golden fixed-point model, {c.images} image(s), bit for bit",
             f"  {'tap':<{width}}  {'shape':<14} bit-exact"]
    for t in c.taps:
        lines.append(f"  {t.name:<{width}}  {'x'.join(map(str, t.shape)):<14} {t.describe()}")
    n_exact = sum(t.exact for t in c.taps)
    lines.append(f"  bit-exact: {'yes' if c.exact else 'NO'} ({n_exact}/{len(c.taps)} checked outputs equal)")
    if c.head is not None:
        h = c.head
        agree = f", label agreement {c.label_agreement:.2%}" if c.label_agreement is not None else ""
        lines.append(f"  fixed vs float, head.{c.task} output: max |err| {h.max_abs:.3e}, float rms {h.rms:.3e}, "
                     f"cosine {h.cosine:.6f}{agree}")
    elif float_note:
        lines.append(f"  fixed vs float: {float_note}")
    return "\n".join(lines)
