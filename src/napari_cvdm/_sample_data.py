"""napari sample data (File → Open Sample → napari CVDM). No torch, no Qt.

* ``sr_synthetic``: a simulated widefield image of microtubules (camera ADU) and its noise-free
  SIM-like ground truth on the 2x grid (recipe SR-A, fixed seed, offline, ~0.1 s).
* ``qpi_synthetic``: a simulated through-focus brightfield stack (-dz, 0, +dz) and its
  ground-truth phase in rad (recipe QPI-A, fixed seed; dz, λ, NA in the layer metadata).
* ``biosr_microtubules``: real widefield microtubules from the BioSR Multi-SIM microscope (the
  mean of 9 raw SIM frames, 0.0626 µm pixels), downloaded once with its sha256 checked
  (:mod:`napari_cvdm.datasets`).

Every function returns ``[(array, layer_kwargs), ...]`` with ``scale``, ``units`` and
``axis_labels`` set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .geometry import output_geometry

__all__ = ["QPI_SEED", "SR_SEED", "biosr_microtubules", "synthetic_qpi", "synthetic_sr"]

SR_SEED = 7
QPI_SEED = 4
LayerData = list[tuple[np.ndarray, dict[str, Any]]]

_SR_OPTIONS = {"structure": "microtubules", "na": 1.49, "wavelength_um": 0.525, "size": 128}
_QPI_OPTIONS = {"size": 128, "planes": 3, "source": "cells"}


def synthetic_sr(seed: int = SR_SEED) -> LayerData:
    """Simulated widefield microtubules (ADU, 0.0626 µm) and the 2x ground truth (0.0313 µm)."""
    from .physics.fluorescence import simulate_sr_pair

    sample = simulate_sr_pair(np.random.default_rng(seed), **_SR_OPTIONS)
    meta = sample.metadata
    pixel = float(meta["widefield_pixel_size_um"])
    common = {
        "na": float(meta["na"]),
        "wavelength_um": float(meta["wavelength_um"]),
        "offset_adu": float(meta["camera"]["offset_adu"]),
        "simulator": "napari_cvdm.physics.fluorescence.simulate_sr_pair",
        "seed": seed,
        "structure": meta["structure"],
        "photons": float(meta["photons"]),
    }
    widefield = {
        "name": "sr_widefield",
        "scale": (pixel, pixel),
        "units": ("µm", "µm"),
        "axis_labels": ("y", "x"),
        "colormap": "gray",
        "metadata": {
            **common,
            "pixel_size_um": pixel,
            "kind": "widefield (ADU, offset included)",
            "task": "sr",
        },
    }
    gt_geometry = output_geometry(
        (pixel, pixel), sr_factor=2, units=("µm", "µm"), axis_labels=("y", "x")
    )
    target_pixel = float(meta["target_pixel_size_um"])
    ground_truth = {
        "name": "sr_ground_truth",
        "colormap": "gray",
        "visible": False,
        "metadata": {**common, "pixel_size_um": target_pixel, "kind": "noise-free ground truth"},
        **gt_geometry.as_layer_kwargs(),
    }
    return [
        (np.asarray(sample.target, dtype=np.float32), ground_truth),
        (np.asarray(sample.widefield, dtype=np.float32), widefield),
    ]


def synthetic_qpi(seed: int = QPI_SEED) -> LayerData:
    """Simulated through-focus stack (Z = -dz, 0, +dz; intensities, background 1) and its phase."""
    from .physics.qpi import simulate_qpi_stack

    sample = simulate_qpi_stack(np.random.default_rng(seed), **_QPI_OPTIONS)
    meta = sample.metadata
    pixel, dz = float(meta["pixel_size_um"]), float(meta["dz_um"])
    offsets = [float(z) for z in meta["z_offsets_um"]]
    spacing = offsets[1] - offsets[0] if len(offsets) > 1 else dz
    common = {
        "wavelength_um": float(meta["wavelength_um"]),
        "dz_um": dz,
        "z_offsets_um": offsets,
        "pixel_size_um": pixel,
        "na": meta.get("na"),
        "defocus_D": float(meta["D"]),
        "simulator": "napari_cvdm.physics.qpi.simulate_qpi_stack",
        "seed": seed,
        "source": meta.get("source"),
    }
    stack = {
        "name": "qpi_through_focus",
        "scale": (spacing, pixel, pixel),
        "translate": (offsets[0], 0.0, 0.0),
        "units": ("µm", "µm", "µm"),
        "axis_labels": ("z", "y", "x"),
        "colormap": "gray",
        "metadata": {**common, "kind": "through-focus intensities, background 1", "task": "qpi"},
    }
    phase = {
        "name": "qpi_phase_ground_truth",
        "scale": (pixel, pixel),
        "units": ("µm", "µm"),
        "axis_labels": ("y", "x"),
        "colormap": "gray",
        "visible": False,
        "metadata": {**common, "kind": "ground-truth phase (rad)"},
    }
    return [
        (np.asarray(sample.phase, dtype=np.float32), phase),
        (np.asarray(sample.stack, dtype=np.float32), stack),
    ]


def biosr_microtubules() -> LayerData:
    """Real widefield microtubules (BioSR microscope, 256 x 256, 0.0626 µm), downloaded once.

    Offline (or behind a proxy) the identical copy bundled in the package is opened instead,
    with a note (a napari warning notification and ``metadata["note"]``). Raises
    :class:`napari_cvdm.datasets.DownloadError` with the cache folder and what to do only when
    that copy is missing too.
    """
    import warnings

    from .datasets import BIOSR_MT, fetch_or_bundled, read_biosr_widefield, sample_files

    path, note = fetch_or_bundled(BIOSR_MT)
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    widefield, meta = read_biosr_widefield(path)
    if note:
        meta["note"] = note
    pixel = float(meta["pixel_size_um"])
    entry = sample_files()[BIOSR_MT]
    return [
        (
            widefield,
            {
                "name": "biosr_microtubules_widefield",
                "scale": (pixel, pixel),
                "units": ("µm", "µm"),
                "axis_labels": ("y", "x"),
                "colormap": "gray",
                "metadata": {
                    **meta,
                    "url": entry.url,
                    "sha256": entry.known_hash,
                    "task": "sr",
                },
            },
        )
    ]
