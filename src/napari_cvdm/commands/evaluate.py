"""`napari-cvdm evaluate`: metrics of a prediction against its ground truth, printed as JSON.

SR: PSNR/SSIM/NRMSE in the DL-SR convention ([0, 1], data_range 1) and in CVDM units ([−1, 1],
data_range 2), resolution by decorrelation analysis and FRC. QPI: piston-removed phase MAE/RMSE
(rad), SSIM/PSNR with data_range 3.5 rad. With ``--std``: uncertainty calibration.
No torch, Qt or napari here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used, so `--help` stays light
    import numpy as np

from ..errors import InputError

__all__ = ["add_parser", "evaluate_files", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of a prediction against its ground truth (JSON)",
        description=(
            "Compare a prediction with its ground truth and print the metrics as JSON. "
            "sr: PSNR, SSIM, NRMSE (each image min-max to [0, 1], data_range 1) and CVDM units "
            "([-1, 1], data_range 2), resolution by decorrelation and FRC. qpi: phase in rad, "
            "MAE/RMSE after piston removal without a 16-px border, SSIM/PSNR with data_range "
            "3.5 rad. --std adds uncertainty calibration (Spearman, coverage, calibration error)."
        ),
    )
    parser.add_argument("prediction", type=Path, help="predicted image (TIFF, OME-TIFF or MRC)")
    parser.add_argument("target", type=Path, help="ground-truth image on the same grid")
    parser.add_argument("--std", type=Path, help="per-pixel std of the prediction (same grid)")
    parser.add_argument(
        "--samples", type=int, default=None, help="posterior samples behind --std (coverage)"
    )
    parser.add_argument("--task", choices=("sr", "qpi"), default="sr", help="metric set (sr)")
    parser.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        metavar="UM",
        help="pixel size of the prediction in µm (default: from the file; else resolutions in px)",
    )
    parser.add_argument(
        "--border", type=int, default=16, metavar="PX", help="qpi: border excluded (16 px)"
    )
    return parser


def _load_2d(path: Path, what: str) -> tuple[np.ndarray, Any]:
    import numpy as np

    from ..io import read_image

    array, meta = read_image(path)
    array = np.asarray(array)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or np.iscomplexobj(array):
        raise InputError(
            f"{what} {path} must be a single real 2-D image (Y, X); got shape {array.shape}. "
            "Evaluate one plane or time point at a time."
        )
    return array.astype(np.float64), meta


def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/Inf to None."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _resolution(pred: np.ndarray, target: np.ndarray, pixel: float | None) -> dict[str, Any]:
    from ..resolution import decorrelation_resolution, fourier_ring_correlation

    step = pixel if pixel is not None else 1.0
    frc = fourier_ring_correlation(pred, target, step)
    return {
        "unit": "um" if pixel is not None else "px",
        "decorrelation_prediction": decorrelation_resolution(pred, step).resolution_um,
        "decorrelation_target": decorrelation_resolution(target, step).resolution_um,
        "frc_1_7": frc.resolution_um,
        "frc_half_bit": frc.resolution_half_bit_um,
    }


def evaluate_files(
    prediction: Path,
    target: Path,
    task: str = "sr",
    std: Path | None = None,
    samples: int | None = None,
    pixel_size_um: float | None = None,
    border: int = 16,
) -> dict[str, Any]:
    """The metrics report :func:`run` prints (JSON-safe dict)."""

    from .. import metrics

    pred, meta = _load_2d(prediction, "prediction")
    truth, _ = _load_2d(target, "target")
    if pred.shape != truth.shape:
        raise InputError(
            f"prediction {pred.shape} and target {truth.shape} are on different grids; "
            "evaluate images of the same shape."
        )
    from .. import tasks
    from ..limits import check_value

    spec = tasks.get(task)
    check_value("border", border, "--border")
    if spec.metric_border and 2 * border >= min(pred.shape):
        raise InputError(
            f"--border {border} leaves no pixel of the {pred.shape[0]}×{pred.shape[1]} image; "
            f"give a border below {min(pred.shape) // 2}"
        )
    if pixel_size_um is not None:
        check_value("pixel_size_um", pixel_size_um, "--pixel-size")
    if pixel_size_um is None and meta.pixel_size_um is not None:
        pixel_size_um = float(meta.pixel_size_um[-1])
    if pixel_size_um is not None and not pixel_size_um > 0:
        raise InputError(f"--pixel-size must be positive; got {pixel_size_um}.")
    report: dict[str, Any] = {
        "task": task,
        "prediction": str(prediction),
        "target": str(target),
        "shape": list(pred.shape),
        "pixel_size_um": pixel_size_um,
    }
    report["metrics"], report["conventions"] = spec.evaluate(pred, truth, border)
    report["resolution"] = _resolution(pred, truth, pixel_size_um)

    if std is not None:
        spread, _ = _load_2d(std, "std")
        if spread.shape != pred.shape:
            raise InputError(f"std {spread.shape} and prediction {pred.shape} differ in shape.")
        if samples is not None and samples < 2:
            raise InputError(f"--samples must be at least 2; got {samples}.")
        mean_n, std_n, truth_n, units = spec.calibration_inputs(pred, spread, truth)
        calibration = metrics.calibration_metrics(mean_n, std_n, truth_n, n_samples=samples)
        calibration["units"] = units
        report["calibration"] = calibration
    return _clean(report)


def run(args: argparse.Namespace) -> int:
    report = evaluate_files(
        args.prediction,
        args.target,
        task=args.task,
        std=args.std,
        samples=args.samples,
        pixel_size_um=args.pixel_size,
        border=args.border,
    )
    print(json.dumps(report, indent=2, allow_nan=False))
    sys.stdout.flush()
    return 0
