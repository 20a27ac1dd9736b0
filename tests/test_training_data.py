"""Training data sources: normalisation like inference, patches, augmentation, splits, errors."""

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.io import widefield_from_raw_sim, write_tiff
from napari_cvdm.normalization import (
    fit_input_norm,
    normalize_input,
    normalize_target_to_condition,
    phase_to_model,
    qpi_contrast,
    qpi_tie_prior,
)
from napari_cvdm.workflows.training_data import (
    PairedImages,
    dihedral,
    make_training_data,
    paired_folders,
    prepare_qpi_pair,
    prepare_sr_pair,
    upsample_to_target_grid,
)


def _sr_pair(rng, n=16):
    gt = rng.random((2 * n, 2 * n)).astype(np.float32)
    wf = gt.reshape(n, 2, n, 2).mean(axis=(1, 3)) * 900 + 100 + rng.normal(0, 3, (n, n))
    return wf.astype(np.float32), gt


def _find_window(pair, cond, target):
    """The (k, y, x) of a patch inside a prepared pair, or None."""
    p = cond.shape[-1]
    h, w = pair.target.shape[-2:]
    for k in range(8):
        for y in range(h - p + 1):
            for x in range(w - p + 1):
                window = (slice(None), slice(y, y + p), slice(x, x + p))
                if np.array_equal(dihedral(pair.target[window], k), target) and np.array_equal(
                    dihedral(pair.condition[window], k), cond
                ):
                    return k, y, x
    return None


def test_dihedral_gives_eight_distinct_symmetries():
    a = np.arange(9.0).reshape(1, 3, 3)
    outs = {dihedral(a, k).tobytes() for k in range(8)}
    assert len(outs) == 8
    np.testing.assert_array_equal(dihedral(a, 4)[0], a[0, :, ::-1])


def test_sr_preparation_matches_the_inference_normalisation():
    wf, gt = _sr_pair(np.random.default_rng(0))
    pair = prepare_sr_pair(wf, gt)
    expected = upsample_to_target_grid(normalize_input(wf, fit_input_norm(wf)))
    assert pair.condition.shape == (1, 32, 32) and pair.target.shape == (1, 32, 32)
    np.testing.assert_array_equal(pair.condition[0], expected)
    np.testing.assert_array_equal(pair.target[0], normalize_target_to_condition(gt, expected))


def test_qpi_preparation_uses_contrast_and_fixed_phase_map():
    rng = np.random.default_rng(1)
    stack = (1 + 0.1 * rng.standard_normal((3, 24, 24))).astype(np.float32)
    phase = rng.uniform(0, 3, (24, 24)).astype(np.float32)
    pair = prepare_qpi_pair(stack, phase)
    contrast = qpi_contrast(stack[[0, 2]])
    assert pair.condition.shape == (3, 24, 24)  # [TIE prior, c−, c+]
    np.testing.assert_array_equal(pair.condition[1:], contrast)
    qpi_a_D = 0.521 * 1.0 / 0.21**2
    np.testing.assert_array_equal(pair.condition[0], qpi_tie_prior(contrast, qpi_a_D))
    other = prepare_qpi_pair(stack, phase, defocus_D=3.0).condition[0]  # the data's own D
    np.testing.assert_array_equal(other, qpi_tie_prior(contrast, 3.0))
    np.testing.assert_array_equal(pair.target[0], phase_to_model(phase))
    with pytest.raises(InputError, match="distinct"):
        prepare_qpi_pair(stack, phase, planes=(1, 1))
    with pytest.raises(InputError, match="at least 2 planes"):
        prepare_qpi_pair(stack[:1], phase)
    assert prepare_qpi_pair(stack[:3].repeat(2, 0)[:5], phase, planes=(1, 3)).condition.shape == (
        3,
        24,
        24,
    )
    with pytest.raises(InputError, match="Y, X size"):
        prepare_qpi_pair(stack, phase[:20])


