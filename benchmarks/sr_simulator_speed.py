"""Time the SR-A simulator: one 128 → 256 widefield/GT pair on one core (target < 50 ms).

Run pinned to one core with single-threaded FFTs, e.g.::

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/sr_simulator_speed.py --n 100

Reports CPU time per pair (``time.process_time``, robust to other processes on a shared
machine) and wall time, for the default recipe mix and for each structure class.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_cvdm.physics.fluorescence import simulate_sr_pair
from napari_cvdm.physics.structures import STRUCTURE_NAMES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="pairs per setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    simulate_sr_pair(rng)  # warm caches and imports
    for structure in (None, *STRUCTURE_NAMES):
        cpu, wall = [], []
        for _ in range(args.n):
            c0, w0 = time.process_time(), time.perf_counter()
            simulate_sr_pair(rng, structure=structure)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        cpu_ms, wall_ms = np.array(cpu) * 1e3, np.array(wall) * 1e3
        print(
            f"{structure or 'SR-A mix':13s} n={args.n:4d}  CPU mean {cpu_ms.mean():5.1f} ms, "
            f"median {np.median(cpu_ms):5.1f}, p95 {np.percentile(cpu_ms, 95):5.1f} | "
            f"wall mean {wall_ms.mean():5.1f} ms"
        )


if __name__ == "__main__":
    main()
