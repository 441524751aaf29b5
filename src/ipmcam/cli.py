"""The ``ipmcam`` command: one parser composed of every layer's subcommands.

This module sits on top of all the others (see docs/architecture.md): each
package contributes its commands through a ``register(subparsers)`` function,
so no lower layer needs to know about the command line as a whole.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ipmcam.calibration import cli as calibration_cli
from ipmcam.errors import EngineError, UserError
from ipmcam.measure import bench_cli, eval_cli, soak
from ipmcam.realtime import cameras, config, native_logs, presets
from ipmcam.realtime import cli as live_cli
from ipmcam.studio import bench as studio_bench
from ipmcam.studio import cli as studio_cli

#: Who adds which subcommands, in the order ``ipmcam --help`` lists them.
COMMAND_GROUPS = (live_cli, cameras, studio_cli, presets, config, bench_cli, studio_bench, soak, eval_cli,
                  calibration_cli)


class _Parser(argparse.ArgumentParser):
    """argparse, except that a bad command line is one ``ipmcam: error:`` line like every other refusal."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]
        raise UserError(f"{command + ': ' if command else ''}{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; ``config --print`` reads the settings of every command from it."""
    parser = _Parser(prog="ipmcam", description="Real-time makeup transfer for webcams and videos.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log more, including the native libraries' own lines (mediapipe, TFLite)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    parser.set_defaults(root_parser=parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user's mistake is one ``ipmcam: error:`` line and exit code 2."""
    parser = build_parser()
    try:
        args = config.parse_args(parser, argv)  # the config file's settings, then the flags
    except UserError as exc:
        print(f"ipmcam: error: {exc}", file=sys.stderr)
        return 2
    if not args.verbose:
        native_logs.quiet_environment()  # before mediapipe, TFLite or absl load (ipmcam loads them lazily)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="ipmcam: %(message)s")
    try:
        with native_logs.filtered(enabled=not args.verbose):
            return args.handler(args)
    except (UserError, EngineError) as exc:
        print(f"ipmcam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """Console-script entry: run, then leave without the interpreter's slow teardown.

    Every file and device is closed by ``main``; skipping the native
    libraries' global destructors is what lets Ctrl-C or SIGTERM end the
    process well within a second.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
