"""`napari-cvdm train`: train or fine-tune a CVDM model (headless; torch imported in ``run``).

Writes the model file, a checkpoint (``MODEL.ckpt``, resumable with ``--resume``), a CSV log
(``MODEL.log.csv``) and a PNG of the loss and validation curves (``MODEL.curves.png``) next to
the output. Ctrl-C (or SIGTERM) stops after the current step, saves a checkpoint and the model,
and exits with code 130; a second Ctrl-C aborts at once (the trainer still saves what it can).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from typing import Any

from ._progress import ProgressBar  # the CLI's one bar, in its training layout
from ._progress import format_time as _format_time

__all__ = ["ProgressBar", "add_parser", "run"]


def _sci(value: float) -> str:
    """``1e-4`` style for a learning rate in the help."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand (its options in groups, defaults from
    :mod:`napari_cvdm.defaults`, shared with the Train widget)."""
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune a model (synthetic physics data or paired folders)",
        description=(
            "Train a CVDM model on the physics simulator (--data synthetic) or on a folder with "
            "input/ and target/ subfolders of matching file names (TIFF/OME-TIFF/MRC), or "
            "fine-tune an existing model (--base-model). Under `torchrun --nproc-per-node N` the "
            "same command trains with DistributedDataParallel. The defaults are the Train "
            "widget's; the measured time of the run is printed before step 1."
        ),
    )
    _add_run_options(parser)
    _add_optimiser_options(parser)
    _add_checkpoint_options(parser)
    _add_data_options(parser)
    _add_output_options(parser)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Settings files, the task, the data, the output and the base model."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="read the training settings from FILE (the Train widget's 'Save settings…' or "
        "--save-config); options given here win",
    )
    parser.add_argument(
        "--save-config",
        metavar="FILE",
        help="write the settings of this command line to FILE (for --config or the Train "
        "widget's 'Load settings…') and exit without training",
    )
    parser.add_argument(
        "--task",
        choices=("sr", "qpi"),
        help="sr: widefield → 2× SIM-like; qpi: two planes → phase (required, here or in --config)",
    )
    parser.add_argument(
        "--data",
        metavar="DIR|synthetic",
        help="'synthetic' or a folder with input/ and target/ (required, here or in --config)",
    )
    parser.add_argument(
        "--output", metavar="MODEL.safetensors", help="model file to write (required)"
    )
    parser.add_argument(
        "--base-model", metavar="NAME_OR_PATH", help="fine-tune from this model (name or file)"
    )
    parser.add_argument(
        "--freeze-schedule",
        action="store_true",
        help="when fine-tuning, keep the learned schedule fixed",
    )


def _add_optimiser_options(parser: argparse.ArgumentParser) -> None:
    """Steps, batch, patch, learning rate and its schedule, network size."""
    from ..defaults import FINETUNE_LR, LR, LR_MIN_FRACTION, LR_SCHEDULES, PRESETS
    from ..defaults import TRAIN_DEFAULTS as D

    parser.add_argument(
        "--steps",
        type=int,
        default=D["steps"],
        help=f"optimiser steps in total (default {D['steps']})",
    )
    parser.add_argument(
        "--batch", type=int, default=D["batch"], help=f"global batch size (default {D['batch']})"
    )
    parser.add_argument(
        "--patch",
        type=int,
        default=D["patch"],
        help=f"patch side on the target grid, multiple of 8 (default {D['patch']})",
    )
    parser.add_argument(
        "--lr",
        type=float,
        help=f"learning rate (default {_sci(LR)}; {_sci(FINETUNE_LR)} when fine-tuning)",
    )
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=D["lr_schedule"],
        help=f"after the warm-up: cosine decay to {LR_MIN_FRACTION:g}x the peak rate at --steps, "
        f"or the constant peak rate (default {D['lr_schedule']})",
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default=D["preset"],
        help=f"network size (default {D['preset']})",
    )


def _add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    """Resume, checkpoints, device, validation, seed, weight precision."""
    from ..defaults import TRAIN_DEFAULTS as D
    from ..defaults import VAL_COUNT, VAL_STEPS

    parser.add_argument(
        "--resume", metavar="CKPT", help="continue exactly from a checkpoint (MODEL.ckpt)"
    )
    parser.add_argument(
        "--checkpoint", metavar="CKPT", help="where to write checkpoints (default MODEL.ckpt)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)"
    )
    parser.add_argument(
        "--val-every",
        type=int,
        default=D["val_every"],
        help=f"validate every N steps (default {D['val_every']})",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=D["val_fraction"],
        help=f"share of a folder's pairs kept for validation (default {D['val_fraction']})",
    )
    parser.add_argument(
        "--val-count",
        type=int,
        default=VAL_COUNT,
        help=f"validation patches (default {VAL_COUNT})",
    )
    parser.add_argument(
        "--val-steps",
        type=int,
        default=VAL_STEPS,
        help=f"sampling steps in validation (default {VAL_STEPS})",
    )
    parser.add_argument(
        "--ckpt-every",
        type=int,
        default=D["ckpt_every"],
        help=f"checkpoint every N steps (default {D['ckpt_every']})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--fp16", action="store_true", help="store the model's weights in float16 (half the size)"
    )


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """The condition's prior channels, synthetic data and the data's physics."""
    parser.add_argument(
        "--sr-prior",
        choices=("auto", "none", "rl"),
        default="auto",
        help="SR: condition on the Richardson–Lucy estimate (nominal optics) and learn its "
        "correction (rl), or on the widefield alone (none); auto (default): as the base model "
        "or checkpoint, none from scratch",
    )
    parser.add_argument(
        "--qpi-priors",
        choices=("auto", "single", "multi"),
        default="auto",
        help="QPI: condition on one TIE prior (single) or on TIE priors at four Tikhonov "
        "weights, a decade apart (multi), learning the correction of the first; auto (default): "
        "as the base model or checkpoint, single from scratch",
    )
    parser.add_argument(
        "--patches-per-frame",
        type=int,
        default=1,
        help="synthetic data: random patches cut from each simulated frame (default 1)",
    )
    parser.add_argument(
        "--sim",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="synthetic data: a simulator option (JSON value), e.g. --sim absorption='\"random\"' "
        "or --sim photons=500; repeatable",
    )
    for flag, key, text in (
        ("--pixel-size", "pixel_size_um", "input pixel size in µm (default: from the files)"),
        ("--na", "na", "numerical aperture of the data (SR; default 1.49)"),
        ("--wavelength", "wavelength_um", "emission (SR) / illumination (QPI) wavelength, µm"),
        ("--dz", "dz_um", "QPI plane offset ±dz in µm (default 1.0)"),
    ):
        parser.add_argument(flag, type=float, dest=f"physics_{key}", metavar="X", help=text)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    """Threads, the model's name and description, progress, overwriting."""
    parser.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: torch's choice)"
    )
    parser.add_argument("--name", help="model name (default: the output file's stem)")
    parser.add_argument(
        "--description", default="", help="free-text description stored in the model"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing model, checkpoint and logs (without --resume they are refused)",
    )


