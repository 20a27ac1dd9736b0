"""Peak resident memory of `napari-cvdm predict` against the input size.

For each input edge W this writes a W×W uint16 widefield TIFF (Poisson noise over a smooth
background, the model's own pixel size so no resampling happens), runs the CLI in a child process
(``--samples 1 --steps 1`` by default: memory, not quality) and reads the child's peak RSS from
``os.wait4`` (``ru_maxrss``, the kernel's high-water mark of that one process), with its wall time.

    nice -n 10 .venv/bin/python benchmarks/memory.py --sizes 256 512 1024 2048 --threads 1 \
        --json benchmarks/results/memory.json

Measurements only; tests never assert on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_input(path: Path, size: int, pixel_size_um: float, seed: int = 0) -> Path:
    """A W×W uint16 widefield-like image (offset 100 ADU + Poisson over smooth blobs)."""
    from napari_cvdm.io import write_tiff

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size, 1)
    signal = 40.0 + 60.0 * (np.sin(23.0 * xx) * np.cos(17.0 * yy)) ** 2
    data = (100 + rng.poisson(signal)).astype(np.uint16)
    return write_tiff(path, data, pixel_size_um, {})


def run_predict(
    image: Path, out: Path, model: str, samples: int, steps: int, threads: str, extra: list[str]
) -> dict:
    """Run the CLI in a child; returns its exit code, peak RSS (bytes) and wall seconds."""
    cmd = [
        sys.executable,
        "-c",
        "import sys; from napari_cvdm.cli import main; sys.exit(main())",
        "predict",
        str(image),
        "--model",
        model,
        "--output-dir",
        str(out),
        "--samples",
        str(samples),
        "--steps",
        str(steps),
        "--device",
        "cpu",
        "--threads",
        threads,
        "--overwrite",
        *extra,
    ]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stdout, stderr = child.stdout.read(), child.stderr.read()
    child.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": child.returncode,
        "peak_rss_bytes": int(usage.ru_maxrss) * 1024,  # kB on Linux
        "wall_s": round(wall, 1),
        "stderr_tail": stderr.strip().splitlines()[-1:] if child.returncode else [],
        "outputs": stdout.split(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--model", default="sr-fluorescence-2x")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--threads", default="1")
    parser.add_argument("--tile", type=int, default=None, help="--tile for predict (default auto)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from napari_cvdm.engine import registry

    header = registry.header(args.model).to_dict()
    pixel = float(header["physics"]["pixel_size_um"])
    extra = [] if args.tile is None else ["--tile", str(args.tile)]
    rows = []
    print(f"{'input':>7} {'output':>7} {'tile':>5} {'peak RSS':>9} {'wall':>7}  rc")
    with tempfile.TemporaryDirectory(prefix="cvdm-memory-") as tmp:
        for size in args.sizes:
            image = make_input(Path(tmp) / f"wf{size}.tif", size, pixel)
            out = Path(tmp) / "out"
            result = run_predict(
                image, out, args.model, args.samples, args.steps, args.threads, extra
            )
            for name in result.pop("outputs"):
                Path(name).unlink(missing_ok=True)
            image.unlink()
            row = {"input": size, "output": 2 * size, "tile": args.tile or "auto", **result}
            rows.append(row)
            gb = row["peak_rss_bytes"] / 2**30
            print(
                f"{size:>6}² {2 * size:>6}² {row['tile']!s:>5} {gb:>7.2f} GB {row['wall_s']:>6.1f}s"
                f"  {row['rc']} {' '.join(row['stderr_tail'])}",
                flush=True,
            )
    if args.json:
        record = {
            "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "model": args.model,
            "samples": args.samples,
            "steps": args.steps,
            "threads": args.threads,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "load_avg_after": os.getloadavg(),
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
