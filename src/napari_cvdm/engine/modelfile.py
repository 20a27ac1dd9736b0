"""Model files: one ``.safetensors`` per model with a validated JSON metadata header.

No pickle anywhere: loading a model never executes code from the file. The safetensors
metadata holds one JSON document under the key ``"napari_cvdm"``::

    {"format": "napari-cvdm-model", "format_version": 1, "task": "sr" | "qpi" | "prior",
     "name": str, "description": str,
     "architecture": CVDMConfig.to_dict(),   # task "prior": engine.prior.PriorConfig
     "normalization": {...}          # napari_cvdm.tasks.sr.rule() / tasks.qpi.rule()
     "physics": {...}                # pixel sizes (µm), upscale, wavelength_um, na; QPI: dz_um
     "training": {...}               # data, steps, date, code version, ...
     "calibration": {...}            # optional: std calibration (workflows/calibration.py)
     "weights": {"dtype": "float16" | "float32", "sha256": digest of the stored tensors,
                 "digest_version": 2, "header_sha256": digest of the whole header}}

Weights may be stored in float16; they are cast to float32 at load. Loading reads everything
on the CPU, validates the header against the architecture, then moves the model to the device.
Anything wrong raises :class:`~napari_cvdm.errors.ModelFileError` naming the problem.

torch is imported inside the functions that need it, so :func:`validate_metadata` and
:func:`read_metadata` are cheap (the registry lists models without importing torch).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelFileError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "HEADER_KEY",
    "DIGEST_VERSION",
    "LoadedModel",
    "file_sha256",
    "header_digest",
    "load_model",
    "read_metadata",
    "save_model",
    "validate_metadata",
]

FORMAT = "napari-cvdm-model"
FORMAT_VERSION = 1
HEADER_KEY = "napari_cvdm"

_REQUIRED = {
    "format": str,
    "format_version": int,
    "task": str,
    "name": str,
    "description": str,
    "architecture": dict,
    "normalization": dict,
    "physics": dict,
    "training": dict,
}
_OPTIONAL = {"weights": dict, "calibration": dict}
_FIX = "re-save the model with napari-cvdm, or use another model file"


@dataclass
class LoadedModel:
    """A model ready for inference: ``model`` (``CVDM``, or ``EDMPrior`` for a prior; eval
    mode, on its device), its validated ``metadata`` dict (typed: :attr:`header`), the file's
    ``sha256`` (hex) and ``path`` (None if in memory). Load one with
    :func:`napari_cvdm.engine.registry.load`."""

    model: Any
    metadata: dict[str, Any]
    sha256: str | None
    path: Path | None

    @property
    def header(self) -> Any:
        """The typed header (:class:`~napari_cvdm.engine.header.ModelHeader`)."""
        from .header import ModelHeader

        return ModelHeader.from_dict(self.metadata)

    @property
    def task(self) -> str:
        return self.metadata["task"]

    @property
    def name(self) -> str:
        return self.metadata["name"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_metadata(meta: Any) -> dict[str, Any]:
    """Check a model header (pure; no torch). Returns ``meta`` or raises ``ModelFileError``.

    Checks: every required key present, no unknown key, value types, the format name and
    version, the task, the task against the architecture's channels, the normalisation rule and
    the physical parameters the task needs.
    """
    from .. import tasks

    if not isinstance(meta, dict):
        raise ModelFileError(
            f"model header must be a JSON object, not {type(meta).__name__}; {_FIX}"
        )
    if missing := sorted(set(_REQUIRED) - set(meta)):
        raise ModelFileError(f"model header is missing {missing}; {_FIX}")
    if unknown := sorted(set(meta) - set(_REQUIRED) - set(_OPTIONAL)):
        raise ModelFileError(f"model header has unknown keys {unknown}; {_FIX}")
    for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if key in meta and (not isinstance(meta[key], kind) or isinstance(meta[key], bool)):
            raise ModelFileError(
                f"model header field {key!r} must be {kind.__name__}, "
                f"got {type(meta[key]).__name__}; {_FIX}"
            )
    if meta["format"] != FORMAT:
        raise ModelFileError(f"not a napari-cvdm model (format {meta['format']!r}); {_FIX}")
    if meta["format_version"] > FORMAT_VERSION:
        raise ModelFileError(
            f"model format version {meta['format_version']} is newer than this napari-cvdm "
            f"understands ({FORMAT_VERSION}); update napari-cvdm"
        )
    if meta["format_version"] < 1:
        raise ModelFileError(f"invalid model format version {meta['format_version']}; {_FIX}")
    if meta["task"] not in tasks.names():
        raise ModelFileError(
            f"model task must be one of {list(tasks.names())}, got {meta['task']!r}; {_FIX}"
        )
    task = tasks.get(meta["task"])
    if not meta["name"].strip():
        raise ModelFileError(f"model name is empty; {_FIX}")
    _check_channels(meta, task)
    try:
        tasks.validate_rule(meta["normalization"], task.name)
    except ValueError as exc:
        raise ModelFileError(f"invalid normalisation rule: {exc}; {_FIX}") from None
    needed = task.condition_channels_needed(meta["normalization"])
    if needed is not None and meta["architecture"]["condition_channels"] != needed[0]:
        raise ModelFileError(
            f"a {task.name} model {needed[1]} needs architecture.condition_channels = "
            f"{needed[0]}, got {meta['architecture']['condition_channels']}; {_FIX}"
        )
    for key in task.physics_keys:
        value = meta["physics"].get(key)
        if not _is_number(value) or not value > 0:
            raise ModelFileError(
                f"physics.{key} must be a positive number for a {task.name!r} model, "
                f"got {value!r}; {_FIX}"
            )
    if "weights" in meta:
        weights = meta["weights"]
        if weights.get("dtype") not in ("float16", "float32") or not isinstance(
            weights.get("sha256"), str
        ):
            raise ModelFileError(f"model header 'weights' needs dtype and sha256; {_FIX}")
    return meta


def _check_channels(meta: dict[str, Any], task: Any) -> None:
    """The architecture's channel counts: non-negative integers, and the task's fixed ones."""
    arch = meta["architecture"]
    cond, target = task.fixed_channels
    for key, want in (("condition_channels", cond), ("target_channels", target)):
        got = arch.get(key)
        if not isinstance(got, int) or isinstance(got, bool) or got < 0:
            raise ModelFileError(f"architecture.{key} must be a non-negative integer; {_FIX}")
        if want is not None and got != want:
            raise ModelFileError(
                f"a {task.name!r} model needs architecture.{key} = {want}, got {got}; {_FIX}"
            )
    if not isinstance(arch.get("preset"), str):
        raise ModelFileError(f"architecture.preset must be a string; {_FIX}")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tensor_digest(tensors: dict[str, Any]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the stored tensors (sorted by name)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


#: ``weights.digest_version`` 2: ``weights.header_sha256`` covers the whole header (files
#: without the field, saved before it existed, have only the tensor digest checked)
DIGEST_VERSION = 2


def header_digest(meta: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the header without ``weights.header_sha256`` itself:
    architecture, physics, normalisation, calibration, name, ... and the tensor digest."""
    weights = {k: v for k, v in meta.get("weights", {}).items() if k != "header_sha256"}
    body = {**meta, "weights": weights}
    text = json.dumps(body, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _check_header_digest(meta: dict[str, Any], name: str) -> None:
    weights = meta["weights"]
    version = weights.get("digest_version")
    if version is None:
        return  # older file: its tensors are checked against weights.sha256 at load
    if version != DIGEST_VERSION or weights.get("header_sha256") != header_digest(meta):
        raise ModelFileError(
            f"the header of {name} does not match its digest (its architecture, physics, "
            f"normalisation or another field was edited); {_FIX}"
        )


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate the header of a model file without loading its tensors (no torch)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"model file not found: {path}; check the path, "
            "or run `napari-cvdm models` to list models"
        )
    try:
        with safe_open(str(path), framework="numpy") as fh:
            raw = (fh.metadata() or {}).get(HEADER_KEY)
    except Exception as exc:  # safetensors raises SafetensorError/OSError/ValueError/... variants
        raise ModelFileError(
            f"{path.name} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
            "it may be truncated or corrupt — download or save it again"
        ) from None
    if raw is None:
        raise ModelFileError(
            f"{path.name} has no napari-cvdm metadata header; "
            "only models saved by napari-cvdm can be used"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(
            f"the metadata header of {path.name} is not valid JSON ({exc}); "
            f"the file was altered — {_FIX}"
        ) from None
    validate_metadata(meta)
    if "weights" not in meta:  # save_model always writes it; without it nothing checks the data
        raise ModelFileError(
            f"the header of {path.name} lacks the 'weights' digest; the file was altered — {_FIX}"
        )
    _check_header_digest(meta, path.name)
    return meta


def save_model(
    path: str | os.PathLike, model: Any, metadata: dict[str, Any], dtype: Any = "float16"
) -> Path:
    """Write ``model`` (a ``CVDM``) and ``metadata`` to one ``.safetensors`` file, atomically.

    ``metadata`` holds task, name, description, normalization, physics and training; format,
    version, architecture (from ``model.config``) and the weights digest are filled in here.
    ``dtype``: ``"float16"`` (default, half the size) or ``"float32"`` (bit-exact) for the
    floating-point tensors. Returns the path written.
    """
    import torch
    from safetensors.torch import save_file

    name = str(dtype).removeprefix("torch.")
    if name not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    store = getattr(torch, name)
    tensors = {}
    for key, value in model.state_dict().items():
        t = value.detach().to("cpu")
        tensors[key] = (t.to(store) if t.is_floating_point() else t).contiguous().clone()
    meta = {k: v for k, v in metadata.items() if k not in ("format", "format_version", "weights")}
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        architecture=model.config.to_dict(),
        weights={
            "dtype": name,
            "sha256": _tensor_digest(tensors),
            "digest_version": DIGEST_VERSION,
        },
    )
    meta["weights"]["header_sha256"] = header_digest(meta)
    validate_metadata(meta)
    header = json.dumps(meta, sort_keys=True, allow_nan=False)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from ..fsutil import respect_umask, temp_path

    tmp = temp_path(path)  # marked with our pid (swept if killed), umask respected
    try:
        save_file(tensors, tmp, metadata={HEADER_KEY: header})
        respect_umask(tmp)  # save_file recreates the file with mode 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_tensors(expected: dict[str, tuple], stored: dict[str, tuple], name: str) -> None:
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong = sorted(k for k in set(expected) & set(stored) if expected[k] != stored[k])
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} tensor(s) with the wrong shape, e.g. {k}: {stored[k]} in the file, "
            f"{expected[k]} for the architecture in the header"
        )
    if problems:
        raise ModelFileError(
            f"the weights in {name} do not match its architecture ({'; '.join(problems)}); {_FIX}"
        )


