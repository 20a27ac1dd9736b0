"""`napari-cvdm` command-line entry point (no Qt, no napari, no torch at import).

Each subcommand lives in ``napari_cvdm.commands.<name>`` with ``add_parser`` and ``run``.
:func:`main` is the error boundary: errors the user can fix (:class:`UserError`, a full disk,
a read-only or forbidden folder, out of memory, a bad option) are printed as one line and exit
with code 2; any other exception is a bug, whose traceback goes to a log file named in the one
line printed (exit 1). SIGTERM is handled like Ctrl-C (exit 130, no partial output).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from .commands import SUBCOMMANDS
from .errors import UserError

__all__ = ["UserError", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: ...; see prog --help``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand registered."""
    from . import __version__

    parser = _Parser(
        prog="napari-cvdm",
        description="Conditional Variational Diffusion Models for microscopy (headless CLI).",
    )
    parser.add_argument("--version", action="version", version=f"napari-cvdm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:  # a missing or broken subcommand module is an error, not skipped
        module = importlib.import_module(f"napari_cvdm.commands.{name}")
        subparser = module.add_parser(sub)
        subparser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 user error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is not None:  # the words after the subcommand, for the provenance of what it writes
        args._argv = list(argv)[1:]
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    prefix = f"napari-cvdm {args.command}"
    try:
        with _sigterm_as_interrupt():
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted (no partial output was left)", file=sys.stderr)
        return 130
    except Exception as exc:  # the error boundary: one line, never a traceback
        from .failures import internal_message, user_message

        message = user_message(exc)
        if message is not None:
            print(f"{prefix}: error: {message}", file=sys.stderr)
            return 2
        print(f"{prefix}: error: {internal_message(exc, prefix)}", file=sys.stderr)
        return 1


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``KeyboardInterrupt`` inside the block (main thread only), so writers
    clean up their temporary files; commands may install their own handlers on top."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