def test_patches_are_augmented_windows_of_the_prepared_pair_and_seeded():
    rng = np.random.default_rng(2)
    data = PairedImages("sr", *zip(*[_sr_pair(rng, 12) for _ in range(1)]), val_fraction=0.0)
    batch = data.train_batch(np.random.default_rng(5), 6, 8)
    assert batch.condition.shape == (6, 1, 8, 8) and batch.target.shape == (6, 1, 8, 8)
    assert batch.condition.dtype == np.float32
    pair = data.train_pairs[0]
    found = [_find_window(pair, c, t) for c, t in zip(batch.condition, batch.target)]
    assert all(f is not None for f in found)
    again = data.train_batch(np.random.default_rng(5), 6, 8)
    np.testing.assert_array_equal(batch.condition, again.condition)
    other = data.train_batch(np.random.default_rng(6), 6, 8)
    assert not np.array_equal(batch.target, other.target)


def test_validation_split_holds_out_frames_or_a_band():
    rng = np.random.default_rng(3)
    inputs, targets = zip(*[_sr_pair(rng) for _ in range(5)])
    data = PairedImages("sr", inputs, targets, val_fraction=0.2)
    assert len(data.train_pairs) == 4 and len(data.val_pairs) == 1
    val = data.validation_batch(16, 2)
    assert val.condition.shape == (2, 1, 16, 16)
    np.testing.assert_array_equal(val.target, data.validation_batch(16, 2).target)
    single = PairedImages("sr", [inputs[0]], [targets[0]], val_fraction=0.5)
    (train,), (held,) = single.train_pairs, single.val_pairs
    assert train.target.shape == (1, 16, 32) and held.target.shape == (1, 16, 32)
    prepared = prepare_sr_pair(inputs[0], targets[0])
    np.testing.assert_array_equal(np.concatenate([train.target, held.target], 1), prepared.target)


def test_raw_sim_stack_becomes_the_nine_frame_mean_and_time_series_split():
    rng = np.random.default_rng(4)
    raw = rng.uniform(100, 1000, (9, 16, 16)).astype(np.float32)
    gt = rng.random((32, 32)).astype(np.float32)
    data = PairedImages("sr", [raw], [gt], val_fraction=0.0)
    np.testing.assert_array_equal(
        data.train_pairs[0].condition, prepare_sr_pair(widefield_from_raw_sim(raw), gt).condition
    )
    series = PairedImages("sr", [raw[:3]], [np.stack([gt] * 3)], val_fraction=0.0)
    assert len(series.train_pairs) == 3


@pytest.mark.parametrize(
    ("inputs", "targets", "kwargs", "match"),
    [
        ([np.ones((16, 16)) + np.eye(16)], [np.ones((30, 32))], {}, "twice the widefield"),
        ([np.ones((16, 16))], [], {}, "one target per input"),
        ([np.ones((4, 16, 16))], [np.ones((32, 32))], {}, "raw-SIM stack of 9"),
        ([np.ones((3, 16, 16))], [np.ones((2, 32, 32))], {}, "3 frames but target 2"),
        (
            [np.eye(16) + 1],
            [np.eye(32)],
            {"input_pixel_size_um": [0.1], "target_pixel_size_um": [0.1]},
            "should be half",
        ),
    ],
)
def test_bad_pairs_raise_clear_input_errors(inputs, targets, kwargs, match):
    with pytest.raises(InputError, match=match):
        PairedImages("sr", inputs, targets, **kwargs)


def test_patch_larger_than_images_is_an_input_error():
    wf, gt = _sr_pair(np.random.default_rng(5), 8)
    data = PairedImages("sr", [wf], [gt], val_fraction=0.0)
    with pytest.raises(InputError, match="smaller patch"):
        data.train_batch(np.random.default_rng(0), 2, 32)