def _check_stored_values(tensors: dict[str, Any], meta: dict[str, Any], name: str) -> None:
    """Floating-point tensors must have the header's dtype and only finite values."""
    import torch

    want = (meta.get("weights") or {}).get("dtype")
    for key, t in tensors.items():
        if not t.is_floating_point():
            continue
        if want is not None and str(t.dtype).removeprefix("torch.") != want:
            raise ModelFileError(
                f"tensor {key} of {name} is stored as {t.dtype}, but the header says {want}; {_FIX}"
            )
        if not bool(torch.isfinite(t).all()):
            raise ModelFileError(
                f"the weights of {name} contain NaN or Inf values (tensor {key}); the model is "
                "broken — use another model file or retrain"
            )


def load_model(path: str | os.PathLike, device: Any = "cpu") -> LoadedModel:
    """Load and validate a model file; returns a :class:`LoadedModel` on ``device``.

    Reads on the CPU, checks the header, the tensor names/shapes against the architecture and
    the weights digest, casts float16 weights to float32, then moves the model to ``device``
    (``"cpu"``, ``"cuda:0"``, ``"auto"``, ... or a ``torch.device``).
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    CVDM, CVDMConfig = network_classes(meta["task"])
    try:
        config = CVDMConfig.from_dict(meta["architecture"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"invalid architecture in {path.name}: {exc}; {_FIX}") from None
    import torch

    try:
        tensors = load_file(str(path), device="cpu")  # bounded by the file's size
    except Exception as exc:  # safetensors errors for truncated/corrupt data
        raise ModelFileError(
            f"cannot read the weights of {path.name} ({exc}); the file may be truncated — "
            "download or save it again"
        ) from None
    try:  # shapes of the declared network without allocating it (a header can declare anything)
        with torch.device("meta"):
            declared = CVDM(config)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"invalid architecture in {path.name}: {exc}; {_FIX}") from None
    expected = {k: tuple(v.shape) for k, v in declared.state_dict().items()}
    del declared
    _check_tensors(expected, {k: tuple(v.shape) for k, v in tensors.items()}, path.name)
    _check_stored_values(tensors, meta, path.name)
    if "weights" in meta and _tensor_digest(tensors) != meta["weights"]["sha256"]:
        raise ModelFileError(
            f"the weights of {path.name} do not match the digest in its header (the file was "
            f"altered or damaged); {_FIX}"
        )
    model = CVDM(config)
    reference = model.state_dict()
    for key, t in tensors.items():
        if t.is_floating_point():
            tensors[key] = t.to(reference[key].dtype)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    model.to(_torch_device(device))
    return LoadedModel(model=model, metadata=meta, sha256=file_sha256(path), path=path)


def network_classes(task: str) -> tuple[type, type]:
    """The (network, config) classes of a task's model files, by the task's network family:
    ``cvdm`` → (:class:`~.cvdm.CVDM`, :class:`~.cvdm.CVDMConfig`), ``edm_prior`` (the
    unconditional denoiser of zero-shot restoration) → (:class:`~.prior.EDMPrior`,
    :class:`~.prior.PriorConfig`)."""
    from .. import tasks

    if tasks.get(task).network == "edm_prior":
        from .prior import EDMPrior, PriorConfig

        return EDMPrior, PriorConfig
    from .cvdm import CVDM, CVDMConfig

    return CVDM, CVDMConfig


def _torch_device(device: Any) -> Any:
    """A ``torch.device`` for ``device``; strings go through ``engine.device.resolve_device``
    (without the ``NAPARI_CVDM_DEVICE`` override: workflows apply it when they run)."""
    import torch

    if isinstance(device, torch.device):
        return device
    from .device import resolve_device

    return resolve_device(device, honour_override=False)  # the caller's explicit choice
