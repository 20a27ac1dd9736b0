"""CLI subcommands. Each module defines ``add_parser(subparsers)`` and ``run(args) -> int``.

Subcommand modules import no Qt and no napari; heavy imports (torch) happen inside ``run``.
"""

# module names under napari_cvdm.commands, in the order `napari-cvdm --help` lists them
SUBCOMMANDS = (
    "demo",
    "predict",
    "restore",
    "models",
    "export_bioimageio",
    "simulate",
    "baseline",
    "evaluate",
    "train",
)
