"""Group sizes chosen from measured throughput (engine.group_sizer), fed with synthetic times."""

import pytest

from napari_cvdm.engine.group_sizer import GroupSizer


def _run(sizer, seconds_per_group):
    sizes = []
    while (size := sizer.next_size()) > 0:
        sizes.append(size)
        sizer.record(size, seconds_per_group(size))
    return sizes


def test_first_group_is_one_sample():
    assert GroupSizer(8).next_size() == 1


def test_cpu_like_linear_cost_stays_at_one_sample():
    # 4 s per sample (a CPU at 256² → 512²): doubling would exceed the refresh time
    assert _run(GroupSizer(4, refresh_s=5.0), lambda g: 4.0 * g) == [1, 1, 1, 1]


def test_gpu_like_batching_grows_groups_within_memory():
    # nearly free batching: 0.2 s per group whatever its size
    assert _run(GroupSizer(16, max_group=4, refresh_s=5.0), lambda g: 0.2) == [1, 2, 4, 4, 4, 1]


def test_no_gain_from_batching_goes_back_to_the_best_size():
    sizer = GroupSizer(10, refresh_s=100.0)
    assert _run(sizer, lambda g: 1.0 * g) == [1, 2] + [1] * 7


def test_slow_groups_shrink_to_the_refresh_time():
    sizer = GroupSizer(6, refresh_s=5.0)
    sizer.per_sample = {4: 2.0}  # a 4-group took 8 s
    assert sizer.next_size() == 2


def test_bad_count():
    with pytest.raises(ValueError):
        GroupSizer(0)
