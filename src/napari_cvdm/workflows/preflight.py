"""Checks of a job before anything is allocated or written: resampling, memory, disk, offset.

:func:`check_job` computes the SR resampling factor the task adapter would use (the image's
pixel size and optics against the model's PSF sampling), refuses factors outside
[1/``MAX_RESAMPLE_FACTOR``, ``MAX_RESAMPLE_FACTOR``] (usually a unit mistake: nm typed as µm,
a 72-dpi resolution tag) and images that become smaller than the model's minimum, and refuses
jobs whose output arrays would not fit in the available memory — naming the number and the
remedy instead of crashing later. The same kind of estimate guards the other commands:
:func:`check_baseline_job` (classical baselines), :func:`check_demo` (simulation and
reconstruction of the demo) and :func:`check_train_run` (training: the folders are writable, no
output is replaced, the disk holds a checkpoint and the model, the memory holds a step). The
numbers are peak resident memory measured on the CPU (``ru_maxrss``), rounded up.
:func:`check_sr_offset` compares the camera offset with the image it is subtracted from.

No torch at import (only :func:`check_train_run` imports it, to count the network's parameters
on the meta device).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..limits import check_memory, format_bytes

__all__ = [
    "BYTES_PER_OUTPUT_PIXEL",
    "check_baseline_job",
    "check_demo",
    "check_job",
    "check_simulation",
    "check_simulator_options",
    "check_sr_offset",
    "check_train_run",
    "train_disk_bytes",
    "train_memory_bytes",
]

_MIB = 1 << 20

#: float32 mean, std and λ map, and the widget's partial copies of mean/std: bytes held per
#: output pixel over a whole job (the γ/β stacks are computed only when read)
BYTES_PER_OUTPUT_PIXEL = 4 * 3 + 4 * 2
#: working bytes per pixel of the frame being sampled: condition, λ, the tiled blend and the
#: float64 running mean/M2 with their temporaries (benchmarks/memory.py: a 4096² input, 8192²
#: output, 1 sample peaked at 3.8 GB, 2048² at 2.2 GB; this estimate gives 6.7 and 3.3 GB)
BYTES_PER_FRAME_PIXEL = 40
#: and per sample of a group (the sample, its noise and ε̂)
BYTES_PER_FRAME_PIXEL_PER_SAMPLE = 8
#: one network call's activations: about this per pixel untiled (preset small), at most the
#: sampler's CPU budget (engine.tile_plan.CPU_BUDGET_CAP_MB), which tiles bigger frames
ACTIVATION_BYTES_PER_PIXEL, ACTIVATION_CAP_BYTES = 1200, 2 << 30


def check_job(
    task: str,
    shape: Sequence[int],
    metadata: dict[str, Any],
    options: dict[str, Any],
    n_samples: int,
    name: str = "the image",
    available: int | None = None,
) -> dict[str, Any]:
    """Refuse a job that cannot work; returns ``factor``, ``output_shape`` and ``bytes``.

    ``shape``: the input array's shape (..., Y, X); ``options``: the task options (SR:
    ``pixel_size_um``, ``na``, ``wavelength_um``); ``available``: bytes of RAM (default: ask
    the system).
    """
    from .. import tasks

    spec = tasks.get(task)
    if len(shape) < spec.min_input_ndim:  # the task's adapter explains what is needed
        return {"factor": 1.0, "output_shape": tuple(shape), "bytes": 0}
    factor, out = spec.output_plan(tuple(shape), metadata, options, name)
    frame_pixels = out[-1] * out[-2]
    per_frame_pixel = BYTES_PER_FRAME_PIXEL + BYTES_PER_FRAME_PIXEL_PER_SAMPLE * min(n_samples, 8)
    need = (
        math.prod(out) * BYTES_PER_OUTPUT_PIXEL
        + frame_pixels * per_frame_pixel
        + min(ACTIVATION_CAP_BYTES, ACTIVATION_BYTES_PER_PIXEL * frame_pixels)
    )
    check_memory(
        need,
        f"reconstructing {name} (output {'×'.join(map(str, out))})",
        "crop the image, split the stack into parts, or check the pixel size "
        f"(about {format_bytes(BYTES_PER_OUTPUT_PIXEL + per_frame_pixel)} per output pixel)",
        available,
    )
    return {"factor": factor, "output_shape": out, "bytes": need}


def check_sr_offset(
    task: str,
    array: Any,
    metadata: dict[str, Any],
    offset_adu: float | None,
    name: str,
    flag: str = "--offset",
) -> str | None:
    """SR: the offset the reconstruction will subtract (``offset_adu``, given by the user, or
    the model's default) against the image; raises ``InputError`` for a given offset above most
    of the image, returns a note for such a default (None when it fits, and for QPI)."""
    from .. import tasks

    if not tasks.get(task).camera_input:
        return None
    from ..imagekind import check_offset

    given = offset_adu is not None
    if not given:
        rule = (metadata.get("normalization") or {}).get("input") or {}
        offset_adu = rule.get("offset_adu")
        if not isinstance(offset_adu, int | float):
            return None
    return check_offset(array, float(offset_adu), str(name), given, flag)


#: classical baselines: peak bytes per input pixel (Y × X), measured at 512² (Wiener 430, RL 345,
#: US-TIE 450 for a 2-plane stack), rounded up; plus the float64 copy of a stack's planes
BASELINE_BYTES_PER_PIXEL = 640


def check_baseline_job(
    method: str, shape: Sequence[int], name: str, available: int | None = None
) -> int:
    """Refuse a baseline whose working memory does not fit; returns the estimate in bytes."""
    h, w = int(shape[-2]), int(shape[-1])
    planes = math.prod(int(s) for s in shape[:-2]) if len(shape) > 2 else 1
    need = h * w * (BASELINE_BYTES_PER_PIXEL + 16 * planes)
    check_memory(
        need,
        f"the {method} baseline of {name} ({h}×{w})",
        "crop the image or split it into parts",
        available,
    )
    return need


#: the simulators' peak bytes per simulated pixel (SR simulates on a 4× finer object grid:
#: about 1.7-2.3 KiB per widefield pixel measured at 128² and 512²; QPI propagates complex planes)
SIMULATION_BYTES_PER_PIXEL = 2560


def check_demo(size: int, n_samples: int, available: int | None = None) -> int:
    """Refuse a demo whose simulation (SR at ``size``², QPI at (2 ``size``)²) or SR
    reconstruction (``size``² → (2 ``size``)²) would not fit in memory; returns the estimate."""
    simulation = SIMULATION_BYTES_PER_PIXEL * (2 * size) ** 2
    reconstruction = check_job("sr", (size, size), {}, {}, n_samples, "the demo", 1 << 62)
    need = max(simulation, reconstruction["bytes"])
    check_memory(
        need,
        f"the demo at --size {size}",
        "choose a smaller --size (the default is 128)",
        available,
    )
    return need


def check_simulation(
    task: str,
    n: int,
    size: int | None,
    planes: int | None,
    folder: Any,
    available: int | None = None,
) -> dict[str, int]:
    """Refuse a ``simulate`` run whose one sample would not fit in memory, or whose files would
    not fit on the disk of ``folder`` (the nearest existing parent when it does not exist yet);
    returns ``memory_bytes`` and ``disk_bytes``."""
    from pathlib import Path

    from .. import tasks
    from ..fsutil import free_bytes

    spec = tasks.get(task)
    size = int(size or spec.simulation_size)
    per_pair = 4 * size**2 * spec.simulated_planes(planes)  # float32 input + target planes
    memory = SIMULATION_BYTES_PER_PIXEL * size**2 * spec.simulation_grid_factor
    check_memory(
        memory, f"simulating one {size}×{size} sample", "choose a smaller --size", available
    )
    disk = int(n) * per_pair
    where = Path(folder)
    while not where.exists() and where != where.parent:
        where = where.parent
    free = free_bytes(where)
    if free is not None and disk > free:
        raise InputError(
            f"{n} pairs of {size}×{size} need about {format_bytes(disk)} on disk but {where} has "
            f"{format_bytes(free)} free; lower --n or --size, or choose another --output-dir"
        )
    return {"memory_bytes": memory, "disk_bytes": disk}


#: simulator options checked against the shared ranges (``limits.LIMITS``)
_SIMULATOR_LIMITS = {
    "size": "size",
    "photons": "photons",
    "planes": "planes",
    "na": "na",
    "wavelength_um": "wavelength_um",
    "pixel_size_um": "pixel_size_um",
    "dz_um": "dz_um",
    "offset_adu": "offset_adu",
    "gain_adu_per_e": "gain_adu_per_e",
}


def check_simulator_options(task: str, overrides: dict[str, Any], flag: str) -> None:
    """Refuse simulator options (``--set`` / ``--sim KEY=VALUE``) of the wrong kind before any
    work: a number where the recipe has a number (finite, whole where it is whole, inside the
    shared range for sizes, photons and optics), a number or a [low, high] pair where it has a
    range, true/false, text or a JSON object where it has those. Unknown keys are left to the
    simulator, which names the valid ones."""
    from .. import tasks
    from ..limits import check_value

    defaults = tasks.get(task).simulator_defaults()

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    for key, value in overrides.items():
        if key not in defaults:
            continue
        default, where = defaults[key], f"{flag} {key}"
        values = value if isinstance(value, list) else [value]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
            kind = "true or false"
        elif number(default):
            ok = number(value) and math.isfinite(value)
            ok = ok and (not isinstance(default, int) or float(value).is_integer())
            kind = "a whole number" if isinstance(default, int) else "a finite number"
        elif isinstance(default, tuple) and all(number(v) for v in default):
            ok = 1 <= len(values) <= 2 and all(number(v) and math.isfinite(v) for v in values)
            kind = "a finite number or a [low, high] pair of them"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "text"
        elif isinstance(default, dict):
            ok, kind = isinstance(value, dict), "a JSON object"
        else:
            continue  # None defaults: the simulator checks what it accepts
        if not ok:
            raise InputError(f"{where} must be {kind} (JSON), got {value!r}")
        if key in _SIMULATOR_LIMITS:
            for v in values:
                check_value(_SIMULATOR_LIMITS[key], v, where)


#: training on the CPU, peak resident memory over two steps (``ru_maxrss``) of presets tiny /
#: small / base: a fixed part (weights, EMA, AdamW moments, torch and the data simulation) and
#: bytes per pixel of a batch (activations kept for the backward pass). Measured: tiny 0.21 GiB
#: at 4×64², 0.87 at 16×128²; small 0.48 at 4×64², 1.16 at 8×128²; base 2.23 at 2×32², 2.38
#: at 8×64²; the estimate rounds both parts up.
TRAIN_FIXED_BYTES = {"tiny": 256 * _MIB, "small": 640 * _MIB, "base": 2560 * _MIB}
TRAIN_BYTES_PER_PIXEL = {"tiny": 4096, "small": 8192, "base": 16384}
#: room for the CSV log, the curves PNG and file-system slack
TRAIN_LOG_BYTES = 16 * _MIB


def train_memory_bytes(preset: str, batch: int, patch: int, data_bytes: int = 0) -> int:
    """Estimated peak memory of a training run (see :data:`TRAIN_FIXED_BYTES`)."""
    preset = preset if preset in TRAIN_FIXED_BYTES else "base"
    return (
        TRAIN_FIXED_BYTES[preset]
        + TRAIN_BYTES_PER_PIXEL[preset] * int(batch) * int(patch) ** 2
        + int(data_bytes)
    )


def train_disk_bytes(parameters: int, fp16: bool = False) -> int:
    """Disk a training run needs in its folder: a checkpoint (weights, EMA weights and the two
    AdamW moments, float32) written next to the previous one before it is replaced, and the
    model file, written next to an earlier one in the same way, plus the logs."""
    checkpoint = 4 * 4 * parameters
    model = (2 if fp16 else 4) * parameters
    return 2 * checkpoint + 2 * model + TRAIN_LOG_BYTES


def _architecture(config: Any) -> dict[str, Any] | None:
    """The architecture a run will train: the checkpoint's, the base model's, or None (new)."""
    if config.resume:
        from .checkpoint import read_checkpoint_header

        try:
            return dict(read_checkpoint_header(config.resume)["info"]["architecture"])
        except Exception:  # noqa: BLE001 - the trainer reports a bad checkpoint in its words
            return None
    if config.base_model:
        from ..engine import registry

        try:
            return dict(registry.header(config.base_model).architecture)
        except Exception:  # noqa: BLE001 - the trainer reports a bad base model in its words
            return None
    return None


def _parameters(config: Any, architecture: dict[str, Any] | None) -> int:
    """Parameters of the run's network, counted on the meta device (nothing allocated)."""
    import torch

    from .. import tasks
    from ..engine.cvdm import CVDM, CVDMConfig

    try:
        if architecture is not None:
            arch = CVDMConfig.from_dict(architecture)
        else:  # the task's default condition, plus any extra TIE priors
            task = tasks.get(config.task)
            cond = task.condition_channels_needed(task.rule())[0]
            target = task.fixed_channels[1]
            cond += len(getattr(config, "qpi_extra_alphas", None) or ())
            arch = CVDMConfig(
                condition_channels=cond,
                target_channels=target,
                preset=config.preset,
                residual=True,
            )
        with torch.device("meta"):
            return sum(p.numel() for p in CVDM(arch).parameters())
    except (TypeError, ValueError, RuntimeError, KeyError):
        return 0


def _data_bytes(config: Any) -> int:
    """Memory the training data will hold: a paired folder is read whole (as float32, up to 4×
    its files' size for 8-bit files); simulated frames larger than the default add to the
    fixed part."""
    from pathlib import Path

    data = config.data
    if isinstance(data, str | Path) and str(data) != "synthetic" and Path(data).is_dir():
        total = 0
        for sub in ("input", "target"):
            folder = Path(data) / sub
            if folder.is_dir():
                total += sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        return 4 * total
    size = (config.synthetic_overrides or {}).get("size")
    if isinstance(size, int | float) and size > 0:
        return int(SIMULATION_BYTES_PER_PIXEL * float(size) ** 2 * (config.prefetch + 2))
    return 0


def _device_memory(device: str) -> tuple[str, int | None]:
    """Where the network lives and how many bytes are free there (None: unknown)."""
    from ..limits import available_memory

    try:
        from ..engine.device import resolve_device

        resolved = resolve_device(device)
    except Exception:  # noqa: BLE001 - the trainer reports a bad device in its words
        return "memory", available_memory()
    if resolved.type == "cuda":
        import torch

        try:
            free, _total = torch.cuda.mem_get_info(resolved)
            return f"GPU memory ({resolved})", int(free)
        except RuntimeError:
            return f"GPU memory ({resolved})", None
    return "memory", available_memory()


def check_train_run(
    config: Any, overwrite: bool = False, available: int | None = None
) -> dict[str, int]:
    """Before step 1 of the training run ``config`` (a ``TrainConfig``), refuse what cannot
    work, in one line each, without computing anything:

    * an existing model, checkpoint or log (unless resuming or ``overwrite``), or one that is
      the base model, the checkpoint resumed or the data;
    * an output, checkpoint or log folder that cannot be written, or holds less free space than
      a checkpoint and the model need (:func:`train_disk_bytes`);
    * a run whose memory estimate (:func:`train_memory_bytes`) exceeds what is available
      (``available``: bytes, default: the device's free memory).

    Temp files of killed runs are swept from those folders. Returns the estimates
    (``disk_bytes``, ``memory_bytes``, ``parameters``).
    """
    from pathlib import Path

    from ..fsutil import check_writable_folder, refuse_existing, sweep_stale
    from ..outputset import sweep
    from .train import checkpoint_path_for
    from .train_log import log_paths

    output = Path(config.output)
    checkpoint = Path(config.checkpoint or checkpoint_path_for(output))
    csv_path, png_path = log_paths(output)
    protected = [Path(p) for p in (config.base_model, config.resume) if p and Path(p).is_file()]
    if config.resume:  # continuing a run: its own files may (and usually do) exist
        others = [p for p in protected if p != Path(config.resume)]
        refuse_existing([output, csv_path, png_path], others, overwrite=True)
    else:
        refuse_existing([output, checkpoint, csv_path, png_path], protected, overwrite)
    architecture = _architecture(config)
    parameters = _parameters(config, architecture)
    disk = train_disk_bytes(parameters, bool(getattr(config, "fp16", False)))
    for folder in dict.fromkeys((output.parent, checkpoint.parent, Path(csv_path).parent)):
        what = (
            "the output folder"
            if folder == output.parent
            else "the checkpoint folder"
            if folder == checkpoint.parent
            else "the log folder"
        )
        check_writable_folder(folder, what, need_bytes=disk)
        sweep_stale(folder)  # checkpoint/log temp files of runs killed with SIGKILL
        sweep(folder)  # staging folders of model/log sets of killed runs
    preset = str((architecture or {}).get("preset") or config.preset)
    memory = train_memory_bytes(preset, config.batch, config.patch, _data_bytes(config))
    where, free = _device_memory(str(config.device))
    if available is not None:
        free = available
    if free is not None:
        check_memory(
            memory,
            f"training the {preset} network on batches of {config.batch}×{config.patch}² pixels",
            f"lower --batch or --patch (the {where} available is what limits it)",
            free,
        )
    return {"disk_bytes": disk, "memory_bytes": memory, "parameters": parameters}
