"""Command-line values checked where they enter: argparse types and a parser whose errors are one line.

Each type refuses a bad value with the option's name (argparse adds it), the
value and what is allowed, e.g. ``edgemoe run: error: argument --timeout:
-1 is not allowed: a number of seconds > 0 and <= 86400``.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable

#: images per kernel call: the kernel's num_images register is 16 bits
MAX_BATCH = 0xFFFF
#: synthetic images of one command (each is run through the golden model with every tap kept)
MAX_IMAGES = 256
#: samples of one numerics measurement (about 0.7 kB of memory each)
MAX_SAMPLES = 2_000_000
MAX_SEED = 2**32 - 1
#: seconds to wait for one kernel call
MAX_TIMEOUT = 86_400.0


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``PROG: error: ...``, exit status 2), no usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _refuse(text: str, allowed: str):
    return argparse.ArgumentTypeError(f"{text!r} is not allowed: {allowed}")


def count(low: int, high: int) -> Callable[[str], int]:
    """An integer in [low, high]."""
    allowed = f"an integer from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _refuse(text, allowed) from None
        if not low <= value <= high:
            raise _refuse(text, allowed)
        return value
    parse.__name__ = "integer"
    return parse


def number(low: float, high: float, what: str) -> Callable[[str], float]:
    """A finite float in (low, high]."""
    allowed = f"{what} > {low:g} and <= {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _refuse(text, allowed) from None
        if not (math.isfinite(value) and low < value <= high):
            raise _refuse(text, allowed)
        return value
    parse.__name__ = "number"
    return parse


seed = count(0, MAX_SEED)
images = count(1, MAX_IMAGES)
batch = count(1, MAX_BATCH)
timeout = number(0, MAX_TIMEOUT, "a number of seconds")
fraction = number(0, 1, "a fraction")


def task(text: str) -> str | int:
    """A task name, 'all', or a task index (``1`` -> 1; the config checks the range)."""
    return int(text) if text.isdigit() else text


def _first_file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` that is not a folder (writing under it must fail), or None."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def output_folder(text: str) -> str:
    """A folder to write into: new or existing, not a file and not under one."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; the output needs a folder (a new or existing one)")
    blocker = _first_file_above(path)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be created: {blocker} is a file, not a folder")
    return text


def output_file(text: str) -> str:
    """A file to write: new or existing, not a folder, its folder new or existing."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
    blocker = _first_file_above(path)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be created: {blocker} is a file, not a folder")
    return text
