"""Where models live, and the one door to load them: :func:`load` (weights) and :func:`header`
(the typed header alone, no torch).

Models are bundled in the package, trained by the user, or any file given by path:

* **bundled**: ``napari_cvdm/models/*.safetensors`` (read via ``importlib.resources``, offline);
* **user**: ``<cache>/models/*.safetensors`` where ``<cache>`` is :func:`cache_dir`
  (``pooch.os_cache("napari-cvdm")``, or ``$NAPARI_CVDM_CACHE_DIR``, read afresh on each call);
* **file**: any model file path.

Listing only reads the safetensors headers (no torch, no tensors), so it is cheap. Nothing
else reads model files: ``engine.modelfile`` holds the format (validation, digests, the
safetensors calls) and is called from here.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelFileError
from .modelfile import read_metadata

__all__ = [
    "CACHE_ENV",
    "ModelInfo",
    "cache_dir",
    "default_model",
    "header",
    "list_models",
    "load",
    "make_untrained_model",
    "make_untrained_prior",
    "model_info",
    "resolve_model",
    "user_models_dir",
]

CACHE_ENV = "NAPARI_CVDM_CACHE_DIR"
SUFFIX = ".safetensors"


@dataclass(frozen=True)
class ModelInfo:
    """What the model lists show: ``pixel_size_um`` is the input pixel size of the training data
    (None for a prior); ``size_bytes`` the file size; ``source`` bundled, user or file."""

    name: str
    task: str
    preset: str
    pixel_size_um: float | None
    source: str
    path: Path
    description: str
    size_bytes: int


def cache_dir() -> Path:
    """The napari-cvdm cache folder: ``$NAPARI_CVDM_CACHE_DIR`` or pooch's OS cache."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    import pooch

    return Path(pooch.os_cache("napari-cvdm"))


def user_models_dir() -> Path:
    """Folder of user-trained models, ``<cache>/models`` (not created here)."""
    return cache_dir() / "models"


def model_info(path: str | os.PathLike, source: str = "file") -> ModelInfo:
    """Read one model file's header into a :class:`ModelInfo` (raises ``ModelFileError``)."""
    path = Path(path)
    meta = read_metadata(path)
    pixel = meta["physics"].get("pixel_size_um")
    return ModelInfo(
        name=meta["name"],
        task=meta["task"],
        preset=str(meta["architecture"].get("preset", "?")),
        pixel_size_um=float(pixel) if isinstance(pixel, int | float) else None,
        source=source,
        path=path,
        description=meta["description"],
        size_bytes=path.stat().st_size,
    )


def _bundled_files() -> list[Path]:
    folder = resources.files("napari_cvdm").joinpath("models")
    try:
        entries = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(Path(str(e)) for e in entries if e.name.endswith(SUFFIX))


