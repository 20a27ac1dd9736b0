"""The one place where napari-cvdm chooses a compute device.

``resolve_device("auto")`` picks CUDA, then Apple MPS, then the CPU; it always picks the CPU when
the environment variable ``CI`` or ``GITHUB_ACTIONS`` is set (tests and CI runners are CPU-only by
contract). ``NAPARI_CVDM_DEVICE`` overrides whatever the caller asked for. An explicit choice that
this torch build or machine cannot honour raises :class:`napari_cvdm.errors.DeviceError` with a
message saying what to do.

Call :func:`prepare_torch_environment` before the first ``import torch`` (this module does it before
its own lazy torch import): on macOS it sets ``PYTORCH_ENABLE_MPS_FALLBACK=1`` so operators
missing on MPS fall back to the CPU.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING

from napari_cvdm.errors import DeviceError

if TYPE_CHECKING:  # pragma: no cover
    import torch

ENV_OVERRIDE = "NAPARI_CVDM_DEVICE"
CI_ENV_VARS = ("CI", "GITHUB_ACTIONS")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def prepare_torch_environment() -> None:
    """Set environment variables torch reads at import (macOS: MPS fallback to CPU). Idempotent."""
    if sys.platform == "darwin":
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")


def _torch():
    prepare_torch_environment()
    import torch

    return torch


def _running_in_ci() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() not in ("", "0", "false") for name in CI_ENV_VARS
    )


def _mps_available(torch_module) -> bool:
    backend = getattr(torch_module.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[tuple[str, str]]:
    """Devices present on this machine as ``(id, label)`` pairs, ``"auto"`` first, ``"cpu"`` last.

    Example: ``[("auto", "auto (cuda:0)"), ("cuda:0", "cuda:0 - NVIDIA H100"), ("cpu", "cpu")]``.
    """
    torch = _torch()
    devices: list[tuple[str, str]] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            devices.append((f"cuda:{index}", f"cuda:{index} - {torch.cuda.get_device_name(index)}"))
    if _mps_available(torch):
        devices.append(("mps", "mps - Apple GPU"))
    devices.append(("cpu", "cpu"))
    auto = str(resolve_device("auto", honour_override=False))
    return [("auto", f"auto ({auto})"), *devices]


def resolve_device(name: str | None = "auto", *, honour_override: bool = True) -> torch.device:
    """Turn ``"auto"|"cpu"|"cuda"|"cuda:i"|"mps"`` into a :class:`torch.device` that exists.

    ``NAPARI_CVDM_DEVICE`` (when set and ``honour_override``) replaces ``name``. ``"auto"`` is
    cuda > mps > cpu, but cpu whenever ``CI``/``GITHUB_ACTIONS`` is set. Raises ``DeviceError`` for
    an unknown name or an unavailable device.
    """
    torch = _torch()
    override = os.environ.get(ENV_OVERRIDE, "").strip() if honour_override else ""
    requested = (override or name or "auto").strip().lower()
    source = f"{ENV_OVERRIDE}={override!r}" if override else f"device {requested!r}"
    if not _DEVICE_PATTERN.match(requested):
        raise DeviceError(f"unknown {source}; use one of auto, cpu, cuda, cuda:N or mps")
    if requested == "auto":
        if _running_in_ci():
            return torch.device("cpu")
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "mps":
        if not _mps_available(torch):
            raise DeviceError(
                f"{source} asked for, but MPS (Apple GPU) is not available on this machine or "
                "torch build; use --device cpu (or auto)"
            )
        return torch.device("mps")
    # cuda or cuda:N
    if not torch.cuda.is_available():
        if getattr(torch.version, "cuda", None) is None:
            raise DeviceError(
                f"{source} asked for, but this torch build has no CUDA; install a CUDA build of "
                "torch (see README) or use --device cpu"
            )
        raise DeviceError(
            f"{source} asked for, but no CUDA GPU is usable (driver missing or GPU hidden); check "
            "nvidia-smi or use --device cpu"
        )
    index = int(requested.split(":")[1]) if ":" in requested else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"{source} asked for, but this machine has {count} CUDA device(s) "
            f"(cuda:0..cuda:{count - 1}); pick one of those or use --device auto"
        )
    return torch.device(f"cuda:{index}")


def free_device_memory(device: torch.device | str | None = None) -> None:
    """Release cached allocator memory on ``device`` (CUDA/MPS); a no-op on the CPU."""
    import gc

    torch = _torch()
    gc.collect()
    kind = torch.device(device).type if device is not None else None
    if kind in (None, "cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    if kind in (None, "mps") and _mps_available(torch):
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "empty_cache"):
            mps.empty_cache()