def _write_folder(root, rng, names, target_px=0.05):
    (root / "input").mkdir(parents=True)
    (root / "target").mkdir()
    for name in names:
        wf, gt = _sr_pair(rng)
        write_tiff(root / "input" / f"{name}.tif", wf, 0.1)
        write_tiff(root / "target" / f"{name}.ome.tif", gt, target_px)


def test_paired_folders_read_and_check_pixel_sizes(tmp_path):
    rng = np.random.default_rng(6)
    _write_folder(tmp_path / "good", rng, ["a", "b", "c", "d"])
    data = make_training_data("sr", tmp_path / "good", val_fraction=0.25)
    assert len(data.train_pairs) == 3 and len(data.val_pairs) == 1
    assert data.physics["pixel_size_um"] == pytest.approx(0.1)
    assert data.description["source"] == "folder"
    assert data.train_batch(np.random.default_rng(0), 4, 16).target.shape == (4, 1, 16, 16)
    _write_folder(tmp_path / "badpx", rng, ["a"], target_px=0.1)
    with pytest.raises(InputError, match="pixel size"):
        paired_folders("sr", tmp_path / "badpx")
    _write_folder(tmp_path / "names", rng, ["a"])
    write_tiff(tmp_path / "names" / "input" / "extra.tif", np.ones((16, 16)), 0.1)
    with pytest.raises(InputError, match="extra"):
        paired_folders("sr", tmp_path / "names")
    with pytest.raises(InputError, match="neither 'synthetic' nor a folder"):
        make_training_data("sr", tmp_path / "missing")


@pytest.mark.parametrize("task", ["sr", "qpi"])
def test_synthetic_batches_are_seeded_and_shaped(task):
    data = make_training_data(task, "synthetic", seed=1)
    a = data.train_batch(np.random.default_rng([1, 7, 0]), 2, 64)
    b = data.train_batch(np.random.default_rng([1, 7, 0]), 2, 64)
    channels = 1 if task == "sr" else 3  # QPI: [TIE prior, c−, c+]
    assert a.condition.shape == (2, channels, 64, 64) and a.target.shape == (2, 1, 64, 64)
    np.testing.assert_array_equal(a.condition, b.condition)
    np.testing.assert_array_equal(a.target, b.target)
    assert np.all(np.isfinite(a.condition)) and np.all(np.isfinite(a.target))
    val = data.validation_batch(64, 2)
    assert val.target.shape == (2, 1, 64, 64)
    assert val is data.validation_batch(64, 2)
    need = {"sr": {"pixel_size_um", "wavelength_um", "na"}, "qpi": {"pixel_size_um", "dz_um"}}
    assert need[task] <= set(data.physics)


def test_qpi_pairs_compute_the_tie_prior_with_the_physics_the_model_records():
    rng = np.random.default_rng(4)
    stack = (1 + 0.1 * rng.standard_normal((2, 32, 32))).astype(np.float32)
    phase = rng.uniform(0, 3, (32, 32)).astype(np.float32)
    contrast = qpi_contrast(stack)
    optics = {"wavelength_um": 0.6, "dz_um": 2.0, "pixel_size_um": 0.3}
    known = PairedImages("qpi", [stack], [phase], val_fraction=0.0, physics=optics)
    assert known.defocus_D == pytest.approx(0.6 * 2.0 / 0.3**2)
    np.testing.assert_array_equal(
        known.train_pairs[0].condition[0], qpi_tie_prior(contrast, known.defocus_D)
    )
    partly = PairedImages("qpi", [stack], [phase], val_fraction=0.0, input_pixel_size_um=[0.1],
                          target_pixel_size_um=[0.1])  # fmt: skip
    # a known pixel size with the recipe's λ 0.521 µm and dz 1 µm, as the model file will say
    assert partly.defocus_D == pytest.approx(0.521 * 1.0 / 0.1**2)
    np.testing.assert_array_equal(
        partly.train_pairs[0].condition[0], qpi_tie_prior(contrast, partly.defocus_D)
    )