#: parsed option -> napari_cvdm.limits name
OPTION_LIMITS = {
    "steps": "train_steps",
    "batch": "batch",
    "patch": "patch",
    "lr": "lr",
    "val_every": "val_every",
    "val_count": "val_count",
    "val_steps": "val_steps",
    "ckpt_every": "ckpt_every",
    "seed": "seed",
    "patches_per_frame": "patches_per_frame",
    "threads": "threads",
    "physics_pixel_size_um": "pixel_size_um",
    "physics_na": "na",
    "physics_wavelength_um": "wavelength_um",
    "physics_dz_um": "dz_um",
}


def check_outputs(config: Any, overwrite: bool) -> None:
    """Before step 1: refuse to replace an existing model/checkpoint/log (unless resuming or
    ``overwrite``), refuse to write over the base model, prove every output folder is writable
    with room for a checkpoint and the model, and that a training step fits in memory
    (:func:`napari_cvdm.workflows.preflight.check_train_run`)."""
    from ..workflows.preflight import check_train_run

    check_train_run(config, overwrite)


#: settings-file key -> (parsed option, the flags that set it on the command line)
_SETTING_OPTIONS = {
    "task": ("task", ("--task",)),
    "data": ("data", ("--data",)),
    "base_model": ("base_model", ("--base-model",)),
    "preset": ("preset", ("--preset",)),
    "freeze_schedule": ("freeze_schedule", ("--freeze-schedule",)),
    "steps": ("steps", ("--steps",)),
    "batch": ("batch", ("--batch",)),
    "patch": ("patch", ("--patch",)),
    "lr": ("lr", ("--lr",)),
    "lr_schedule": ("lr_schedule", ("--lr-schedule",)),
    "val_fraction": ("val_fraction", ("--val-fraction",)),
    "val_every": ("val_every", ("--val-every",)),
    "val_count": ("val_count", ("--val-count",)),
    "val_steps": ("val_steps", ("--val-steps",)),
    "ckpt_every": ("ckpt_every", ("--ckpt-every",)),
    "seed": ("seed", ("--seed",)),
    "device": ("device", ("--device",)),
    "name": ("name", ("--name",)),
    "description": ("description", ("--description",)),
    "fp16": ("fp16", ("--fp16",)),
    "sr_prior": ("sr_prior", ("--sr-prior",)),
    "qpi_priors": ("qpi_priors", ("--qpi-priors",)),
    "patches_per_frame": ("patches_per_frame", ("--patches-per-frame",)),
}
_PHYSICS_FLAGS = {
    "pixel_size_um": "--pixel-size",
    "na": "--na",
    "wavelength_um": "--wavelength",
    "dz_um": "--dz",
}


def _given(argv: list[str], flags: tuple[str, ...]) -> bool:
    """Whether one of ``flags`` is on the command line (``--flag v`` or ``--flag=v``)."""
    return any(a == f or a.startswith(f + "=") for a in argv for f in flags)


def apply_settings_file(args: argparse.Namespace) -> None:
    """``--config FILE``: its settings replace the defaults, never an option given here."""
    from ..errors import InputError
    from ..train_settings import read_settings

    if not args.config:
        return
    argv = _argv_of(args)
    for key, value in read_settings(args.config).items():
        if key == "physics":
            for name, number in value.items():
                if name not in _PHYSICS_FLAGS:
                    raise InputError(
                        f"{args.config}: unknown physics setting {name!r}; known: "
                        f"{', '.join(_PHYSICS_FLAGS)}"
                    )
                if not _given(argv, (_PHYSICS_FLAGS[name],)):
                    setattr(args, f"physics_{name}", number)
            continue
        if key == "sim":  # simulator options: the file's, then those given here
            import json

            given = _sim_options(args.sim)
            args.sim = [f"{k}={json.dumps(v)}" for k, v in {**value, **given}.items()]
            continue
        dest, flags = _SETTING_OPTIONS[key]
        if not _given(argv, flags):
            setattr(args, dest, value)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of a parsed command line, as written by ``--save-config``."""
    out = {key: getattr(args, dest) for key, (dest, _flags) in _SETTING_OPTIONS.items()}
    physics = {
        key: getattr(args, f"physics_{key}")
        for key in _PHYSICS_FLAGS
        if getattr(args, f"physics_{key}", None) is not None
    }
    if physics:
        out["physics"] = physics
    if args.sim:
        out["sim"] = _sim_options(args.sim)
    return out


def _print_estimate(config: Any) -> None:
    """Print the measured time of the run before step 1 — only for a run that will start, so
    that bad input still gives one line (the trainer reports it)."""
    from pathlib import Path

    from .. import tasks
    from ..errors import InputError
    from ..workflows.train_estimate import estimate_training

    try:
        config.validate()
    except InputError:
        return
    data = str(config.data)
    known = tasks.get(config.task).simulator_defaults()
    if (data != "synthetic" and not Path(data).is_dir()) or set(config.synthetic_overrides) - set(
        known
    ):
        return
    if config.resume and not Path(config.resume).is_file():
        return
    print(f"napari-cvdm train: {estimate_training(config).describe()}", file=sys.stderr)


def _check_required(args: argparse.Namespace) -> None:
    from ..errors import InputError

    missing = [f"--{k}" for k in ("task", "data", "output") if not getattr(args, k, None)]
    if missing:
        raise InputError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required (on the "
            "command line, or task and data in a --config file)"
        )


def _config_from_args(args: argparse.Namespace) -> Any:
    from ..workflows.train import TrainConfig

    return TrainConfig(
        task=args.task,
        output=args.output,
        data=args.data,
        steps=args.steps,
        batch=args.batch,
        patch=args.patch,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        preset=args.preset,
        base_model=args.base_model,
        freeze_schedule=args.freeze_schedule,
        resume=args.resume,
        checkpoint=args.checkpoint,
        device=args.device,
        val_every=args.val_every,
        val_fraction=args.val_fraction,
        val_count=args.val_count,
        val_steps=args.val_steps,
        ckpt_every=args.ckpt_every,
        seed=args.seed,
        fp16=args.fp16,
        name=args.name,
        description=args.description,
        physics={
            key.removeprefix("physics_"): value
            for key, value in vars(args).items()
            if key.startswith("physics_") and value is not None
        },
        patches_per_frame=args.patches_per_frame,
        sr_prior={"auto": None, "none": False, "rl": True}[args.sr_prior],
        qpi_extra_alphas=_qpi_extra_alphas(args.qpi_priors),
        synthetic_overrides=_sim_options(args.sim),
        command="napari-cvdm train " + " ".join(shlex.quote(a) for a in _argv_of(args)),
    )


def _qpi_extra_alphas(choice: str) -> tuple[float, ...] | None:
    """``--qpi-priors`` → the run's extra TIE prior weights (None: inherit)."""
    from ..normalization import QPI_TIE_EXTRA_ALPHAS

    return {"auto": None, "single": (), "multi": QPI_TIE_EXTRA_ALPHAS}[choice]


