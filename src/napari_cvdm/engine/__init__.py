"""Engine layer: the CVDM model, samplers, tiling, model files and devices (torch, no Qt).

Importing this package prepares the torch environment (e.g. the macOS MPS fallback) before any
engine module imports torch; `engine.device` itself imports torch only on first use.
"""

from .device import prepare_torch_environment

prepare_torch_environment()
