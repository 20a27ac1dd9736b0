"""The npe2 manifest: one real file, valid, importable, and no torch at napari start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from npe2 import PluginManifest

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "src" / "napari_cvdm" / "napari.yaml"
TOP_LEVEL = ROOT / "napari.yaml"


def _manifest() -> PluginManifest:
    return PluginManifest.from_file(PACKAGED)


def test_top_level_manifest_is_the_packaged_file():
    assert TOP_LEVEL.is_symlink()
    assert TOP_LEVEL.resolve() == PACKAGED.resolve()
    assert TOP_LEVEL.read_bytes() == PACKAGED.read_bytes()


def test_entry_point_finds_the_packaged_manifest():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="napari.manifest") if e.name == "napari-cvdm"]
    assert ep.value == "napari_cvdm:napari.yaml"
    manifest = PluginManifest.from_distribution("napari-cvdm")
    assert manifest.name == "napari-cvdm"


def test_identity_and_contributions():
    m = _manifest()
    assert m.name == "napari-cvdm"
    assert m.display_name == "napari CVDM"
    assert list(m.categories) == ["Image Processing", "Dataset"]
    commands = {c.id: c.python_name for c in m.contributions.commands}
    assert commands["napari-cvdm.reconstruct_widget"] == (
        "napari_cvdm._widgets.reconstruct:ReconstructWidget"
    )
    assert all(cid.startswith("napari-cvdm.") for cid in commands)
    widgets = {w.display_name: w.command for w in m.contributions.widgets}
    assert widgets["Reconstruct"] == "napari-cvdm.reconstruct_widget"
    samples = {s.key: s for s in m.contributions.sample_data}
    assert {"sr_synthetic", "qpi_synthetic", "biosr_microtubules"} <= set(samples)
    assert "MB" in samples["biosr_microtubules"].display_name  # size shown before downloading
    writers = {w.command: w for w in m.contributions.writers}
    assert sorted(writers) == ["napari-cvdm.write_ome_zarr", "napari-cvdm.write_tiff"]
    for writer in writers.values():
        assert [str(t) for t in writer.layer_types] == ["image"]
    assert sorted(writers["napari-cvdm.write_tiff"].filename_extensions) == [".tif", ".tiff"]
    assert writers["napari-cvdm.write_ome_zarr"].filename_extensions == [".zarr"]
    # one reader, for OME-Zarr folders only: no generic *.tif reader
    (reader,) = m.contributions.readers
    assert reader.command == "napari-cvdm.read_ome_zarr"
    assert reader.filename_patterns == ["*.zarr"] and reader.accepts_directories


def test_npe2_validate_with_imports():
    npe2 = Path(sys.executable).with_name("npe2")
    cmd = [str(npe2)] if npe2.exists() else [sys.executable, "-m", "npe2"]
    result = subprocess.run(
        [*cmd, "validate", "--imports", "napari-cvdm"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in (result.stdout + result.stderr).lower()


_NO_TORCH = """
import importlib, json, sys
from npe2 import PluginManifest
m = PluginManifest.from_distribution("napari-cvdm")
seen = []
for command in m.contributions.commands:
    module, _, qualname = command.python_name.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    seen.append(command.python_name)
import napari_cvdm, napari_cvdm.cli
napari_cvdm.cli.build_parser()
print(json.dumps({"torch": "torch" in sys.modules, "seen": seen}))
"""


def test_manifest_modules_do_not_import_torch():
    result = subprocess.run(
        [sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["seen"]) == len(_manifest().contributions.commands)
    assert report["torch"] is False


@pytest.mark.parametrize("key", ["sr_synthetic", "qpi_synthetic"])
def test_sample_commands_do_not_import_torch(key):
    code = (
        "import sys\n"
        "from napari_cvdm import _sample_data\n"
        f"fn = {{'sr_synthetic': _sample_data.synthetic_sr, "
        f"'qpi_synthetic': _sample_data.synthetic_qpi}}[{key!r}]\n"
        "layers = fn()\n"
        "assert layers and all(a.dtype.name == 'float32' for a, _ in layers)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


_NAPARI_START = """
import sys
import napari
viewer = napari.Viewer(show=False)
viewer.open_sample("napari-cvdm", "sr_synthetic")
names = [layer.name for layer in viewer.layers]
viewer.close()
print(names, "torch" in sys.modules)
"""


def test_napari_start_with_plugin_does_not_import_torch():
    # pytest-xvfb provides DISPLAY; the child inherits it (never QT_QPA_PLATFORM=offscreen)
    result = subprocess.run(
        [sys.executable, "-c", _NAPARI_START], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last == "['sr_ground_truth', 'sr_widefield'] False"
