"""Figures carry a scale bar in µm and colour bars labelled with their units (demo PNGs)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_cvdm.figures import Panel, figure_of, nice_length_um


@pytest.mark.parametrize(
    ("field", "length"), [(8.0, 2.0), (8.01, 2.0), (26.88, 5.0), (53.8, 10.0), (3.0, 0.5)]
)
def test_scale_bar_is_a_round_length_about_a_quarter_of_the_field(field, length):
    assert nice_length_um(field) == length


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_every_panel_has_a_scale_bar_and_a_labelled_colour_bar():
    rng = np.random.default_rng(0)
    panels = [
        Panel("input", rng.random((64, 64)), "gray", "ADU", 64 * 0.0626),
        Panel("mean", rng.random((128, 128)), "gray", "relative intensity", 64 * 0.0626),
        Panel("phase", rng.random((128, 128)), "gray", "phase (rad)", 128 * 0.21),
    ]
    fig = figure_of(panels, "test")
    images = [ax for ax in fig.axes if ax.images and ax.get_title()]
    bars = [ax for ax in fig.axes if ax not in images]
    assert [ax.get_title() for ax in images] == ["input", "mean", "phase"]
    assert [ax.get_ylabel() for ax in bars] == ["ADU", "relative intensity", "phase (rad)"]
    assert [_texts(ax) for ax in images] == [["1 µm"], ["1 µm"], ["5 µm"]]
    # the bar is as long as its label says: 1 µm = 1/0.0626 input pixels, 2/0.0626 on the 2x grid
    for ax, px_um in zip(images, (0.0626, 0.0313, 0.21)):
        (bar,) = ax.patches
        length = float(re.match(r"([\d.]+) µm", _texts(ax)[0]).group(1))
        assert bar.get_width() == pytest.approx(length / px_um, rel=1e-3)


def test_demo_figure_panels_have_units(tmp_path, monkeypatch):
    import napari_cvdm.commands.demo as demo

    captured = {}
    original = demo.save_figure

    def keep(path, panels, title):
        captured.setdefault("panels", []).append(panels)
        return original(path, panels, title)

    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "save_figure", keep)
    argv = ["demo", "--output-dir", str(tmp_path / "d"), "--samples", "1", "--steps", "1",
            "--size", "32", "--device", "cpu"]  # fmt: skip
    from napari_cvdm.cli import main

    assert main(argv) == 0
    sr, qpi = captured["panels"]
    relative = "relative intensity (ADU − offset)"
    assert [p.unit for p in sr] == ["ADU", relative, relative, "λ (dimensionless)",
                                     "relative intensity"]  # fmt: skip
    assert [p.unit for p in qpi][1:] == ["phase (rad)", "phase (rad)", "λ (dimensionless)",
                                          "phase (rad)"]  # fmt: skip
    assert sr[0].field_um == pytest.approx(32 * 0.0626)
    assert all(p.field_um == sr[0].field_um for p in sr)