def _user_files() -> list[Path]:
    folder = user_models_dir()
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def list_models(task: str | None = None) -> list[ModelInfo]:
    """Bundled then user models (optionally of one ``task``), sorted by name within each source.

    A file whose header cannot be read is skipped with a ``UserWarning`` naming it.
    """
    found: list[ModelInfo] = []
    for source, files in (("bundled", _bundled_files()), ("user", _user_files())):
        infos = []
        for path in files:
            try:
                infos.append(model_info(path, source))
            except ModelFileError as exc:
                warnings.warn(f"skipping model file {path}: {exc}", UserWarning, stacklevel=2)
        found.extend(sorted(infos, key=lambda i: i.name))
    return [i for i in found if task is None or i.task == task]


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The file of a model given by name (bundled first, then user) or by path.

    Raises ``ModelFileError`` listing the available names when nothing matches.
    """
    text = os.fspath(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.is_file():
        return candidate
    models = list_models()
    for info in models:
        if text in (info.name, info.path.stem):
            return info.path
    looks_like_path = text.endswith(SUFFIX) or os.sep in text or "/" in text
    names = ", ".join(sorted({i.name for i in models})) or "none installed"
    if looks_like_path:
        raise ModelFileError(
            f"model file not found: {text}; check the path (available models: {names})"
        )
    raise ModelFileError(
        f"unknown model {text!r}; available models: {names} "
        f"(user models go in {user_models_dir()}), or give the path of a .safetensors model file"
    )


def load(name_or_path: str | os.PathLike, device: Any = "cpu") -> Any:
    """The one door to a model: resolve ``name_or_path`` (:func:`resolve_model`), check and
    load the file (``engine.modelfile.load_model``: header, digests, shapes, finite weights)
    on ``device``; returns a ``LoadedModel`` (``.model``, ``.metadata``, typed ``.header``).
    Raises ``ModelFileError`` in one line."""
    from .modelfile import load_model

    return load_model(resolve_model(name_or_path), device)


def header(name_or_path: str | os.PathLike) -> Any:
    """The typed, validated header (:class:`~napari_cvdm.engine.header.ModelHeader`) of a model
    by name or path, without its weights (no torch)."""
    from .header import ModelHeader

    return ModelHeader.from_dict(read_metadata(resolve_model(name_or_path)))


def default_model(task: str) -> ModelInfo | None:
    """The bundled default model for ``task`` ("sr"/"qpi"/"prior"), or None when none is
    bundled."""
    from .. import tasks

    bundled = [i for i in list_models(task) if i.source == "bundled"]
    for info in bundled:
        if info.name == tasks.get(task).default_model:
            return info
    return bundled[0] if bundled else None


def make_untrained_model(task: str, preset: str = "tiny", seed: int = 0) -> Any:
    """A ``LoadedModel`` with random weights, for demos and tests before trained models exist.

    Its metadata says ``training.untrained = true`` and its name starts with "UNTRAINED";
    the results are meaningless, so callers must warn the user loudly.
    """
    import torch

    from .. import tasks
    from .cvdm import CVDM, CVDMConfig
    from .modelfile import FORMAT, FORMAT_VERSION, LoadedModel, validate_metadata

    if task not in tasks.names(trainable=True):
        raise ValueError(f"task must be 'sr' or 'qpi', got {task!r}")
    spec = tasks.get(task)
    rule = spec.rule()
    cond, target = spec.condition_channels_needed(rule)[0], spec.fixed_channels[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = CVDMConfig(
            condition_channels=cond, target_channels=target, preset=preset, residual=True
        )
        model = CVDM(config).eval()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": task,
        "name": f"UNTRAINED-{task}-{preset}",
        "description": f"UNTRAINED {preset} {task.upper()} model with random weights (demo only)",
        "architecture": config.to_dict(),
        "normalization": rule,
        "physics": dict(spec.default_physics),
        "training": {"untrained": True, "steps": 0, "seed": int(seed)},
    }
    return LoadedModel(model=model, metadata=validate_metadata(meta), sha256=None, path=None)


def make_untrained_prior(preset: str = "tiny", seed: int = 0, pixel_size_um: float = 0.0313) -> Any:
    """A ``LoadedModel`` of a random-weight prior (task ``prior``), for tests and demos
    (results meaningless). Its name starts with "UNTRAINED" and ``training.untrained`` is
    true."""
    import torch

    from ..tasks.restore import PRIOR_NORMALIZATION
    from .modelfile import FORMAT, FORMAT_VERSION, LoadedModel, validate_metadata
    from .prior import EDMPrior, PriorConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = PriorConfig(preset=preset)
        model = EDMPrior(config).eval()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": "prior",
        "name": f"UNTRAINED-prior-{preset}",
        "description": f"UNTRAINED {preset} prior with random weights (tests and demos only)",
        "architecture": config.to_dict(),
        "normalization": PRIOR_NORMALIZATION,
        "physics": {"pixel_size_um": float(pixel_size_um), "modality": "fluorescence"},
        "training": {"untrained": True, "steps": 0, "seed": int(seed)},
    }
    return LoadedModel(model=model, metadata=validate_metadata(meta), sha256=None, path=None)
