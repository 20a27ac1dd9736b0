"""Through-focus QPI simulator (recipe QPI-A by name; QPI-B, the default: test_qpi_cells.py)."""

import json

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.physics.propagation import propagate_planes
from napari_cvdm.physics.qpi import QPI_DEFAULTS, plane_offsets, simulate_qpi_stack


def test_defaults_match_cvdm_setting():
    s = simulate_qpi_stack(np.random.default_rng(0), size=64, recipe="QPI-A")
    md = s.metadata
    assert s.stack.shape == (2, 64, 64) and s.stack.dtype == np.float32
    assert s.phase.shape == (64, 64) and s.phase.dtype == np.float32
    assert md["wavelength_um"] == 0.521 and md["pixel_size_um"] == 0.21 and md["dz_um"] == 1.0
    assert md["z_offsets_um"] == [-1.0, 1.0]
    assert md["D"] == pytest.approx(11.81, abs=0.01)
    assert md["na"] is None and md["method"] == "fresnel"
    assert 300 <= md["photons"] <= 1e4 and md["read_noise_e"] == 1.5
    assert md["source"] in ("cells", "fluorescence", "natural", "fractal")
    assert 1.0 <= md["phi_max"] <= 3.5
    assert float(s.phase.min()) == 0.0
    assert float(s.phase.max()) == pytest.approx(md["phi_max"], rel=1e-6)
    json.dumps(md)  # serialisable as written into TIFF metadata
    assert QPI_DEFAULTS["size"] == 256 and md["recipe"] == "QPI-A"


def test_same_seed_same_sample():
    a = simulate_qpi_stack(np.random.default_rng(3), size=48, absorption="random")
    b = simulate_qpi_stack(np.random.default_rng(3), size=48, absorption="random")
    c = simulate_qpi_stack(np.random.default_rng(4), size=48, absorption="random")
    assert np.array_equal(a.stack, b.stack) and np.array_equal(a.phase, b.phase)
    assert a.metadata == b.metadata
    assert not np.array_equal(a.stack, c.stack)


@pytest.mark.parametrize(
    "planes, offsets", [(2, [-0.5, 0.5]), (3, [-0.5, 0.0, 0.5]), (5, [-1.0, -0.5, 0.0, 0.5, 1.0])]
)
def test_plane_options(planes, offsets):
    s = simulate_qpi_stack(np.random.default_rng(0), size=32, planes=planes, dz_um=0.5)
    assert s.stack.shape == (planes, 32, 32)
    assert s.metadata["z_offsets_um"] == offsets == plane_offsets(planes, 0.5)
    with pytest.raises(InputError, match="planes"):
        plane_offsets(4, 1.0)


def test_noise_free_stack_is_the_propagated_intensity():
    rng = np.random.default_rng(1)
    s = simulate_qpi_stack(rng, size=64, noise="none", source="cells", recipe="QPI-A")
    field = np.exp(1j * s.phase.astype(np.float64))
    ref = np.abs(propagate_planes(field, 0.521, [-1.0, 1.0], 0.21)) ** 2
    assert np.max(np.abs(s.stack - ref)) < 1e-5
    assert s.metadata["photons"] is None and s.metadata["noise"] == "none"


def test_given_phase_uniform_gives_unit_background_and_poisson_noise():
    n0 = 1000.0
    s = simulate_qpi_stack(
        np.random.default_rng(2), phase=np.full((128, 128), 0.4), photons=n0, recipe="QPI-A"
    )
    assert s.metadata["source"] == "given"
    assert float(s.stack.mean()) == pytest.approx(1.0, abs=0.01)
    expected_var = (n0 + 1.5**2) / n0**2  # Poisson + read noise, divided by the flat field
    assert float(s.stack.var()) == pytest.approx(expected_var, rel=0.05)


def test_positive_phase_object_brightens_downstream_plane():
    yy, xx = np.mgrid[:64, :64] - 32
    phase = 1.5 * np.exp(-(yy**2 + xx**2) / (2 * 5.0**2))
    s = simulate_qpi_stack(np.random.default_rng(0), phase=phase, noise="none")
    assert s.stack[1, 32, 32] > s.stack[0, 32, 32]


def test_defocus_override_sets_dz():
    s = simulate_qpi_stack(np.random.default_rng(0), size=32, defocus=5.0, noise="none")
    assert s.metadata["D"] == pytest.approx(5.0)
    assert s.metadata["dz_um"] == pytest.approx(5.0 * 0.21**2 / 0.521)


def test_absorber_and_angular_spectrum_and_pupil():
    s = simulate_qpi_stack(
        np.random.default_rng(0),
        size=32,
        absorption=0.1,
        noise="none",
        method="angular_spectrum",
        na=0.5,
        source="fractal",
    )
    assert s.metadata["absorption"] == 0.1 and s.metadata["na"] == 0.5
    assert s.metadata["method"] == "angular_spectrum"
    assert np.isfinite(s.stack).all() and s.stack.min() >= 0
    r = simulate_qpi_stack(np.random.default_rng(0), size=32, absorption="random")
    assert 0.0 <= r.metadata["absorption"] <= 0.1


def test_bad_options_raise_input_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="Unknown QPI simulator option"):
        simulate_qpi_stack(rng, wavelenght_um=0.5)
    with pytest.raises(InputError, match="noise"):
        simulate_qpi_stack(rng, noise="gaussian")
    with pytest.raises(InputError, match="source"):
        simulate_qpi_stack(rng, source="stars")
    with pytest.raises(InputError, match="wavelength_um"):
        simulate_qpi_stack(rng, wavelength_um=0.0)
