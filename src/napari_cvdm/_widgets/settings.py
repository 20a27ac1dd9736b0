"""Widget choices that persist between napari sessions (device, CPU threads), as a small JSON file.

Stored in ``<cache>/widget_settings.json`` (``NAPARI_CVDM_CACHE_DIR`` overrides the cache, so
tests stay isolated). A missing or damaged file gives the defaults; failing to save is silent
(a setting is a convenience, never a reason to stop a run). No Qt and no torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["load_settings", "save_setting", "settings_path"]

FILENAME = "widget_settings.json"


def settings_path() -> Path:
    """Where the settings live."""
    from ..engine.registry import cache_dir

    return cache_dir() / FILENAME


def load_settings(section: str) -> dict[str, Any]:
    """The saved values of one widget (``section``), or ``{}``."""
    try:
        data = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        return {}
    values = data.get(section) if isinstance(data, dict) else None
    return dict(values) if isinstance(values, dict) else {}


def save_setting(section: str, key: str, value: Any) -> None:
    """Remember ``value`` under ``section``/``key`` (atomic replace; errors are ignored)."""
    path = settings_path()
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data.setdefault(section, {})[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass
