"""Shared test configuration: CPU only, tiny sizes, no network."""

import os
from pathlib import Path

# Tests always run on CPU, whatever the machine has (engine.device honours CI).
os.environ.setdefault("CI", "true")
os.environ.setdefault("NAPARI_CVDM_DEVICE", "cpu")

# Real BioSR/rDL-SIM widefield microtubules (MIT licence, see tests/data/rdlsim-mt/LICENSE).
DATA_DIR = Path(__file__).parent / "data"
REAL_MT_MRC = DATA_DIR / "rdlsim-mt" / "MT.mrc"
