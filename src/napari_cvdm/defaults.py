"""Defaults defined once: the engine, the workflows, the CLI, the widgets and the docs read them.

No imports here, so the CLI parser can use them without numpy or torch.

**Sampling.** ``SAMPLING_STEPS``: ``benchmarks/steps_curve.py`` (docs/benchmarks.md, "Quality
against sampling steps") on the seeded SR test set with the shipped ``sr-fluorescence-2x``: with
the ancestral sampler, 16, 20, 32 and 64 steps score within noise of each other (paired ΔSSIM
against 64 steps −0.02 ± 0.04, −0.00 ± 0.04 and +0.02 ± 0.04), while 8 steps lose 0.10 ± 0.05
SSIM; DDIM is 4.7 dB below ancestral at 32 steps. So 20 ancestral steps stay the default.

**Training.** :data:`TRAIN_DEFAULTS` start the same run from the CLI and the Train widget: a
first run on a laptop CPU takes about an hour (the run prints its measured estimate before step
1); raise steps and patch on a GPU. The learning rate warms up linearly over
:data:`WARMUP_STEPS` (at most a tenth of the run), then follows :data:`LR_SCHEDULE`.
"""

# --- sampling -------------------------------------------------------------------------------

#: reverse diffusion steps per sample
SAMPLING_STEPS = 20
#: samples per frame for the mean/std
SAMPLES = 4
#: reverse sampler (a name of ``engine.samplers.SAMPLERS``)
SAMPLER = "ancestral"
#: the registered samplers, in the order the CLI and the widgets offer them
SAMPLERS = ("ancestral", "ddim")
#: DDIM stochasticity η (0: deterministic)
ETA = 0.0

# --- training -------------------------------------------------------------------------------

#: network sizes (``engine.unet.UNET_PRESETS``), smallest first
PRESETS = ("tiny", "small", "base")
#: ``constant``: the peak rate after warm-up; ``cosine``: half-cosine decay from the peak after
#: warm-up to ``LR_MIN_FRACTION`` × peak at the last step (better final weights for a fixed
#: budget)
LR_SCHEDULES = ("constant", "cosine")
#: the schedule of new runs
LR_SCHEDULE = "cosine"
#: the schedule of checkpoints that do not record one (written before schedules existed)
LR_SCHEDULE_BEFORE = "constant"
#: peak learning rate from scratch and when fine-tuning a base model
LR = 1e-4
FINETUNE_LR = 3e-5
#: linear warm-up steps (at most a tenth of the run)
WARMUP_STEPS = 100
#: the cosine schedule's floor, as a fraction of the peak rate
LR_MIN_FRACTION = 0.1
#: validation patches and their sampling steps (few-step DDIM)
VAL_COUNT = 4
VAL_STEPS = 10

#: one set of defaults for the CLI and the widget (see the module doc)
TRAIN_DEFAULTS = {
    "steps": 2000,
    "batch": 8,
    "patch": 64,
    "lr_schedule": LR_SCHEDULE,
    "preset": "small",
    "val_every": 100,
    "val_fraction": 0.2,
    "ckpt_every": 500,
}
