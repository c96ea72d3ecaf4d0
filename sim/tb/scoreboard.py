"""The scoreboard of every unit testbench: exact, in order, same count.

:func:`compare` returns one line per problem (an empty list is a pass);
:func:`check` raises them as one ``AssertionError`` (which cocotb records as
the test's failure and the runner reports).
"""
from __future__ import annotations

from typing import Sequence


def compare(got: Sequence, expected: Sequence, label: str, inputs: Sequence | None = None,
            max_report: int = 12) -> list[str]:
    """Output words against the expectation: count, then word by word (the first ``max_report``
    mismatches, then how many more).  ``inputs``: the input word of each output (stream units),
    named in each mismatch."""
    problems = []
    if len(got) != len(expected):
        problems.append(f"{label}: {len(got)} output words, expected {len(expected)}")
    bad = [(k, e, g) for k, (e, g) in enumerate(zip(expected, got)) if e != g]
    for k, e, g in bad[:max_report]:
        line = f"{label}: word {k}: "
        if inputs is not None and k < len(inputs):
            x = inputs[k]
            line += f"in {x} (0x{x & (2**64 - 1):x}) "
        line += f"expected {e} got {g}"
        if isinstance(e, int) and isinstance(g, int):
            line += f" (diff {g - e})"
        problems.append(line)
    if len(bad) > max_report:
        problems.append(f"{label}: ... {len(bad) - max_report} more mismatches ({len(bad)}/{len(expected)})")
    return problems


def check(problems: list[str], what: str = "mismatch against the golden model") -> None:
    """Raise ``AssertionError`` listing ``problems`` (nothing when empty)."""
    if problems:
        raise AssertionError(f"{what}:\n  " + "\n  ".join(problems))
