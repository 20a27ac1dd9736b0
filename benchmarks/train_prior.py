"""Train (or continue) the unconditional fluorescence prior ``prior-fluorescence``.

    nice -n 19 .venv/bin/python benchmarks/train_prior.py --steps 2400 \
        --output /tmp/prior/prior-fluorescence.safetensors --checkpoint /tmp/prior/prior.ckpt
    # continue: add --resume /tmp/prior/prior.ckpt (cumulative steps/wall time are kept)

Prints one line per logged step and per validation (denoising PSNR at σ = 0.05 … 1 on
held-out clean images); the model file holds the EMA weights (float16 by default).
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--pool", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=300)
    parser.add_argument("--validate-every", type=int, default=600)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--reset-ema", action="store_true", help="on resume: EMA from live weights")
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from napari_cvdm.workflows.events import Finished, LossReport, Validation
    from napari_cvdm.workflows.prior_train import PriorTrainConfig, train_prior

    cfg = PriorTrainConfig(
        output=args.output,
        checkpoint=args.checkpoint,
        resume=args.resume,
        reset_ema=args.reset_ema,
        steps=args.steps,
        preset=args.preset,
        batch=args.batch,
        patch=args.patch,
        lr=args.lr,
        pool=args.pool,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every,
        log_every=args.log_every,
        dtype=args.dtype,
        max_wall_s=None if args.max_minutes is None else 60.0 * args.max_minutes,
    )
    t0 = time.perf_counter()
    for event in train_prior(cfg):
        if isinstance(event, LossReport):
            print(
                f"step {event.step} loss {event.losses['total']:.4f} "
                f"t {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
        elif isinstance(event, Validation):
            print(f"validation step {event.step} {event.metrics}", flush=True)
        elif isinstance(event, Finished):
            training = event.info["metadata"]["training"]
            print(
                f"wrote {event.result}: {training['cumulative_steps']} steps, "
                f"{training['cumulative_wall_time_s']} s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
