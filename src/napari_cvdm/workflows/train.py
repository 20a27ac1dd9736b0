"""Training and fine-tuning: ``train(config)`` is a generator of typed events.

Events, in order: ``LossReport`` and ``Progress`` after every optimiser step, ``Validation`` every
``val_every`` steps (and at the last step), then one ``Finished(path of the model file)``. The CLI
progress bar, the Train widget's thread worker and the tests consume the same stream.

The loop (della Maggiora et al., arXiv 2312.02246): AdamW (lr 1e-4, 3e-5 when fine-tuning,
no weight decay, linear warm-up; ``napari_cvdm.defaults``),
the model's own loss (stratified t), gradient-norm clip 1.0, an EMA of the weights (0.999, with
the usual ``(1 + k)/(10 + k)`` warm-up) that is used for validation and for the saved model, bf16
autocast on CUDA. Every step re-seeds numpy (data) and torch (t, ε) from (seed, step, rank), so a
run resumed from a checkpoint continues bit-for-bit. Checkpoints (``workflows/checkpoint.py``,
safetensors + JSON, no pickle) are written atomically every ``ckpt_every`` steps, when the
``stop`` flag is set (checked every step), on Ctrl-C and when the consumer closes the generator.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel (gloo
on CPU, nccl on CUDA), ``batch`` is the global batch split across ranks, and only rank 0 writes
files and validates.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import tasks
from ..defaults import (
    FINETUNE_LR,
    LR,
    LR_MIN_FRACTION,
    LR_SCHEDULE_BEFORE,
    LR_SCHEDULES,
    PRESETS,
    TRAIN_DEFAULTS,
    VAL_COUNT,
    VAL_STEPS,
    WARMUP_STEPS,
)
from ..errors import InputError
from ..events import Finished, LossReport, Progress, Validation
from ..tasks.qpi import DEFAULT_QPI_EXTRA_ALPHAS as QPI_DEFAULT_EXTRA_ALPHAS
from ..tasks.sr import DEFAULT_SR_PRIOR as SR_DEFAULT_PRIOR
from .train_support import (
    Prefetcher,
    build_metadata,
    distributed_context,
    run_validation,
    seed_step,
    weights_digest,
)

__all__ = [
    "DEFAULT_FINETUNE_LR",
    "DEFAULT_LR",
    "DEFAULT_QPI_EXTRA_ALPHAS",
    "DEFAULT_SR_PRIOR",
    "TrainConfig",
    "checkpoint_path_for",
    "train",
]

DEFAULT_LR = LR
DEFAULT_FINETUNE_LR = FINETUNE_LR
#: the condition defaults of runs from scratch live with their task (tasks/sr.py, tasks/qpi.py)
DEFAULT_SR_PRIOR = SR_DEFAULT_PRIOR
DEFAULT_QPI_EXTRA_ALPHAS = QPI_DEFAULT_EXTRA_ALPHAS
#: consecutive steps with a non-finite gradient that are skipped before the run counts as diverged
MAX_SKIPPED_STEPS = 5


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Learning rate of optimiser step ``step`` (1-based): linear warm-up, then the schedule.

    The warm-up lasts ``warmup_steps``, but at most a tenth of the run (short fine-tuning runs).
    """
    peak = config.learning_rate()
    warmup = max(1, min(config.warmup_steps, config.steps // 10))
    if step <= warmup or config.lr_schedule == "constant":
        return peak * min(1.0, step / warmup)
    progress = min(1.0, (step - warmup) / max(1, config.steps - warmup))
    floor = config.lr_min_fraction
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass
class TrainConfig:
    """Settings of one training run (all plain values except ``data``).

    ``data``: ``"synthetic"`` (the task's physics recipe, on the fly), a folder with ``input/``
    and ``target/``, or a ready :class:`~napari_cvdm.workflows.training_data.TrainingData`.
    ``batch`` is the global batch; ``patch`` the side of square patches on the target grid.
    ``lr`` None means 1e-4, or 3e-5 when fine-tuning from ``base_model`` (a name or path).
    ``checkpoint`` defaults to the output path with the suffix ``.ckpt``. ``sr_prior``: SR
    conditions start with the Richardson–Lucy prior channel and the model learns its residual
    (a base model without it gains the channel with zero weights); None: as the base model or
    checkpoint has it, else :data:`DEFAULT_SR_PRIOR`. ``qpi_extra_alphas``: QPI conditions
    carry one more TIE prior channel per Tikhonov weight (a base model with fewer gains them
    with zero weights); None: as the base model or checkpoint has them, else
    :data:`DEFAULT_QPI_EXTRA_ALPHAS`.
    """

    task: str
    output: str | os.PathLike
    data: Any = "synthetic"
    steps: int = TRAIN_DEFAULTS["steps"]
    batch: int = TRAIN_DEFAULTS["batch"]
    patch: int = TRAIN_DEFAULTS["patch"]
    lr: float | None = None
    preset: str = TRAIN_DEFAULTS["preset"]
    base_model: str | None = None
    freeze_schedule: bool = False
    resume: str | os.PathLike | None = None
    checkpoint: str | os.PathLike | None = None
    device: str = "auto"
    val_every: int = TRAIN_DEFAULTS["val_every"]
    val_count: int = VAL_COUNT
    val_steps: int = VAL_STEPS
    ckpt_every: int = TRAIN_DEFAULTS["ckpt_every"]
    seed: int = 0
    fp16: bool = False
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    warmup_steps: int = WARMUP_STEPS
    lr_schedule: str = TRAIN_DEFAULTS["lr_schedule"]
    lr_min_fraction: float = LR_MIN_FRACTION
    val_fraction: float = TRAIN_DEFAULTS["val_fraction"]
    name: str | None = None
    description: str = ""
    command: str = ""
    physics: dict[str, float] = field(default_factory=dict)
    synthetic_overrides: dict[str, Any] = field(default_factory=dict)
    patches_per_frame: int = 1
    prefetch: int = 2
    sr_prior: bool | None = None
    qpi_extra_alphas: tuple[float, ...] | None = None

    def learning_rate(self) -> float:
        """The peak learning rate: ``lr`` or the default for training / fine-tuning."""
        if self.lr is not None:
            return float(self.lr)
        return DEFAULT_FINETUNE_LR if self.base_model else DEFAULT_LR

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready settings (``data`` as its description)."""
        out = (
            asdict(self)
            if isinstance(self.data, str | os.PathLike)
            else {k: v for k, v in asdict(self).items() if k != "data"}
        )
        for key, value in list(out.items()):
            if isinstance(value, os.PathLike):
                out[key] = str(value)
        if not isinstance(self.data, str | os.PathLike):
            out["data"] = type(self.data).__name__
        return out

    def validate(self) -> None:
        """Raise :class:`InputError` for settings that cannot work."""
        if self.task not in tasks.names(trainable=True):
            raise InputError(f"task must be 'sr' or 'qpi', got {self.task!r}")
        for key in (
            "steps",
            "batch",
            "patch",
            "val_every",
            "ckpt_every",
            "val_count",
            "val_steps",
            "patches_per_frame",
        ):
            if int(getattr(self, key)) < 1:
                raise InputError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.patch % 8:
            raise InputError(f"patch size must be a multiple of 8, got {self.patch}")
        if self.learning_rate() <= 0:
            raise InputError(f"learning rate must be positive, got {self.learning_rate()}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if not 0.0 <= self.lr_min_fraction <= 1.0:
            raise InputError(f"lr_min_fraction must be in [0, 1], got {self.lr_min_fraction}")
        if self.preset not in PRESETS:
            choices = f"{', '.join(PRESETS[:-1])} or {PRESETS[-1]}"
            raise InputError(f"preset must be {choices}, got {self.preset!r}")
        tasks.get(self.task).check_train_options(self)
        if any(not float(a) > 0 for a in self.qpi_extra_alphas or ()):
            raise InputError(f"TIE prior weights must be positive, got {self.qpi_extra_alphas}")
        if Path(self.output).suffix != ".safetensors":
            raise InputError(f"the output model file must end in .safetensors, got {self.output}")


def check_resume_settings(config: TrainConfig, saved: dict[str, Any], where: Any) -> None:
    """Refuse to resume with optimisation settings other than the checkpoint's.

    The learning rate (as used: an explicit ``lr`` or the training/fine-tuning default), its
    schedule and the schedule freezing must match, or the resumed run would silently follow
    another path than the one it continues. ``steps``, ``batch`` and the data may change (to
    train longer, or on more data); with the cosine schedule a new ``steps`` re-stretches the
    decay from the resumed step on.
    """
    if not saved:
        return
    saved_lr = saved.get("lr")
    if saved_lr is None:
        saved_lr = DEFAULT_FINETUNE_LR if saved.get("base_model") else DEFAULT_LR
    pairs = [
        ("learning rate", float(saved_lr), config.learning_rate(), "--lr"),
        ("lr schedule", saved.get("lr_schedule", LR_SCHEDULE_BEFORE), config.lr_schedule,
         "--lr-schedule"),
        ("freeze schedule", bool(saved.get("freeze_schedule")), config.freeze_schedule,
         "--freeze-schedule"),
    ]  # fmt: skip
    changed = [(name, old, new, flag) for name, old, new, flag in pairs if old != new]
    if changed:
        listed = "; ".join(f"{name} {old} (now {new})" for name, old, new, _ in changed)
        flags = ", ".join(flag for *_, flag in changed)
        raise InputError(
            f"checkpoint {where} was trained with other settings: {listed}; resume with the "
            f"checkpoint's values ({flags}), or start a new run without --resume"
        )


def _check_condition_channels(
    task: str, channels: Any, what: str, fix: str, want: int | None = None
) -> None:
    """Refuse a model or checkpoint whose condition channels differ from the task's data."""
    want = tasks.get(task).fixed_channels[0] if want is None else want
    if channels != want:
        raise InputError(
            f"{what} takes {channels} condition channels, but {task} training data now has "
            f"{want} (an older model format); {fix}"
        )


def checkpoint_path_for(output: str | os.PathLike) -> Path:
    """Default checkpoint next to the model file: ``MODEL.safetensors`` → ``MODEL.ckpt``."""
    return Path(output).with_suffix(".ckpt")


class _LossModule(torch.nn.Module):
    """``forward`` = the CVDM loss, so DistributedDataParallel can hook the backward pass."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, condition: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.loss(condition, target)


def _schedule_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters of the learned schedule, the λ network and the ρ MLP (what
    ``--freeze-schedule`` keeps fixed)."""
    return [*model.lambda_net.parameters(), *model.rho_net.parameters()]


def _build_model(config: TrainConfig, resume: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A fresh, fine-tuning or resumed CVDM (float32, CPU) and what is known about its origin."""
    from ..engine.cvdm import CVDM, CVDMConfig

    if resume is not None:
        model = CVDM(CVDMConfig.from_dict(resume.info["architecture"]))
        model.load_state_dict(resume.model_state, strict=True)
        return model, dict(resume.info.get("origin", {}))
    if config.base_model:
        return _base_model(config)
    cond = _condition_channels(config)
    target = tasks.get(config.task).fixed_channels[1]
    torch.manual_seed(config.seed)
    # both tasks are residual: SR on the up-sampled widefield, QPI on the TIE prior channel
    arch = CVDMConfig(
        condition_channels=cond, target_channels=target, preset=config.preset, residual=True
    )
    return CVDM(arch), {}


def _base_model(config: TrainConfig) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The base model to fine-tune (its task checked, widened to the run's condition) and its
    origin: name, digest, physics, rule and training totals."""
    from ..engine import registry

    loaded = registry.load(config.base_model)
    if loaded.task != config.task:
        raise InputError(
            f"base model {config.base_model!r} is a {loaded.task!r} model but the task is "
            f"{config.task!r}; choose a {config.task} model to fine-tune"
        )
    model = loaded.model.float().train()
    model = _widen_condition(model, config)
    _check_condition_channels(
        config.task,
        model.config.condition_channels,
        f"base model {config.base_model!r}",
        f"fine-tune a current {config.task} model or train from scratch",
        _condition_channels(config),
    )
    header = loaded.header
    origin = {
        "base_model": loaded.name,
        "base_model_sha256": loaded.sha256,
        "base_physics": header.physics,
        "base_normalization": header.normalization,
        "base_training": header.history,
    }
    return model, origin


def _widen_condition(model: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
    """A base model that lacks the run's prior channels gains them with zero input weights (it
    computes what it did), where the task puts them (``widen_positions``): SR's RL prior as
    channel 0, QPI's extra TIE priors after channel 0."""
    from ..engine.cvdm import insert_condition_channel

    missing = _condition_channels(config) - model.config.condition_channels
    positions = tasks.get(config.task).widen_positions(config, missing)
    for index in positions:
        model = insert_condition_channel(model, index)
    return model.train() if positions else model


def _condition_channels(config: TrainConfig) -> int:
    """C_x of the run's data, as the rule the run writes says (SR 1, or 2 with the RL prior;
    QPI 3 ([TIE prior, c−, c+]) plus one per extra TIE prior)."""
    task = tasks.get(config.task)
    return task.condition_channels_needed(task.train_rule(config))[0]


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def _stop_requested(stop: Any) -> bool:
    if stop is None:
        return False
    if callable(stop) and not hasattr(stop, "is_set"):
        return bool(stop())
    return bool(stop.is_set())


# --- the run, step by step ------------------------------------------------------------------


def _base_rule(config: TrainConfig) -> dict[str, Any]:
    """The normalisation rule of the base model (its header only)."""
    from ..engine import registry

    return dict(registry.header(config.base_model).normalization)


def _resume_and_options(config: TrainConfig) -> Any:
    """Load the checkpoint to resume (None without one) and settle the run's condition options
    (``sr_prior``, ``qpi_extra_alphas``): as given, else as the checkpoint or base model has
    them, else the defaults; a resumed run must keep the checkpoint's settings."""
    from .checkpoint import load_checkpoint

    resume = load_checkpoint(config.resume) if config.resume else None
    if resume is not None and resume.info.get("task") != config.task:
        raise InputError(
            f"checkpoint {config.resume} is for task {resume.info.get('task')!r}, not "
            f"{config.task!r}; resume it with --task {resume.info.get('task')}"
        )
    tasks.get(config.task).settle_train_options(config, resume, lambda: _base_rule(config))
    if resume is not None:
        check_resume_settings(config, resume.info.get("config", {}), config.resume)
        _check_condition_channels(
            config.task,
            resume.info.get("architecture", {}).get("condition_channels"),
            f"checkpoint {config.resume}",
            "start a new run without --resume (or match its --sr-prior)",
            _condition_channels(config),
        )
    return resume


def _data_source(config: TrainConfig, data: Any) -> Any:
    """The run's training data (``data``, else made from ``config.data``), preparing its
    conditions with the prior channels the model takes."""
    from .training_data import make_training_data

    source = (
        data
        if data is not None
        else make_training_data(
            config.task,
            config.data,
            seed=config.seed,
            val_fraction=config.val_fraction,
            overrides=config.synthetic_overrides,
            patches_per_frame=config.patches_per_frame,
            physics=config.physics,
            sr_prior=config.sr_prior,
        )
    )
    tasks.get(config.task).adopt_data(source, config)  # the data follow the model
    return source


class _Run:
    """One training run's state: the model and its EMA, the optimiser, the data, where it
    writes, and the counters that checkpoints and the model file record.

    Built in the order the random number generators see it (model initialisation, EMA copy,
    optimiser and RNG state of a checkpoint, validation batch, prefetcher), so a run resumed
    from a checkpoint continues bit-for-bit.
    """

    def __init__(self, config: TrainConfig, source: Any, resume: Any, dist: Any) -> None:
        from .checkpoint import restore_rng_state

        self.config, self.source, self.dist = config, source, dist
        self.device, self.rank, self.world = dist.device, dist.rank, dist.world
        model, self.origin = _build_model(config, resume)
        bound = tasks.get(config.task).denoised_bound  # SR: input-scaled targets reach a few
        if bound is not None:  # units at bright, sharp peaks
            model.config.extra["denoised_bound"] = bound
        if config.freeze_schedule:
            for p in _schedule_parameters(model):
                p.requires_grad_(False)
        self.model = model.to(self.device).train()
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        if resume is not None:
            self.ema.load_state_dict(resume.ema_state, strict=True)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.trainable, lr=config.learning_rate(), weight_decay=0.0
        )
        self.start_step, self.wall_before = 0, 0.0
        if resume is not None:
            self.optimizer.load_state_dict(resume.optimizer_state)
            restore_rng_state(resume.rng_state)
            self.start_step = resume.step
            self.wall_before = float(resume.info.get("wall_time_s", 0.0))
        self.loss_module = self._loss_module()
        self.checkpoint = Path(config.checkpoint or checkpoint_path_for(config.output))
        self.output = Path(config.output)
        self.started = time.perf_counter()
        self.cancelled = False
        self.step = self.start_step
        self.saved_step = self.start_step if resume is not None else -1
        self.bad_steps = 0
        self.last_metrics: dict[str, float] = (
            dict(resume.info.get("last_validation", {})) if resume else {}
        )
        self.validation = (
            source.validation_batch(config.patch, config.val_count) if self.rank == 0 else None
        )
        self.prefetch = Prefetcher(source, config, self.rank, self.world, self.start_step + 1)
        self.residual = bool(getattr(model.config, "residual", False))
        # bf16 autocast on Ampere and newer (capability 8+); older GPUs only emulate bf16: fp32
        cuda = self.device.type == "cuda"
        self.autocast = cuda and torch.cuda.get_device_capability(self.device)[0] >= 8

    def _loss_module(self) -> torch.nn.Module:
        """The loss as a module, wrapped in DistributedDataParallel under torchrun."""
        module: torch.nn.Module = _LossModule(self.model)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids)
        return module

    def wall(self) -> float:
        """Training seconds over every run of this checkpoint."""
        return self.wall_before + time.perf_counter() - self.started

    def info(self) -> dict[str, Any]:
        """What a checkpoint records besides the weights and optimiser state."""
        return {
            "task": self.config.task,
            "architecture": self.model.config.to_dict(),
            "origin": self.origin,
            "config": self.config.to_json(),
            "data": self.source.description,
            "physics": self.source.physics,
            "wall_time_s": self.wall(),
            "last_validation": self.last_metrics,
        }

    def save_checkpoint(self) -> None:
        """Write the checkpoint (rank 0, once per step)."""
        from .checkpoint import capture_rng_state, save_checkpoint

        if self.rank == 0 and self.saved_step != self.step:
            save_checkpoint(
                self.checkpoint,
                step=self.step,
                model_state=self.model.state_dict(),
                ema_state=self.ema.state_dict(),
                optimizer_state=self.optimizer.state_dict(),
                rng_state=capture_rng_state(),
                info=self.info(),
            )
            self.saved_step = self.step

    def save_model_file(self, cancelled: bool, output_set: Any) -> Path:
        """Write the EMA weights as the model file (rank 0), into ``output_set`` if given."""
        from ..engine.modelfile import save_model

        if self.rank == 0:
            meta = build_metadata(
                self.config,
                self.source,
                self.origin,
                self.step,
                self.wall(),
                self.last_metrics,
                cancelled,
            )
            target = self.output if output_set is None else output_set.path(self.output.name)
            save_model(target, self.ema, meta, dtype="float16" if self.config.fp16 else "float32")
        return self.output

    def optimiser_step(self, step: int) -> tuple[dict[str, float], float]:
        """One optimiser step: seeded batch, loss, clipped gradient, AdamW and EMA update (a
        non-finite gradient skips the update). Returns the losses and the learning rate."""
        config = self.config
        batch = self.prefetch.get(step)
        seed_step(config.seed, step, self.rank)
        lr = learning_rate_at(step, config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = torch.from_numpy(batch.condition).to(self.device)
        y = torch.from_numpy(batch.target).to(self.device)
        y0 = y - x[:, : y.shape[1]] if self.residual else y
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            losses = self.loss_module(x, y0)
        losses["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, config.grad_clip)
        report = {k: float(v.detach()) for k, v in losses.items()}
        report["grad_norm"] = float(grad_norm)
        if not all(math.isfinite(v) for v in report.values()):
            # a rare non-finite gradient skips this update (weights and EMA unchanged);
            # only a run of them, or a non-finite loss, means the run has diverged
            self.bad_steps += 1
            if self.bad_steps > MAX_SKIPPED_STEPS or not math.isfinite(report["total"]):
                raise FloatingPointError(
                    f"training diverged at step {step} (losses {report}); lower the "
                    "learning rate or resume from the last checkpoint"
                )
        else:
            self.bad_steps = 0
            self.optimizer.step()
            _ema_update(self.ema, self.model, min(config.ema_decay, (1.0 + step) / (10.0 + step)))
        self.optimizer.zero_grad(set_to_none=True)
        self.step = step
        return report, lr

    def steps(self, stop: Any) -> Iterator[LossReport | Progress | Validation]:
        """The optimiser steps from the start (or resumed) step to ``config.steps``, with
        validation and checkpoints; sets :attr:`cancelled` when stopped."""
        config = self.config
        self.cancelled = False
        for step in range(self.start_step + 1, config.steps + 1):
            if self.dist.any_rank(_stop_requested(stop)):
                self.cancelled = True
                return
            report, lr = self.optimiser_step(step)
            yield LossReport(step=step, total=config.steps, losses=report, lr=lr)
            yield Progress(step=step, total=config.steps, stage="train")
            if self.rank == 0 and (step % config.val_every == 0 or step == config.steps):
                metrics, preview = run_validation(self.ema, self.validation, config, self.device)
                self.last_metrics = metrics
                yield Validation(step=step, metrics=metrics, preview=preview)
            if step % config.ckpt_every == 0:
                self.save_checkpoint()

    def summary(self) -> dict[str, Any]:
        """The ``Finished`` event's info."""
        return {
            "checkpoint": str(self.checkpoint),
            "steps": self.step,
            "wall_time_s": self.wall(),
            "validation": self.last_metrics,
            "rank": self.rank,
            "world_size": self.world,
            "weights_sha256": weights_digest(self.ema),
        }

    def release_device(self) -> None:
        """Free device memory before handing back control (CUDA)."""
        if self.device.type == "cuda":
            self.model.to("cpu")
            self.ema.to("cpu")
            self.optimizer.state.clear()
            torch.cuda.empty_cache()


def train(
    config: TrainConfig, stop: Any = None, *, data: Any = None, output_set: Any = None
) -> Iterator[LossReport | Progress | Validation | Finished]:
    """Train (or fine-tune, or resume) a CVDM; yields events, ends with ``Finished(model path)``.

    ``stop``: a ``threading.Event`` (or a callable returning bool) checked every step; when set
    the run saves a checkpoint and the model, then finishes with ``cancelled=True``.
    ``data`` overrides ``config.data`` with a ready data source. ``output_set``: an entered
    :class:`~napari_cvdm.outputset.OutputSet` holding the model file's name; the model is then
    written into its staging folder and published when the caller commits the set (with the
    logs), so a killed run never leaves a model without its logs.

    The steps: check the settings, set up the (distributed) device, load the checkpoint and
    settle the condition options (:func:`_resume_and_options`), make the data
    (:func:`_data_source`), build the run (:class:`_Run`), run its optimiser steps
    (:meth:`_Run.steps`), then write the checkpoint and the model file.
    """
    from ..engine.device import resolve_device

    config.validate()
    dist = distributed_context(config.device, resolve_device)
    if config.batch % dist.world:
        raise InputError(f"batch {config.batch} must be divisible by the {dist.world} processes")
    resume = _resume_and_options(config)
    run = _Run(config, _data_source(config, data), resume, dist)
    try:
        yield from run.steps(stop)
    except KeyboardInterrupt:
        run.cancelled = True
    except GeneratorExit:
        run.prefetch.close()
        run.save_checkpoint()
        dist.close()
        raise
    finally:
        run.prefetch.close()
    run.save_checkpoint()
    path = run.save_model_file(run.cancelled, output_set)
    dist.close()
    summary = run.summary()
    run.release_device()
    yield Finished(result=path, cancelled=run.cancelled, info=summary)
