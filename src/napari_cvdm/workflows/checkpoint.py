"""Training checkpoints: one safetensors file, tensors + a JSON header, no pickle.

A checkpoint is *not* a model file (``engine/modelfile.py``): it carries everything needed to
continue a run bit-for-bit (weights, EMA weights, AdamW moments, the step, RNG states, the run's
configuration and history) and is named ``*.ckpt`` so model lists never pick it up.

Layout of the tensors (all stored as they are, CPU, contiguous)::

    model/<state_dict key>      live weights
    ema/<state_dict key>        EMA weights (used for sampling and saving)
    optim/<i>/<state key>       AdamW state of parameter i (exp_avg, exp_avg_sq, step, ...)
    rng/torch_cpu               torch CPU generator state (uint8)
    rng/torch_cuda/<k>          CUDA generator states, when present

The safetensors metadata header holds one key, ``napari_cvdm_checkpoint``: a JSON document with
``format``, ``version``, ``step``, the optimiser ``param_groups`` and anything else passed as
``info`` (scalars, lists, dicts; JSON-serialisable).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

CHECKPOINT_FORMAT = "napari-cvdm-checkpoint"
CHECKPOINT_VERSION = 1
_HEADER_KEY = "napari_cvdm_checkpoint"


@dataclass
class CheckpointData:
    """What a checkpoint holds, as loaded (tensors on CPU)."""

    step: int
    model_state: dict[str, Any]
    ema_state: dict[str, Any]
    optimizer_state: dict[str, Any]
    rng_state: dict[str, Any]
    info: dict[str, Any]


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from ..fsutil import temp_path

    tmp = temp_path(path)  # marked with our pid (swept if killed), umask respected
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _cpu_copy(tensor):
    return tensor.detach().to("cpu").contiguous().clone()


def capture_rng_state() -> dict[str, Any]:
    """The torch RNG states (CPU and every CUDA device) as tensors."""
    import torch

    state = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for k, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state[f"torch_cuda/{k}"] = cuda_state
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured (CUDA states only where devices exist)."""
    import torch

    if "torch_cpu" in state:
        torch.set_rng_state(state["torch_cpu"])
    if torch.cuda.is_available():
        cuda_states = [state[k] for k in sorted(state) if k.startswith("torch_cuda/")]
        for k, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device=k)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    step: int,
    model_state: dict[str, Any],
    ema_state: dict[str, Any],
    optimizer_state: dict[str, Any],
    rng_state: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically to ``path``; returns the path.

    ``optimizer_state`` is ``torch.optim.Optimizer.state_dict()``: its per-parameter tensors go
    to the tensor table, ``param_groups`` (plain numbers) to the JSON header.
    """
    from safetensors.torch import save as st_save

    tensors: dict[str, Any] = {}
    for key, value in model_state.items():
        tensors[f"model/{key}"] = _cpu_copy(value)
    for key, value in ema_state.items():
        tensors[f"ema/{key}"] = _cpu_copy(value)
    scalar_state: dict[str, dict[str, Any]] = {}
    for index, param_state in optimizer_state.get("state", {}).items():
        for key, value in param_state.items():
            if hasattr(value, "detach"):
                tensors[f"optim/{index}/{key}"] = _cpu_copy(value)
            else:  # plain python numbers some optimisers keep
                scalar_state.setdefault(str(index), {})[key] = value
    for key, value in (rng_state or {}).items():
        tensors[f"rng/{key}"] = _cpu_copy(value)
    header = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "step": int(step),
        "param_groups": optimizer_state.get("param_groups", []),
        "optimizer_scalars": scalar_state,
        "info": info or {},
    }
    data = st_save(tensors, metadata={_HEADER_KEY: json.dumps(header)})
    path = Path(path)
    write_bytes_atomic(path, data)
    return path


def read_checkpoint_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a checkpoint (step, info: task, architecture, config, ...) without
    its tensors; raises ``KeyError``, ``ValueError`` or ``OSError`` for a file that is not one
    (callers that only estimate report nothing)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as handle:
        return json.loads((handle.metadata() or {})[_HEADER_KEY])


def load_checkpoint(path: str | os.PathLike) -> CheckpointData:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on CPU).

    Raises :class:`InputError` when the file is missing, not a safetensors file or not a
    napari-cvdm checkpoint.
    """
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"checkpoint {path} does not exist; pass the .ckpt file written next to the model "
            "output by an earlier run (or leave out --resume to start fresh)"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(
            f"{path} is not a readable napari-cvdm checkpoint ({exc}); it may be truncated — "
            "use an older checkpoint or start a new run"
        ) from exc
    try:
        header = json.loads(metadata[_HEADER_KEY])
    except (KeyError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{path} has no napari-cvdm checkpoint header; resume needs a .ckpt file written by "
            "`napari-cvdm train` (a model file cannot be resumed: use --base-model to fine-tune)"
        ) from exc
    if header.get("format") != CHECKPOINT_FORMAT or header.get("version") != CHECKPOINT_VERSION:
        raise InputError(
            f"{path} is a checkpoint of format {header.get('format')!r} version "
            f"{header.get('version')!r}; this napari-cvdm reads {CHECKPOINT_FORMAT!r} version "
            f"{CHECKPOINT_VERSION}"
        )
    model_state: dict[str, Any] = {}
    ema_state: dict[str, Any] = {}
    rng_state: dict[str, Any] = {}
    optim_tensors: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        kind, _, rest = key.partition("/")
        if kind == "model":
            model_state[rest] = value
        elif kind == "ema":
            ema_state[rest] = value
        elif kind == "rng":
            rng_state[rest] = value
        elif kind == "optim":
            index, _, name = rest.partition("/")
            optim_tensors.setdefault(int(index), {})[name] = value
    for index, scalars in header.get("optimizer_scalars", {}).items():
        optim_tensors.setdefault(int(index), {}).update(scalars)
    optimizer_state = {"state": optim_tensors, "param_groups": header.get("param_groups", [])}
    return CheckpointData(
        step=int(header["step"]),
        model_state=model_state,
        ema_state=ema_state,
        optimizer_state=optimizer_state,
        rng_state=rng_state,
        info=header.get("info", {}),
    )
