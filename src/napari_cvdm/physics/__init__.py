"""Science layer: PSFs, fluorescence and phase simulators, classical baselines.

numpy/scipy only: no torch, no Qt, no napari.
"""
