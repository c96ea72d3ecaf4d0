"""Saturation / overflow counting: makes a too-narrow precision profile visible.

Quantisations that carry a ``tag`` report here while a counter is active::

    with OverflowCounter() as ovf:
        model(...)
    print(ovf.table())

A value counts as an overflow when, after rounding, it lies outside its target
type's range, i.e. when SAT clamps it to a rail or WRAP folds it.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import torch

from .fixed import FixedType

_ACTIVE: contextvars.ContextVar["OverflowCounter | None"] = contextvars.ContextVar("edgemoe_overflow", default=None)


@dataclass
class OverflowStats:
    """Counts for one tag: ``overflows`` of ``total`` values, split by rail."""

    type: FixedType
    total: int = 0
    overflows: int = 0
    high: int = 0
    low: int = 0
    max_abs_raw: int = 0
    """Largest |value| seen after rounding and before the overflow mode, in raw LSBs of ``type``."""

    @property
    def rate(self) -> float:
        return self.overflows / self.total if self.total else 0.0


@dataclass
class OverflowCounter:
    """Context manager that collects :class:`OverflowStats` per tag."""

    stats: dict[str, OverflowStats] = field(default_factory=dict)
    _token: contextvars.Token | None = None
    _outer: "OverflowCounter | None" = None

    def __enter__(self) -> "OverflowCounter":
        """Start counting; a counter opened inside another passes every count on to it too."""
        self._outer = _ACTIVE.get()
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)

    def add(self, tag: str, rounded: torch.Tensor, t: FixedType) -> None:
        high = int((rounded > t.max_raw).sum())
        low = int((rounded < t.min_raw).sum())
        s = self.stats.setdefault(tag, OverflowStats(t))
        s.total += rounded.numel()
        s.high += high
        s.low += low
        s.overflows += high + low
        if rounded.numel():
            s.max_abs_raw = max(s.max_abs_raw, int(rounded.abs().max()))
        if self._outer is not None:
            self._outer.add(tag, rounded, t)

    @property
    def total_overflows(self) -> int:
        return sum(s.overflows for s in self.stats.values())

    def offenders(self) -> dict[str, OverflowStats]:
        return {k: v for k, v in self.stats.items() if v.overflows}

    def table(self, only_overflows: bool = True) -> str:
        rows = self.offenders() if only_overflows else self.stats
        if not rows:
            return "no overflows"
        width = max(len(k) for k in rows)
        lines = [f"{'tensor':<{width}}  {'type':<28} {'overflows':>10} {'of':>10} {'rate':>9}"]
        for tag, s in rows.items():
            lines.append(f"{tag:<{width}}  {str(s.type):<28} {s.overflows:>10} {s.total:>10} {s.rate:>9.2e}")
        return "\n".join(lines)


def record(tag: str, rounded: torch.Tensor, t: FixedType) -> None:
    """Report a rounded (not yet overflow-fixed) tensor to the active counter, if any."""
    counter = _ACTIVE.get()
    if counter is not None:
        counter.add(tag, rounded, t)
