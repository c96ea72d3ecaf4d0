"""The ``edgemoe`` command line.

Every command takes ``--config`` (a preset name or a YAML file) and any
number of ``--set`` overrides.  Errors in what the user typed end in one line
naming the field (exit status 2), never in a traceback.

Layout: one module per command group, each with ``add_commands(subparsers)``
that adds its commands to the main parser's subparsers and sets
``func=cmd_...`` on each (``cmd_...(args) -> int``, the exit status).
:data:`COMMAND_MODULES` lists them in the order of ``edgemoe --help``.
Shared helpers (``add_config_args``, ``config_from_args``,
``load_state_dict``, ``user_error_types``) live in :mod:`edgemoe.cli.common`,
the checked argparse types in :mod:`edgemoe.cli.args`.  Commands raise;
:func:`run` alone turns exceptions into one-line errors and exit statuses.
Library packages never import ``edgemoe.cli``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from edgemoe.cli import args as cli_args
from edgemoe.cli import golden, hls, host, perf, sim, train
from edgemoe.cli.common import describe_os_error, user_error_types

#: the command groups, in the order of ``edgemoe --help``
COMMAND_MODULES = (golden, hls, perf, host, train, sim)

#: exit statuses: the command's own (0 done, 1 a check failed), or bad input / a usage error
BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.OneLineParser(prog="edgemoe", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None, prog: Callable[[argparse.Namespace], str]) -> int:
    """Parse ``argv`` and run ``args.func(args)``: the one place where exceptions become exit statuses.

    The status is the command's own, argparse's (0 for ``--help``), or
    :data:`BAD_INPUT` after one line ``PROG: error: ...`` on stderr for a
    user error (:func:`~edgemoe.cli.common.user_error_types`) or an
    unreadable/unwritable path.  Any other exception is a bug: a traceback.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed in one line
        return e.code if isinstance(e.code, int) else BAD_INPUT
    try:
        return args.func(args)
    except user_error_types() as e:
        message = str(e)
    except OSError as e:  # a path the user named that cannot be read or written
        message = describe_os_error(e)
    print(f"{prog(args)}: error: {message}", file=sys.stderr)
    return BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status: 0 done, 1 a check failed, 2 bad input (one line on stderr)."""
    return run(build_parser(), argv, lambda args: f"edgemoe {args.command}")

