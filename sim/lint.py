"""Verilator lint (``--lint-only -Wall``) of the generated Verilog.

:func:`lint` returns the warnings (one string per diagnostic, first line);
tests assert the list is empty.  The only waivers are in
``sim/lint_waivers.vlt``, each with the generator idiom it covers and why it
is harmless; pass ``waivers=False`` to see the raw report.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .build import SIM_DIR
from .toolchain import tool_env

WAIVERS = SIM_DIR / "lint_waivers.vlt"
_DIAG = re.compile(r"^%(Warning|Error)(-[A-Z0-9_]+)?: .*$", re.MULTILINE)


class LintError(RuntimeError):
    """Verilator could not lint the file (errors, not warnings)."""


def lint(verilog_path: Path | str, top: str | None = None, waivers: bool = True,
         extra_args: list[str] | None = None) -> list[str]:
    """Warnings of ``verilator --lint-only -Wall`` on one file (empty list = clean).

    Raises :class:`LintError` when Verilator reports errors.
    """
    path = Path(verilog_path)
    cmd = ["verilator", "--lint-only", "-Wall", "--quiet-stats"]
    if top:
        cmd += ["--top-module", top]
    if waivers:
        cmd.append(str(WAIVERS))
    cmd += list(extra_args or []) + [str(path)]
    with tool_env() as env:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    text = r.stdout + r.stderr
    diags = [m.group(0) for m in _DIAG.finditer(text)]
    errors = [d for d in diags if d.startswith("%Error") and not d.startswith("%Error: Exiting due to")]
    warnings = [d for d in diags if d.startswith("%Warning")]
    if errors or (r.returncode != 0 and not warnings):
        raise LintError(f"verilator lint of {path} failed:\n{text}")
    return warnings
