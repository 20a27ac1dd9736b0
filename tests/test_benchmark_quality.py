"""Smoke test of benchmarks/quality.py: tiny untrained models, the smallest settings."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def quality(monkeypatch):
    """The benchmark script as a module (its helpers import ``_testsets`` from benchmarks/)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("benchmark_quality", BENCHMARKS / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_models(tmp_path):
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import make_untrained_model

    paths = {}
    for task in ("sr", "qpi"):
        loaded = make_untrained_model(task, preset="tiny")
        paths[task] = save_model(
            tmp_path / f"tiny-{task}.safetensors", loaded.model, loaded.metadata
        )
    return paths


def _numbers(row: dict) -> list[float]:
    return [v for v in row.values() if isinstance(v, int | float) and not isinstance(v, bool)]


def test_main_writes_json_and_markdown_with_finite_numbers(quality, tiny_models, tmp_path):
    out, md = tmp_path / "quality.json", tmp_path / "quality.md"
    argv = [
        "--sr-model", str(tiny_models["sr"]), "--qpi-model", str(tiny_models["qpi"]),
        "--n", "1", "--samples", "2", "--steps", "1", "--levels", "middle", "--n-val", "1",
        "--sr-size", "32", "--qpi-size", "32", "--threads", "1", "--device", "cpu",
        "--json", str(out), "--markdown", str(md),
    ]  # fmt: skip
    assert quality.main(argv) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert {"command", "settings", "machine", "sr", "qpi", "summary", "total_seconds"} <= set(
        report
    )
    assert report["command"].startswith(".venv/bin/python benchmarks/quality.py --sr-model")

    sr = report["sr"]
    assert set(sr["tuned"]) == {"500.0"} and sr["tuned_from"] == "validation set"
    assert sr["model"]["untrained"] is True and sr["model"]["preset"] == "tiny"
    # 4 structures × 1 level × 1 image × (bicubic, wiener, rl, cvdm)
    assert len(sr["rows"]) == 16
    assert sorted({r["method"] for r in sr["rows"]}) == ["bicubic", "cvdm", "rl", "wiener"]
    for row in sr["rows"]:
        assert row["photons"] == 500.0 and row["seconds"] > 0
        assert all(math.isfinite(v) for v in _numbers(row))
        assert -1.0 <= row["ssim"] <= 1.0  # SSIM dips below 0 for an untrained model
    cvdm_sr = [r for r in sr["rows"] if r["method"] == "cvdm"]
    for row in cvdm_sr:
        assert -1.0 <= row["spearman_rho"] <= 1.0
        assert 0.0 <= row["coverage_1sigma"] <= row["coverage_2sigma"] <= 1.0

    qpi = report["qpi"]
    # 2 families (cells, fractal) × 1 level × 1 image × (tie, us-tie, ctf, cvdm)
    assert len(qpi["rows"]) == 8 and {r["noise"] for r in qpi["rows"]} == {"sigma=0.03"}
    for row in qpi["rows"]:
        assert row["mae_rad"] >= 0 and all(math.isfinite(v) for v in _numbers(row))

    summary = report["summary"]
    assert summary["targets"]["sr_delta_db"] == 2.0 and summary["targets"]["spearman"] == 0.5
    assert summary["targets"]["coverage_2sigma"] == [0.90, 0.98]
    (s,), (q,), u = summary["sr"]["levels"], summary["qpi"]["levels"], summary["uncertainty"]
    classical = {m: [r["psnr"] for r in sr["rows"] if r["method"] == m] for m in ("wiener", "rl")}
    best = max(sum(v) / len(v) for v in classical.values())
    assert s["best_psnr"] == pytest.approx(best) and s["best_classical"] in ("wiener", "rl")
    assert s["delta_db"] == pytest.approx(s["cvdm_psnr"] - s["best_psnr"])
    assert q["best_baseline"] in ("tie", "us-tie", "ctf")
    assert q["ratio"] == pytest.approx(q["cvdm_mae_rad"] / q["best_baseline_mae_rad"])
    assert u["images"] == 6 and math.isfinite(u["spearman_mean"])
    for flag in (s["met"], q["met"], u["met"], summary["sr"]["met"], summary["qpi"]["met"]):
        assert isinstance(flag, bool)

    text = md.read_text(encoding="utf-8")
    assert "SR PSNR / SSIM at N_fg = 500" in text and "QPI MAE (rad) at sigma=0.03" in text
    assert "UNTRAINED" in text and report["command"] in text


def test_baseline_params_are_reused_only_for_the_same_validation_set(quality, tmp_path):
    tuned = {
        "settings": {"n_val": 3, "val_seed": 1},
        "sr": {"tuned": {"500.0": {"wiener": 0.001, "rl": 200}}},
        "qpi": {"tuned": {"N0=3000": {"tie": 1e-6, "us-tie": 1e-5, "ctf": 3e-4}}},
    }
    path = tmp_path / "baselines.json"
    path.write_text(json.dumps(tuned), encoding="utf-8")
    args = quality.parse_args(["--sr-model", "x", "--qpi-size", "64"])
    got = quality.load_tuned(path, args)
    assert got["sr"] == {"500.0": {"wiener": 0.001, "rl": 200}}
    assert got["qpi"] is None  # tuned at 256², this run uses 64²: re-tune
    args = quality.parse_args(["--sr-model", "x"])
    assert quality.load_tuned(path, args)["qpi"] is None  # tuned on QPI-A (no recipe recorded)
    tuned["settings"]["qpi_recipe"] = "QPI-B"
    tuned["qpi"] = {"tuned": {"sigma=0.03": {"tie": 1e-6, "us-tie": 1e-5, "ctf": 3e-4}}}
    path.write_text(json.dumps(tuned), encoding="utf-8")
    assert quality.load_tuned(path, args)["qpi"] == tuned["qpi"]["tuned"]
    with pytest.raises(SystemExit):
        quality.load_tuned(path, quality.parse_args(["--sr-model", "x", "--n-val", "2"]))


@pytest.mark.parametrize("argv", [[], ["--sr-model", "x", "--samples", "1"]])
def test_bad_command_lines_are_refused(quality, argv):
    with pytest.raises(SystemExit):
        quality.parse_args(argv)
