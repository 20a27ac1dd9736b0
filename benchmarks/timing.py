"""End-to-end predict timing with the machine's fp32 matmul peak recorded beside it.

Measures, in one process: the fp32 matmul peak (GFLOP/s, best of a few 1024² matmuls), then
``workflows.predict.reconstruct`` of a bundled model on a W×W widefield input with the default
samples and steps: time to the first ``PartialResult`` (first visible mean/std), total wall time,
the λ-network calls, and the 1-minute load average before and after. ``--compare-fixed`` also
runs the old grouping (all samples in one group) right after, for an in-process A/B ratio.

    python benchmarks/timing.py --size 256 --repeats 1 --json benchmarks/results/timing.json

Timings only; tests never assert on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Best fp32 ``n×n`` matmul rate in GFLOP/s with torch's current thread count."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def run_once(model_name: str, size: int, samples: int, steps: int, group_size: int | None) -> dict:
    """One reconstruction; returns first-result and total seconds and λ calls."""
    import numpy as np

    from napari_cvdm.engine import registry
    from napari_cvdm.workflows.events import PartialResult
    from napari_cvdm.workflows.predict import ReconstructionParams, reconstruct

    loaded = registry.load(model_name)
    calls = []
    hook = loaded.model.lambda_net.register_forward_hook(lambda *a: calls.append(1))
    rng = np.random.default_rng(0)
    image = (100.0 + rng.gamma(2.0, 40.0, size=(size, size))).astype(np.float32)
    params = ReconstructionParams(
        n_samples=samples, steps=steps, device="cpu", group_size=group_size
    )
    start = time.perf_counter()
    first = None
    groups = []
    for event in reconstruct(image, loaded, params):
        if isinstance(event, PartialResult):
            groups.append(event.samples_done)
            if first is None:
                first = time.perf_counter() - start
    total = time.perf_counter() - start
    hook.remove()
    return {
        "first_result_s": first,
        "total_s": total,
        "lambda_calls": len(calls),
        "samples_after_each_group": groups,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sr-fluorescence-2x")
    parser.add_argument("--size", type=int, default=256, help="input edge (SR output is 2×)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", default="auto")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compare-fixed", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from napari_cvdm.engine.threads import resolve_threads

    load_before = os.getloadavg()[0]
    threads = resolve_threads(args.threads)
    torch.set_num_threads(threads)
    peak = matmul_peak_gflops()
    runs = [
        run_once(args.model, args.size, args.samples, args.steps, None) for _ in range(args.repeats)
    ]
    fixed = (
        run_once(args.model, args.size, args.samples, args.steps, args.samples)
        if args.compare_fixed
        else None
    )
    result = {
        "command": "python benchmarks/timing.py "
        + " ".join(f"{k}={v}" for k, v in vars(args).items()),
        "machine": {
            "cpu_cores": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": threads,
            "matmul_fp32_peak_gflops": round(peak, 1),
            "load_1min_before": load_before,
            "load_1min_after": os.getloadavg()[0],
        },
        "case": {
            "model": args.model,
            "input": args.size,
            "output": 2 * args.size,
            "samples": args.samples,
            "steps": args.steps,
        },
        "automatic_groups": runs,
        "median_first_result_s": statistics.median(r["first_result_s"] for r in runs),
        "median_total_s": statistics.median(r["total_s"] for r in runs),
        "one_group_of_all_samples": fixed,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
