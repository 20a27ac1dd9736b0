"""Sampling defaults, defined once: the CLI (predict, demo), the workflow and the sampler read them.

No imports here, so the CLI parser can use them without numpy or torch.

``SAMPLING_STEPS``: ``benchmarks/steps_curve.py`` (docs/benchmarks.md, "Quality against sampling
steps") on the seeded SR test set with the shipped ``sr-fluorescence-2x``: with the ancestral
sampler, 16, 20, 32 and 64 steps score within noise of each other (paired ΔSSIM against 64
steps −0.02 ± 0.04, −0.00 ± 0.04 and +0.02 ± 0.04), while 8 steps lose 0.10 ± 0.05 SSIM; DDIM
is 4.7 dB below ancestral at 32 steps. So 20 ancestral steps stay the default.
"""

#: reverse diffusion steps per sample
SAMPLING_STEPS = 20
#: samples per frame for the mean/std
SAMPLES = 4
#: reverse sampler
SAMPLER = "ancestral"
