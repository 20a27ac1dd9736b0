"""Engine layer: the CVDM model, samplers, tiling, model files and devices (torch, no Qt)."""
