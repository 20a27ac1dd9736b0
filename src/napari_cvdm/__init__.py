"""napari-cvdm: Conditional Variational Diffusion Models for microscopy.

Importing this package is cheap: it never imports torch, Qt or napari. The heavy layers
(``napari_cvdm.engine``, ``napari_cvdm.workflows``) import torch on first use.

Layers (see docs/architecture.md)::

    frontends   _widgets/ (napari, Qt)   cli.py + commands/ (headless)
    workflows   workflows/  predict, train: generators yielding typed events
    engine      engine/     schedule, UNet, CVDM loss, samplers, tiling, model files, devices
    science     physics/, metrics.py, io.py   numpy/scipy simulators, baselines, metrics, file IO
"""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - running from a source tree without a build
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
