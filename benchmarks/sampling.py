"""Sampler benchmark: per-step time and peak memory of the CVDM sampler.

Cases: the ``small`` preset (random weights: speed does not depend on the values) at 256², 512²
and 1024² (tiled, 256-pixel tiles) on the target grid, with 1 and 8 samples, on the CPU and on
CUDA when present. Per-step time is the median over the reverse steps of up to ``repeats`` runs
(fewer once a case has used ``case_budget_s``), leaving out each run's first step (it also
computes λ(x); reported as ``first_step_s``); a one-step warm-up run of the same shape comes
first. Peak memory: CUDA ``torch.cuda.max_memory_allocated``; CPU the peak resident set size
above the level before the run (sampled every 5 ms from /proc, else ``ru_maxrss``).

Also times the headline target end to end through the workflow (normalisation, sampling,
schedule maps): SR ``small``, 128² widefield → 256², 4 samples × 20 steps.

    python benchmarks/sampling.py                 # full table (minutes on a 2-core CPU)
    python benchmarks/sampling.py --quick         # tiny sizes: checks that everything runs
    python benchmarks/sampling.py --json out.json --devices cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from napari_cvdm.engine.cvdm import CVDM, CVDMConfig, count_parameters
from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.engine.sampling import sample
from napari_cvdm.events import Finished, Progress
from napari_cvdm.workflows.predict import ReconstructionParams, reconstruct

FULL = {
    "sizes": (256, 512, 1024),
    "samples": (1, 8),
    "steps": 5,
    "repeats": 3,
    "tile_from": 1024,
    "tile": 256,
    "headline": (128, 4, 20),
    "case_budget_s": 120.0,
}
QUICK = {
    "sizes": (32, 64),
    "samples": (1, 2),
    "steps": 2,
    "repeats": 1,
    "tile_from": 64,
    "tile": 32,
    "headline": (16, 2, 2),
    "case_budget_s": 10.0,
}


class PeakRSS:
    """Peak resident set size (bytes) of this process while the block runs, above its start."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._proc = Path("/proc/self/statm")
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        if self._proc.exists():
            return int(self._proc.read_text().split()[1]) * self._page
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self._rss()
        self.peak = self.start
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def delta(self) -> int:
        return self.peak - self.start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(
    model: CVDM, device: torch.device, size: int, n: int, steps: int, tile: int | None
) -> dict:
    """One run: per-step times (s) and peak memory (bytes) of ``sample`` on a size² condition."""
    x = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    times: list[float] = []
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    watcher = PeakRSS() if device.type == "cpu" else None
    if watcher:
        watcher.__enter__()
    try:
        _sync(device)
        last = time.perf_counter()
        for event in sample(
            model,
            x,
            n_samples=n,
            steps=steps,
            sampler="ancestral",
            seed=0,
            tile=tile if tile else 0,
            group_size=n,
        ):
            if isinstance(event, Progress):
                _sync(device)
                now = time.perf_counter()
                times.append(now - last)
                last = now
    finally:
        if watcher:
            watcher.__exit__()
    peak = watcher.delta if watcher else torch.cuda.max_memory_allocated(device) - base
    return {"step_times_s": times, "peak_bytes": int(peak)}


def bench_device(device: torch.device, cfg: dict) -> list[dict]:
    torch.manual_seed(0)
    model = CVDM(CVDMConfig(condition_channels=1, target_channels=1, preset="small", residual=True))
    model.eval().to(device)
    rows = []
    for size in cfg["sizes"]:
        tile = cfg["tile"] if size >= cfg["tile_from"] else None
        for n in cfg["samples"]:
            run_case(model, device, size, n, 1, tile)  # warm-up: kernels primed for this shape
            runs, started = [], time.perf_counter()
            while len(runs) < cfg["repeats"] and (
                not runs or time.perf_counter() - started < cfg["case_budget_s"]
            ):
                runs.append(run_case(model, device, size, n, cfg["steps"], tile))
            # the first interval of a run also holds the set-up (λ map, ρ grid): report it apart
            steps = [t for r in runs for t in (r["step_times_s"][1:] or r["step_times_s"])]
            first = statistics.median(r["step_times_s"][0] for r in runs)
            row = {
                "device": str(device),
                "preset": "small",
                "size": size,
                "n_samples": n,
                "tile": tile,
                "steps_per_run": cfg["steps"],
                "runs": len(runs),
                "median_step_s": statistics.median(steps),
                "first_step_s": first,
                "median_step_per_sample_s": statistics.median(steps) / n,
                "peak_memory_mb": max(r["peak_bytes"] for r in runs) / 2**20,
            }
            rows.append(row)
            print(
                f"  {device} {size}² n={n} tile={tile}: {row['median_step_s']:.3f} s/step, "
                f"{row['peak_memory_mb']:.0f} MB",
                file=sys.stderr,
            )
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def headline(device: torch.device, cfg: dict) -> dict:
    """End-to-end workflow time: SR small, widefield size² → (2·size)², n samples × steps."""
    size, n, steps = cfg["headline"]
    loaded = make_untrained_model("sr", "small")
    rng = np.random.default_rng(0)
    image = (100 + rng.poisson(200, (size, size))).astype(np.float32)
    params = ReconstructionParams(n_samples=n, steps=steps, seed=0, device=str(device), tile=0)
    start = time.perf_counter()
    result = None
    for event in reconstruct(image, loaded, params):
        if isinstance(event, Finished):
            result = event.result
    seconds = time.perf_counter() - start
    assert result is not None and result.mean.shape == (2 * size, 2 * size)
    return {
        "device": str(device),
        "preset": "small",
        "output_size": 2 * size,
        "n_samples": n,
        "steps": steps,
        "seconds": seconds,
    }


def markdown(rows: list[dict], heads: list[dict]) -> str:
    lines = [
        "| device | image | tile | samples | s / step | s / step / sample | peak memory (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['size']}² | {r['tile'] or '-'} | {r['n_samples']} | "
            f"{r['median_step_s']:.3f} | {r['median_step_per_sample_s']:.3f} | "
            f"{r['peak_memory_mb']:.0f} |"
        )
    for h in heads:
        lines.append(
            f"\nHeadline ({h['device']}): `{h['preset']}`, {h['output_size']}², "
            f"{h['n_samples']} samples × "
            f"{h['steps']} steps end to end: **{h['seconds']:.1f} s**"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test")
    parser.add_argument(
        "--devices", default="auto", help="comma list: cpu,cuda (auto: cpu + cuda if present)"
    )
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "sampling.json"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs per case (default 3; quick 1)"
    )
    parser.add_argument("--no-headline", action="store_true", help="skip the end-to-end timing")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.repeats:
        cfg["repeats"] = args.repeats
    names = (
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        if args.devices == "auto"
        else args.devices.split(",")
    )
    devices = [torch.device(d) for d in names]
    rows, heads = [], []
    for device in devices:
        rows += bench_device(device, cfg)
        if not args.no_headline:
            heads.append(headline(device, cfg))
    table = markdown(rows, heads)
    print(table)
    small = CVDM(CVDMConfig(preset="small"))
    report = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "quick": args.quick,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "small_parameters": count_parameters(small),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": rows,
        "headline": heads,
        "markdown": table,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(f".{args.json.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, args.json)
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
