"""Importing the package, the CLI parser and the science modules must not import torch."""

import subprocess
import sys
import textwrap


def _run(code):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_package_cli_and_science_modules_do_not_import_torch():
    proc = _run(
        """
        import importlib, sys
        import napari_cvdm
        import napari_cvdm.cli
        parser = napari_cvdm.cli.build_parser()
        for name in ("normalization", "io", "metrics", "errors", "geometry"):
            importlib.import_module(f"napari_cvdm.{name}")
        import pkgutil, napari_cvdm.physics as physics
        for info in pkgutil.iter_modules(physics.__path__):
            importlib.import_module(f"napari_cvdm.physics.{info.name}")
        commands = sorted(parser._subparsers._group_actions[0].choices)
        print(",".join(commands))
        print("torch" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    commands, torch_loaded = proc.stdout.strip().splitlines()[-2:]
    assert {"predict", "models", "demo"} <= set(commands.split(","))
    assert torch_loaded == "False"


def test_engine_registry_listing_does_not_import_torch():
    proc = _run(
        """
        import sys
        from napari_cvdm.engine import registry
        registry.list_models()
        print("torch" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_cli_help_imports_no_numpy_torch_or_pooch():
    proc = _run(
        """
        import sys
        from napari_cvdm.cli import main
        for argv in (["--help"], ["predict", "--help"], ["baseline", "--help"]):
            try:
                main(argv)
            except SystemExit:
                pass
        print([m for m in ("numpy", "torch", "pooch") if m in sys.modules])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_package_io_reader_and_writers_do_not_import_zarr():
    proc = _run(
        """
        import sys
        import napari_cvdm, napari_cvdm.io, napari_cvdm.zarr_io
        import napari_cvdm._reader, napari_cvdm._writer, napari_cvdm.cli
        napari_cvdm.cli.build_parser()
        print([m for m in ("zarr", "ome_zarr", "torch") if m in sys.modules])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
