"""Training settings shared by `napari-cvdm train` and the Train widget: defaults and files.

The defaults are defined once in :mod:`napari_cvdm.defaults` (:data:`TRAIN_DEFAULTS`, re-exported
here), so the CLI and the widget start the same run. A settings
file is JSON (``{"napari_cvdm_train_settings": 1, "task": "sr", "steps": 2000, ...}``); the
widget's **Save settings…** writes one and ``napari-cvdm train --config FILE`` reads it (flags
given on the command line win), and ``--save-config FILE`` writes the CLI's settings for the
widget's **Load settings…**. Keys not listed in :data:`SETTING_TYPES` are refused by name.

No torch, Qt or napari here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .defaults import TRAIN_DEFAULTS
from .errors import InputError

__all__ = [
    "FORMAT_KEY",
    "SETTING_TYPES",
    "TRAIN_DEFAULTS",
    "read_settings",
    "write_settings",
]

FORMAT_KEY = "napari_cvdm_train_settings"

#: key -> accepted JSON types (None allowed where the CLI has no value by default)
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "task": (str,),
    "data": (str,),
    "base_model": (str, type(None)),
    "preset": (str,),
    "freeze_schedule": (bool,),
    "steps": (int,),
    "batch": (int,),
    "patch": (int,),
    "lr": (float, int, type(None)),
    "lr_schedule": (str,),
    "val_fraction": (float, int),
    "val_every": (int,),
    "val_count": (int,),
    "val_steps": (int,),
    "ckpt_every": (int,),
    "seed": (int,),
    "device": (str,),
    "name": (str, type(None)),
    "description": (str,),
    "fp16": (bool,),
    "sr_prior": (str,),
    "qpi_priors": (str,),
    "patches_per_frame": (int,),
    "physics": (dict,),
    "sim": (dict,),
}


def write_settings(path: str | os.PathLike, settings: dict[str, Any], overwrite: bool) -> Path:
    """Write ``settings`` (keys of :data:`SETTING_TYPES`; None values are left out) as JSON.

    An existing file is refused unless ``overwrite``; the file honours the umask.
    """
    from .fsutil import refuse_existing

    path = Path(path)
    settings = {k: v for k, v in settings.items() if v is not None}
    check_settings(settings, str(path))
    if not path.parent.is_dir():
        raise InputError(
            f"cannot write the training settings to {path}: the folder {path.parent} does not "
            "exist; create it or choose another file"
        )
    refuse_existing([path], (), overwrite)
    body = {FORMAT_KEY: 1, **settings}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The settings in a file written by :func:`write_settings` (or by hand); raises
    :class:`InputError` naming the file and the first problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"training settings file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read training settings from {path}: {exc}") from None
    if not isinstance(data, dict) or data.get(FORMAT_KEY) != 1:
        raise InputError(
            f'{path} is not a napari-cvdm training settings file (no "{FORMAT_KEY}": 1); '
            "write one with the Train widget's 'Save settings…' or `train --save-config`"
        )
    data = {k: v for k, v in data.items() if k != FORMAT_KEY}
    check_settings(data, str(path))
    return data


def check_settings(settings: dict[str, Any], where: str) -> None:
    """Refuse unknown keys and values of the wrong JSON type, naming the key."""
    for key, value in settings.items():
        if key not in SETTING_TYPES:
            raise InputError(
                f"{where}: unknown training setting {key!r}; known: {', '.join(SETTING_TYPES)}"
            )
        types = SETTING_TYPES[key]
        if value is None and type(None) not in types:
            raise InputError(f"{where}: {key} must not be empty")
        if isinstance(value, bool) and bool not in types:
            raise InputError(f"{where}: {key} must be a number, got {value!r}")
        if value is not None and not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types if t is not type(None))
            raise InputError(f"{where}: {key} must be {names}, got {value!r}")
