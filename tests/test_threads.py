"""Thread-count choice and --threads validation (engine.threads)."""

import pytest

from napari_cvdm.engine.threads import auto_threads, parse_threads, resolve_threads
from napari_cvdm.errors import InputError


@pytest.mark.parametrize(
    "cores, load, expected", [(2, 0.1, 2), (2, 1.0, 1), (2, 3.5, 1), (8, 2.2, 6), (1, 0.0, 1)]
)
def test_auto_threads_leaves_room_for_other_load(cores, load, expected):
    assert auto_threads(cores, load) == expected


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5", 0])
def test_bad_thread_counts_are_input_errors(value):
    with pytest.raises(InputError, match="--threads"):
        parse_threads(value)


def test_auto_and_explicit():
    assert parse_threads("auto") is None and parse_threads(None) is None
    assert parse_threads("3") == 3 and resolve_threads(2) == 2
    assert resolve_threads("auto") >= 1