def _sim_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings → simulator overrides (VALUE parsed as JSON, else kept as text)."""
    import json

    from ..errors import InputError

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--sim expects KEY=VALUE, got {item!r} (e.g. --sim photons=500)")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def _argv_of(args: argparse.Namespace) -> list[str]:
    return list(getattr(args, "_argv", None) or sys.argv[2:])


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    """Ctrl-C / SIGTERM set ``stop`` (the trainer saves a checkpoint and the model after the
    current step); a second signal aborts at once. Returns the previous handlers to restore
    (none outside the main thread, where Python cannot set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(_signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(
            "\nstopping after this step, saving a checkpoint (Ctrl-C again to abort now)…",
            file=sys.stderr,
        )

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    return previous


def run(args: argparse.Namespace) -> int:
    """Train; returns 0 when finished, 130 when interrupted (checkpoint and model saved)."""
    import os
    from pathlib import Path

    from ..limits import check_args
    from ..workflows.train_log import TrainHistory, log_paths, write_png

    apply_settings_file(args)
    if args.save_config:
        from ..train_settings import write_settings

        check_args(args, OPTION_LIMITS)
        path = write_settings(args.save_config, settings_of(args), args.overwrite)
        print(f"wrote the training settings to {path}; train with --config {path}")
        return 0
    _check_required(args)
    check_args(args, OPTION_LIMITS)
    if args.threads:
        import torch

        torch.set_num_threads(int(args.threads))
    config = _config_from_args(args)
    if config.data == "synthetic":  # --sim values of the wrong kind, before any work
        from ..workflows.preflight import check_simulator_options

        check_simulator_options(config.task, config.synthetic_overrides, "--sim")
    if int(os.environ.get("RANK", "0")) == 0:
        check_outputs(config, getattr(args, "overwrite", False))
        _print_estimate(config)
    rank = int(os.environ.get("RANK", "0"))
    csv_path, png_path = log_paths(config.output)
    history = TrainHistory(config.task)
    first = 0
    if config.resume and Path(csv_path).is_file():
        from ..workflows.checkpoint import load_checkpoint

        first = load_checkpoint(config.resume).step
        history = TrainHistory.read_csv(csv_path, config.task, up_to_step=first)
    show = rank == 0 and not args.quiet
    bar = ProgressBar(stream=sys.stderr, total=config.steps, first=first)

    def flush_logs() -> None:
        if rank == 0:
            history.write_csv(csv_path)
            write_png(png_path, history)

    # the model, the log and the curves of the finished run are published together (a run
    # killed before or while writing them leaves the previous ones, never a mixed set)
    out_set = _output_set(config, csv_path, png_path) if rank == 0 else None
    try:
        finished = _consume(config, out_set, history, bar, flush_logs, show)
        if show:
            bar.close()
        if finished is not None and out_set is not None:
            history.write_csv(out_set.path(Path(csv_path).name))
            write_png(out_set.path(Path(png_path).name), history)
            out_set.commit()
        else:
            flush_logs()
    finally:
        if out_set is not None:
            out_set.__exit__(None, None, None)  # removes the staging folder unless committed
    if finished is None:
        return 1
    if rank == 0:
        info = finished.info
        state = "stopped" if finished.cancelled else "finished"
        print(
            f"{state} after {info.get('steps')} steps in "
            f"{_format_time(info.get('wall_time_s', 0))}: "
            f"model {finished.result}, checkpoint {info.get('checkpoint')}, log {csv_path}, "
            f"curves {png_path}",
            file=sys.stderr,
        )
        if finished.cancelled:
            print(f"resume with: --resume {info.get('checkpoint')}", file=sys.stderr)
    return 130 if finished.cancelled else 0


def _output_set(config: Any, csv_path: Any, png_path: Any) -> Any:
    """An entered :class:`~napari_cvdm.outputset.OutputSet` for the model file and its logs.

    Existing files were refused (or allowed: ``--overwrite``, ``--resume``) before step 1, and
    the logs are refreshed in place while the run goes on, so the set replaces them."""
    from pathlib import Path

    from ..errors import UserError
    from ..outputset import OutputSet, other_live_writers

    output = Path(config.output)
    protected = [p for p in (config.base_model, config.resume) if p and Path(p).is_file()]
    names = [output.name, Path(csv_path).name, Path(png_path).name]
    out_set = OutputSet(output.parent, names, overwrite=True, inputs=protected, label=output.stem)
    out_set.__enter__()
    others = other_live_writers(output.parent, output.stem)
    if others:  # two runs into one model would interleave their checkpoints
        out_set.__exit__(None, None, None)
        raise UserError(
            f"another training run (process {others[0]}) is writing {output} right now; wait for "
            "it to finish, or choose another --output"
        )
    return out_set


def _consume(config: Any, out_set: Any, history: Any, bar: Any, flush_logs: Any, show: bool) -> Any:
    """Run the trainer, feeding the history, the bar and the logs; the ``Finished`` event, or
    None when the run diverged."""
    from ..events import Finished, LossReport, Validation
    from ..workflows.train import train

    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    events = train(config, stop, output_set=out_set)
    finished: Finished | None = None
    try:
        for event in events:
            if isinstance(event, LossReport):
                history.add_loss(event.step, event.losses, event.lr)
                if show:
                    bar.train_step(
                        event.step, event.losses.get("total"), force=event.step == config.steps
                    )
                if event.step % config.ckpt_every == 0:
                    flush_logs()
            elif isinstance(event, Validation):
                history.add_validation(event.step, event.metrics)
                bar.validation = " ".join(f"val {k} {v:.4g}" for k, v in event.metrics.items())
                flush_logs()
            elif isinstance(event, Finished):
                finished = event
    except KeyboardInterrupt:
        # a second Ctrl-C while we were not inside the trainer: let it save and finish
        finished = events.throw(KeyboardInterrupt())
        events.close()
    except FloatingPointError as exc:  # diverged: one line, the logs so far, the checkpoint kept
        print(f"napari-cvdm train: error: {exc}", file=sys.stderr)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return finished
