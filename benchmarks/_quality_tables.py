"""Headline numbers and markdown tables of ``benchmarks/quality.py`` (pure functions of the report).

``summarise(report)`` compares the CVDM rows with the best classical method at every level
against the issue's targets; ``markdown(report)`` renders the headline, SR, QPI and
uncertainty tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _testsets import (
    QPI_METHODS,
    QPI_NOISE,
    SR_METHODS,
    SR_PHOTONS,
    STRUCTURE_NAMES,
    mean_of,
)

__all__ = ["TARGETS", "markdown", "summarise"]

#: issue 10's targets: at every SR photon level CVDM ≥ best classical + 2 dB PSNR and + 0.05
#: SSIM; at every QPI noise level CVDM MAE ≤ 0.5 × best classical; mean Spearman ρ(std, |e|)
#: ≥ 0.5 and mean ±2σ coverage within 0.90–0.98
TARGETS = {
    "sr_delta_db": 2.0,
    "sr_delta_ssim": 0.05,
    "qpi_ratio": 0.5,
    "spearman": 0.5,
    "coverage_2sigma": (0.90, 0.98),
}


def _select(rows: list[dict], **where: Any) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _sr_level(rows: list[dict], photons: float) -> dict[str, Any]:
    """CVDM against the best classical method (by PSNR; SSIM of the best by SSIM) at a level."""
    score = {
        m: (
            mean_of(_select(rows, method=m, photons=photons), "psnr"),
            mean_of(_select(rows, method=m, photons=photons), "ssim"),
        )
        for m in (*SR_METHODS, "cvdm")
    }
    classical = [m for m in SR_METHODS if np.isfinite(score[m][0])]
    best = max(classical, key=lambda m: score[m][0]) if classical else SR_METHODS[-1]
    best_ssim = max((score[m][1] for m in classical), default=float("nan"))
    d_db, d_ssim = score["cvdm"][0] - score[best][0], score["cvdm"][1] - best_ssim
    return {
        "photons": photons,
        "cvdm_psnr": _finite(score["cvdm"][0]),
        "cvdm_ssim": _finite(score["cvdm"][1]),
        "best_classical": best,
        "best_psnr": _finite(score[best][0]),
        "best_ssim": _finite(best_ssim),
        "delta_db": _finite(d_db),
        "delta_ssim": _finite(d_ssim),
        "met": bool(d_db >= TARGETS["sr_delta_db"] and d_ssim >= TARGETS["sr_delta_ssim"]),
    }


def _qpi_level(rows: list[dict], label: str) -> dict[str, Any]:
    maes = {m: mean_of(_select(rows, method=m, noise=label), "mae_rad") for m in QPI_METHODS}
    best = min(maes, key=lambda m: maes[m] if np.isfinite(maes[m]) else np.inf)
    cvdm = mean_of(_select(rows, method="cvdm", noise=label), "mae_rad")
    return {
        "noise": label,
        "cvdm_mae_rad": _finite(cvdm),
        "best_baseline": best,
        "best_baseline_mae_rad": _finite(maes[best]),
        "ratio": _finite(cvdm / maes[best]),
        "met": bool(cvdm / maes[best] <= TARGETS["qpi_ratio"]),
    }


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers against the issue's targets, per level (None where not measured)."""
    out: dict[str, Any] = {"targets": dict(TARGETS)}
    cvdm_rows: list[dict] = []
    if "sr" in report:
        rows = report["sr"]["rows"]
        levels = [_sr_level(rows, p) for p in SR_PHOTONS if _select(rows, photons=p)]
        out["sr"] = {"levels": levels, "met": bool(levels) and all(x["met"] for x in levels)}
        cvdm_rows += _select(rows, method="cvdm")
    if "qpi" in report:
        rows = report["qpi"]["rows"]
        labels = [lb for lb, _ in QPI_NOISE if _select(rows, noise=lb)]
        levels = [_qpi_level(rows, lb) for lb in labels]
        out["qpi"] = {"levels": levels, "met": bool(levels) and all(x["met"] for x in levels)}
        cvdm_rows += _select(rows, method="cvdm")
    rho = mean_of(cvdm_rows, "spearman_rho")
    cov2 = mean_of(cvdm_rows, "coverage_2sigma")
    low, high = TARGETS["coverage_2sigma"]
    out["uncertainty"] = {
        "spearman_mean": _finite(rho),
        "images": len(cvdm_rows),
        "coverage_1sigma": _finite(mean_of(cvdm_rows, "coverage_1sigma")),
        "coverage_2sigma": _finite(cov2),
        "met": bool(rho >= TARGETS["spearman"] and low <= cov2 <= high),
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
    t = TARGETS
    lines = [
        "| measure | CVDM | best classical | CVDM − best | target | |",
        "|---|---|---|---|---|---|",
    ]
    for x in summary.get("sr", {}).get("levels", []):
        lines.append(
            f"| SR PSNR / SSIM at N_fg = {x['photons']:g} | {_fmt(x['cvdm_psnr'], '.2f')} / "
            f"{_fmt(x['cvdm_ssim'], '.3f')} | {_fmt(x['best_psnr'], '.2f')} / "
            f"{_fmt(x['best_ssim'], '.3f')} ({x['best_classical']}) | "
            f"{_fmt(x['delta_db'], '+.2f')} dB / {_fmt(x['delta_ssim'], '+.3f')} | "
            f"≥ +{t['sr_delta_db']:g} dB / +{t['sr_delta_ssim']:g} | {ok[x['met']]} |"
        )
    for q in summary.get("qpi", {}).get("levels", []):
        lines.append(
            f"| QPI MAE (rad) at {q['noise']} | {_fmt(q['cvdm_mae_rad'], '.3f')} | "
            f"{_fmt(q['best_baseline_mae_rad'], '.3f')} ({q['best_baseline']}) | "
            f"ratio {_fmt(q['ratio'], '.2f')} | ≤ {t['qpi_ratio']:g} | {ok[q['met']]} |"
        )
    u = summary["uncertainty"]
    low, high = t["coverage_2sigma"]
    lines.append(
        f"| Spearman ρ(std, abs error) / ±2σ coverage, mean over {u['images']} images | "
        f"{_fmt(u['spearman_mean'], '.3f')} / {_fmt(u['coverage_2sigma'], '.3f')} | | | "
        f"≥ {t['spearman']:g} / {low:g}–{high:g} | {ok[u['met']]} |"
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
