"""Science layer: PSFs, fluorescence and phase simulators, classical baselines (numpy/scipy, no Qt)."""
