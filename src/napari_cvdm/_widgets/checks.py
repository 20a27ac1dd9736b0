"""The CLI's ranges (:mod:`napari_cvdm.limits`) applied to the widgets' fields.

Each widget field that has a CLI counterpart is checked against the same :class:`~napari_cvdm.
limits.Range`, so a value the CLI refuses (a pixel size of 62.6 µm, NaN, a learning rate of 0)
gives the same one line in napari — as the Run button's problem, before anything starts.

No Qt, torch or napari here: the functions read ``.value`` of whatever objects they are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import tasks
from ..errors import InputError
from ..limits import check_value

__all__ = [
    "RECONSTRUCT_FIELDS",
    "TRAIN_FIELDS",
    "field_problem",
    "fields_problem",
    "preflight_job",
]

_MODES = tasks.names(reconstructs=True)


def _optics_modes(field: str) -> tuple[str, ...]:
    """The modes whose task's adapter takes the optics ``field``."""
    return tuple(m for m in _MODES if field in tasks.get(m).optics_fields)


#: Reconstruct widget attribute -> (limits name, label shown, 0 means "unknown / automatic",
#: modes where the field applies: every mode, or the tasks that take that optics)
RECONSTRUCT_FIELDS: dict[str, tuple[str, str, bool, tuple[str, ...]]] = {
    "pixel_size_um": ("pixel_size_um", "Pixel size (µm)", True, _MODES),
    "wavelength_um": ("wavelength_um", "Wavelength (µm)", True, _optics_modes("wavelength_um")),
    "na": ("na", "NA", True, _optics_modes("na")),
    "offset_adu": ("offset_adu", "Camera offset (ADU)", False, _optics_modes("offset_adu")),
    "dz_um": ("dz_um", "dz (µm)", True, _optics_modes("dz_um")),
    "samples": ("samples", "Samples", False, _MODES),
    "steps": ("steps", "Steps", False, _MODES),
    "seed": ("seed", "Seed", False, _MODES),
    "tile_size": ("tile", "Tile size (px)", False, _MODES),
    "threads": ("threads", "CPU threads", True, _MODES),
}

#: Train widget attribute -> (limits name, label shown, 0 means "automatic")
TRAIN_FIELDS: dict[str, tuple[str, str, bool]] = {
    "steps": ("train_steps", "Steps", False),
    "batch": ("batch", "Batch", False),
    "patch": ("patch", "Patch size", False),
    "val_every": ("val_every", "Validate every", False),
}


def field_problem(name: str, value: Any, label: str, zero_unknown: bool = False) -> str | None:
    """The one line for ``value`` outside ``LIMITS[name]`` (``label`` names the field), or
    None. ``zero_unknown``: 0 means "unknown" or "automatic" and passes."""
    if zero_unknown and isinstance(value, int | float) and value == 0:
        return None
    try:
        check_value(name, value, flag=label)
    except InputError as exc:
        return f"{exc}."
    return None


def fields_problem(
    widget: Any, fields: Mapping[str, tuple[Any, ...]], mode: str | None = None
) -> str | None:
    """The first field of ``widget`` (attributes named in ``fields``) outside its range, as
    one line, or None. Fields whose last entry lists modes are checked in those modes only."""
    for attr, spec in fields.items():
        name, label, zero_unknown = spec[:3]
        if mode is not None and len(spec) > 3 and mode not in spec[3]:
            continue
        field = getattr(widget, attr, None)
        if field is None:
            continue
        problem = field_problem(name, field.value, label, zero_unknown)
        if problem:
            return problem
    return None


def preflight_job(mode: str, job: Any, meta: Any, offset_given: bool = False) -> list[str]:
    """The CLI's checks of a reconstruction before it starts (resampling factor, memory, camera
    offset against the image): raises ``UserError`` with one line, or returns notes to show.

    ``job``: a ``ReconstructionJob``; ``meta``: the model header (nothing is checked without
    one); ``offset_given``: the offset came from the layer or the user, not from the model.
    """
    from ..workflows.preflight import check_job, check_sr_offset

    if not isinstance(meta, dict):
        return []
    options = job.task_options
    name = str(options.get("input_name") or "the image")
    optics = {k: options.get(k) for k in ("pixel_size_um", "na", "wavelength_um")}
    check_job(mode, job.image.shape, meta, optics, job.params.n_samples, name=name)
    offset = options.get("offset_adu") if offset_given else None
    note = check_sr_offset(mode, job.image, meta, offset, name, "the camera offset")
    return [note] if note else []
