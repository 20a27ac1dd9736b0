"""Headline numbers and markdown tables of ``benchmarks/quality.py`` (pure functions of the report).

``summarise(report)`` compares the CVDM rows with the baselines at the middle levels against the
issue's targets; ``markdown(report)`` renders the headline, SR, QPI and uncertainty tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _testsets import (
    QPI_METHODS,
    QPI_MIDDLE,
    QPI_NOISE,
    SR_METHODS,
    SR_MIDDLE,
    SR_PHOTONS,
    STRUCTURE_NAMES,
    mean_of,
)

__all__ = ["TARGETS", "markdown", "summarise"]

#: CVDM − RL PSNR (dB) at N_fg 500; CVDM / best TIE MAE at N0 3000; mean Spearman ρ(std, |e|)
TARGETS = {"sr_delta_db": 2.0, "qpi_ratio": 0.5, "spearman": 0.4}


def _select(rows: list[dict], **where: Any) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers against the issue's targets (None where not measured)."""
    out: dict[str, Any] = {"targets": dict(TARGETS)}
    cvdm_rows: list[dict] = []
    if "sr" in report:
        rows = report["sr"]["rows"]
        cvdm = mean_of(_select(rows, method="cvdm", photons=SR_MIDDLE), "psnr")
        rl = mean_of(_select(rows, method="rl", photons=SR_MIDDLE), "psnr")
        out["sr"] = {
            "photons": SR_MIDDLE,
            "cvdm_psnr": _finite(cvdm),
            "rl_psnr": _finite(rl),
            "cvdm_ssim": _finite(mean_of(_select(rows, method="cvdm", photons=SR_MIDDLE), "ssim")),
            "rl_ssim": _finite(mean_of(_select(rows, method="rl", photons=SR_MIDDLE), "ssim")),
            "delta_db": _finite(cvdm - rl),
            "met": bool(cvdm - rl >= TARGETS["sr_delta_db"]),
        }
        cvdm_rows += _select(rows, method="cvdm")
    if "qpi" in report:
        rows = report["qpi"]["rows"]
        maes = {
            m: mean_of(_select(rows, method=m, noise=QPI_MIDDLE), "mae_rad") for m in QPI_METHODS
        }
        best = min(maes, key=lambda m: maes[m] if np.isfinite(maes[m]) else np.inf)
        cvdm = mean_of(_select(rows, method="cvdm", noise=QPI_MIDDLE), "mae_rad")
        out["qpi"] = {
            "noise": QPI_MIDDLE,
            "cvdm_mae_rad": _finite(cvdm),
            "best_baseline": best,
            "best_baseline_mae_rad": _finite(maes[best]),
            "ratio": _finite(cvdm / maes[best]),
            "met": bool(cvdm / maes[best] <= TARGETS["qpi_ratio"]),
        }
        cvdm_rows += _select(rows, method="cvdm")
    rho = mean_of(cvdm_rows, "spearman_rho")
    out["uncertainty"] = {
        "spearman_mean": _finite(rho),
        "images": len(cvdm_rows),
        "coverage_1sigma": _finite(mean_of(cvdm_rows, "coverage_1sigma")),
        "coverage_2sigma": _finite(mean_of(cvdm_rows, "coverage_2sigma")),
        "met": bool(rho >= TARGETS["spearman"]),
    }
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, spec)


