"""Sample-group sizes chosen from measured throughput (progressive results on every device).

The first group is one sample, so the first mean appears after one sample's reverse steps (the
least any device can do). After each group the measured seconds per sample decide the next size:
a larger group is tried only while one group still finishes within ``refresh_s`` and batching
made the last size cheaper per sample (a GPU); on a CPU one sample per group is usually both the
fastest and the most responsive (measured on 2 cores: 1.24× faster than all samples at once), so
the sizer stays at one there. Sizes never exceed ``max_group`` (what fits in memory).

Pure logic, no torch: tests feed it times.
"""

from __future__ import annotations

__all__ = ["REFRESH_S", "GroupSizer"]

#: a group should finish within this many seconds, so the mean/std refresh at least this often
REFRESH_S = 5.0
#: a larger group counts as faster only when it saves this fraction of time per sample
GAIN = 0.1


class GroupSizer:
    """Next group size from the seconds per sample measured so far.

    ``n_samples``: samples to draw in all; ``max_group``: most samples per group (memory);
    ``refresh_s``: longest wanted time per group (when one sample takes longer, groups of one).
    Call :meth:`next_size`, run that group, then :meth:`record` its size and compute seconds.
    """

    def __init__(self, n_samples: int, max_group: int | None = None, refresh_s: float = REFRESH_S):
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.remaining = int(n_samples)
        self.max_group = max(1, int(max_group or n_samples))
        self.refresh_s = float(refresh_s)
        self.per_sample: dict[int, float] = {}  # group size -> seconds per sample (latest)
        self.sizes: list[int] = []

    def _best(self) -> int:
        return min(self.per_sample, key=lambda size: (self.per_sample[size], size))

    def next_size(self) -> int:
        """Size of the next group (≥ 1, ≤ the samples left); 0 when none are left."""
        if self.remaining <= 0:
            return 0
        if not self.per_sample:
            size = 1
        else:
            best = self._best()
            largest = max(self.per_sample)
            size = best
            # batching still paid off at the largest size tried (or only one size was tried)
            scaling = largest == best and (
                len(self.per_sample) == 1
                or self.per_sample[largest]
                < (1.0 - GAIN) * min(v for s, v in self.per_sample.items() if s < largest)
            )
            if scaling and 2 * largest * self.per_sample[best] <= self.refresh_s:
                size = 2 * largest
            elif size * self.per_sample[best] > self.refresh_s:  # stay responsive
                fits = int(self.refresh_s // self.per_sample[best])
                size = max(1, min(size, fits))
        return max(1, min(size, self.max_group, self.remaining))

    def record(self, size: int, seconds: float) -> None:
        """A group of ``size`` samples took ``seconds`` of compute (all its reverse steps)."""
        size = int(size)
        self.per_sample[size] = max(float(seconds), 1e-9) / size
        self.remaining -= size
        self.sizes.append(size)
