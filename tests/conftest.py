"""Shared test configuration: CPU only, tiny sizes, no network."""

import os

# Tests always run on CPU, whatever the machine has (engine.device honours CI).
os.environ.setdefault("CI", "true")
os.environ.setdefault("NAPARI_CVDM_DEVICE", "cpu")