def sr_markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    levels = [p for p in SR_PHOTONS if _select(rows, photons=p)]
    methods = (*SR_METHODS, "cvdm")
    lines = ["| N_fg (e⁻/px) | method | PSNR (dB) | SSIM | s / image |", "|---|---|---|---|---|"]
    for p in levels:
        for m in methods:
            sel = _select(rows, photons=p, method=m)
            lines.append(
                f"| {p:g} | {m} | {_fmt(mean_of(sel, 'psnr'), '.2f')} | "
                f"{_fmt(mean_of(sel, 'ssim'), '.3f')} | {_fmt(mean_of(sel, 'seconds'), '.3g')} |"
            )
    lines += ["", "| structure | N_fg | " + " | ".join(f"{m} PSNR / SSIM" for m in methods) + " |"]
    lines.append("|---|---|" + "---|" * len(methods))
    for s in STRUCTURE_NAMES:
        for p in levels:
            cells = []
            for m in methods:
                sel = _select(rows, structure=s, photons=p, method=m)
                cells.append(
                    f"{_fmt(mean_of(sel, 'psnr'), '.2f')} / {_fmt(mean_of(sel, 'ssim'), '.3f')}"
                )
            lines.append(f"| {s} | {p:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def qpi_markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    labels = [lb for lb, _ in QPI_NOISE if _select(rows, noise=lb)]
    families = list(dict.fromkeys(r["family"] for r in rows))
    lines = [
        "| noise | method | MAE (rad) | RMSE (rad) | SSIM | s / image |",
        "|---|---|---|---|---|---|",
    ]
    for lb in labels:
        for m in (*QPI_METHODS, "cvdm"):
            sel = _select(rows, noise=lb, method=m)
            cells = [
                _fmt(mean_of(sel, k), f)
                for k, f in (
                    ("mae_rad", ".3f"),
                    ("rmse_rad", ".3f"),
                    ("ssim", ".3f"),
                    ("seconds", ".3g"),
                )
            ]
            lines.append(f"| {lb} | {m} | " + " | ".join(cells) + " |")  # fmt: skip
    head = " | ".join(f"{m} MAE" for m in QPI_METHODS)
    lines += ["", f"| family | noise | {head} | CVDM MAE | CVDM / best |"]
    lines.append("|---|---|" + "---|" * (len(QPI_METHODS) + 2))
    for lb in labels:
        for fam in [*families, "all"]:
            sel = rows if fam == "all" else _select(rows, family=fam)
            maes = [mean_of(_select(sel, noise=lb, method=m), "mae_rad") for m in QPI_METHODS]
            cvdm = mean_of(_select(sel, noise=lb, method="cvdm"), "mae_rad")
            best = np.nanmin(maes) if np.any(np.isfinite(maes)) else float("nan")
            lines.append(
                f"| {fam} | {lb} | " + " | ".join(_fmt(v, ".3f") for v in maes)
                + f" | {_fmt(cvdm, '.3f')} | {_fmt(cvdm / best, '.2f')} |"
            )  # fmt: skip
    return "\n".join(lines)


def uncertainty_markdown(report: dict[str, Any]) -> str:
    lines = ["| task | level | Spearman ρ(std, abs error) | coverage ±1σ | coverage ±2σ |"]
    lines.append("|---|---|---|---|---|")
    keys = ("spearman_rho", "coverage_1sigma", "coverage_2sigma")
    levels = {"sr": ("photons", SR_PHOTONS), "qpi": ("noise", [lb for lb, _ in QPI_NOISE])}
    for task, (level_key, values) in levels.items():
        for level in values if task in report else ():
            sel = _select(report[task]["rows"], method="cvdm", **{level_key: level})
            if sel:
                cells = " | ".join(_fmt(mean_of(sel, k), ".3f") for k in keys)
                lines.append(f"| {task} | {level:g} | {cells} |" if task == "sr" else
                             f"| {task} | {level} | {cells} |")  # fmt: skip
    return "\n".join(lines)


def headline_markdown(summary: dict[str, Any]) -> str:
    ok = {True: "met", False: "**missed**"}
    lines = ["| measure | value | target | |", "|---|---|---|---|"]
    if "sr" in summary:
        s = summary["sr"]
        lines.append(
            f"| SR PSNR at N_fg = {s['photons']:g}, mean over structures: CVDM / RL (dB) | "
            f"{_fmt(s['cvdm_psnr'], '.2f')} / {_fmt(s['rl_psnr'], '.2f')} | | |"
        )
        lines.append(
            f"| SR CVDM − RL (dB) | {_fmt(s['delta_db'], '+.2f')} | ≥ +2 | {ok[s['met']]} |"
        )
    if "qpi" in summary:
        q = summary["qpi"]
        lines.append(
            f"| QPI MAE at {q['noise']}: CVDM / best baseline ({q['best_baseline']}) (rad) | "
            f"{_fmt(q['cvdm_mae_rad'], '.3f')} / {_fmt(q['best_baseline_mae_rad'], '.3f')} | | |"
        )
        lines.append(f"| QPI MAE ratio CVDM / best | {_fmt(q['ratio'], '.2f')} | ≤ 0.5 | "
                     f"{ok[q['met']]} |")  # fmt: skip
    u = summary["uncertainty"]
    lines.append(
        f"| Spearman ρ(std, abs error), mean over {u['images']} images | "
        f"{_fmt(u['spearman_mean'], '.3f')} | ≥ 0.4 | {ok[u['met']]} |"
    )
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    parts = [f"Command: `{report['command']}`", ""]
    for task in ("sr", "qpi"):
        if task in report and report[task]["model"]["untrained"]:
            parts += [
                f"**WARNING: the {task.upper()} model is UNTRAINED; numbers are meaningless.**"
            ]
    parts += ["", "### Headline", "", headline_markdown(report["summary"]), ""]
    if "sr" in report:
        m = report["sr"]["model"]
        parts += [f"### SR: {m['name']} vs baselines (DL-SR convention, min–max [0, 1])", ""]
        parts += [sr_markdown(report["sr"]), ""]
    if "qpi" in report:
        m = report["qpi"]["model"]
        parts += [f"### QPI: {m['name']} vs TIE baselines (phase MAE in rad, piston removed)", ""]
        parts += [qpi_markdown(report["qpi"]), ""]
    parts += ["### Uncertainty (per image, then averaged)", "", uncertainty_markdown(report), ""]
    return "\n".join(parts)
