"""What a newcomer reads is true: the README's install brings Qt and a CPU-only torch route, the
menu names in the docs are napari's, the defaults quoted are the code's."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import yaml

from napari_cvdm.train_settings import TRAIN_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = [README, *(p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))]
QT_BINDINGS = ("pyqt5", "pyqt6", "pyside2", "pyside6")


def _first_command() -> str:
    return re.search(r"```bash\n(.*?)```", README, re.S).group(1)


def test_readme_first_command_brings_qt_and_cpu_only_torch():
    command = _first_command()
    assert "--index-url https://download.pytorch.org/whl/cpu" in command
    assert '-e ".[all]"' in command and "napari-cvdm demo" in command
    assert "download.pytorch.org/whl/cu" in README  # the GPU route


def test_all_extra_brings_a_qt_binding_and_the_core_stays_lean():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert not any(b in core for b in QT_BINDINGS) and "napari[all]" not in core
    assert project["optional-dependencies"]["all"] == ["napari[all]"]
    # napari's own metadata: napari[all] -> napari[pyqt] -> napari[pyqt6] -> PyQt6
    requires = [r.replace(" ", "") for r in metadata.requires("napari") or []]
    assert any(r.startswith("napari[optional,pyqt]") and 'extra=="all"' in r for r in requires)
    assert any(r.startswith("napari[pyqt6]") and 'extra=="pyqt"' in r for r in requires)
    assert any(r.startswith("PyQt6") and 'extra=="pyqt6"' in r for r in requires)


def test_menu_names_in_the_docs_are_the_manifests():
    manifest = yaml.safe_load((ROOT / "src/napari_cvdm/napari.yaml").read_text())
    name = manifest["display_name"]
    assert name == "napari CVDM"
    for text in DOCS:
        assert "Plugins → napari-cvdm" not in text and "Open Sample → napari-cvdm" not in text
    assert f"Plugins → {name} → Reconstruct" in README
    assert f"File → Open Sample → {name}" in README


def test_training_defaults_quoted_in_the_docs_are_the_codes():
    steps, batch, patch = (TRAIN_DEFAULTS[k] for k in ("steps", "batch", "patch"))
    assert f"({steps} steps, batch {batch}, patch {patch}, cosine schedule)" in README
    usage = (ROOT / "docs/usage.md").read_text(encoding="utf-8")
    assert f"({steps} steps, batch {batch},\n   patch {patch})" in usage
    assert "20000" not in README and "20,000" not in README
