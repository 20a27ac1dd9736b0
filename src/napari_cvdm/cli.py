"""`napari-cvdm` command-line entry point (no Qt, no napari, no torch at import).

Each subcommand lives in ``napari_cvdm.commands.<name>`` with ``add_parser`` and ``run``.
Errors the user can fix are raised as :class:`UserError` and printed as one line (exit code 2).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .commands import SUBCOMMANDS
from .errors import UserError

__all__ = ["UserError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand registered."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="napari-cvdm",
        description="Conditional Variational Diffusion Models for microscopy (headless CLI).",
    )
    parser.add_argument("--version", action="version", version=f"napari-cvdm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"napari_cvdm.commands.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet in this checkout
            if exc.name == f"napari_cvdm.commands.{name}":
                continue
            raise
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
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"napari-cvdm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-cvdm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
