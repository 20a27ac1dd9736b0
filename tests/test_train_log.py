"""Training history: CSV log round trip, curves drawn on a figure, PNG written atomically."""

import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from napari_cvdm.workflows.train_log import TrainHistory, draw_curves, log_paths, write_png


def _history():
    history = TrainHistory("sr")
    for step in range(1, 6):
        history.add_loss(step, {"total": 1.0 / step, "diffusion": 0.5 / step}, lr=1e-4 * step)
    history.add_validation(3, {"loss": 0.4, "psnr": 20.5, "ssim": 0.61})
    history.add_validation(5, {"loss": 0.3, "psnr": 22.0, "ssim": 0.7})
    return history


def test_log_paths_sit_next_to_the_model(tmp_path):
    csv_path, png_path = log_paths(tmp_path / "sr-model.safetensors")
    assert csv_path == tmp_path / "sr-model.log.csv"
    assert png_path == tmp_path / "sr-model.curves.png"


def test_csv_round_trip_and_truncation(tmp_path):
    history = _history()
    path = tmp_path / "m.log.csv"
    history.write_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "step,lr,total,diffusion,val_loss,val_psnr,val_ssim"
    assert lines[3] == "3,0.0003,0.333333,0.166667,0.4,20.5,0.61"
    assert lines[1].endswith(",,,")
    back = TrainHistory.read_csv(path, "sr", up_to_step=4)
    assert back.steps == [1, 2, 3, 4]
    assert math.isclose(back.losses["total"][3], 0.25)
    assert back.validation == {3: {"loss": 0.4, "psnr": 20.5, "ssim": 0.61}}


def test_draw_curves_plots_every_point():
    history = _history()
    figure = Figure()
    FigureCanvasAgg(figure)
    draw_curves(figure, history)
    ax_loss, ax_val = figure.axes[:2]
    raw = ax_loss.lines[0]
    assert list(raw.get_xdata()) == [1, 2, 3, 4, 5]
    assert ax_loss.get_yscale() == "log"
    assert list(ax_loss.lines[2].get_ydata()) == [0.4, 0.3]  # validation loss
    assert list(ax_val.lines[0].get_ydata()) == [20.5, 22.0]  # PSNR


def test_png_is_written(tmp_path):
    path = tmp_path / "curves.png"
    write_png(path, _history())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]
