"""Property-based fuzzing (hypothesis) of what hostile or clumsy users feed napari-cvdm.

Random shapes, dtypes, values (NaN, ±Inf, huge, negative, constant) and raw bytes go to the
readers (TIFF, MRC), the task adapters, the preflight checks and the CLI's option checks. Each
must give either a valid result or one :class:`~napari_cvdm.errors.InputError` (a ``UserError``)
whose message is one line — never another exception, never a traceback.

Example counts are small (the whole suite runs on 2 busy cores); hypothesis remembers failing
examples in its database between runs when one exists.
"""

import argparse
import contextlib
import io
import math
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from napari_cvdm.errors import InputError, UserError  # noqa: E402
from napari_cvdm.limits import LIMITS, check_args, check_value  # noqa: E402

FEW = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, np.complex64, np.bool_]
)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=12)


def _values(dtype):
    if np.issubdtype(dtype, np.floating):
        return st.floats(allow_nan=True, allow_infinity=True, width=np.dtype(dtype).itemsize * 8)
    return None  # hypothesis' defaults for the dtype (the whole integer range, booleans...)


def _arrays(dtype):
    values = _values(dtype)
    return hnp.arrays(dtype, SHAPES, elements=values) if values else hnp.arrays(dtype, SHAPES)


ARRAYS = DTYPES.flatmap(_arrays)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert isinstance(exc, UserError), f"{type(exc).__name__}: {text}"
    assert text.strip() and "\n" not in text.strip() and "Traceback" not in text, text
    return text


def _valid_or_one_line(call):
    """Run ``call``; a result, or one InputError line (any other exception fails the test)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return call()
    except UserError as exc:
        _one_line(exc)
        return None


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# --- readers ----------------------------------------------------------------------------


@FEW
@given(array=ARRAYS, counter=st.integers(0, 10**9))
def test_tiff_reader_gives_a_finite_array_or_one_line(folder, array, counter):
    import tifffile

    from napari_cvdm.io import read_image

    path = folder / f"t{counter}.tif"
    try:
        tifffile.imwrite(path, array)
    except (ValueError, TypeError):  # tifffile cannot store it: nothing to read
        return
    result = _valid_or_one_line(lambda: read_image(path))
    if result is not None:
        data, meta = result
        assert data.size > 0
        if np.issubdtype(data.dtype, np.inexact):
            assert np.isfinite(data).all()  # NaN/Inf never pass the reader
        assert meta.pixel_size_um is None or all(p > 0 for p in meta.pixel_size_um)


@FEW
@given(
    payload=st.binary(min_size=0, max_size=2048),
    suffix=st.sampled_from([".tif", ".tiff", ".ome.tif", ".mrc", ".png", ".TIF"]),
    counter=st.integers(0, 10**9),
)
def test_garbage_files_give_one_line(folder, payload, suffix, counter):
    from napari_cvdm.io import read_image

    path = folder / f"g{counter}{suffix}"
    path.write_bytes(payload)
    _valid_or_one_line(lambda: read_image(path))


@FEW
@given(
    array=hnp.arrays(
        st.sampled_from([np.int8, np.int16, np.float32, np.uint16]),
        hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=10),
    ),
    counter=st.integers(0, 10**9),
)
def test_mrc_reader_gives_a_finite_array_or_one_line(folder, array, counter):
    mrcfile = pytest.importorskip("mrcfile")
    from napari_cvdm.io import read_image

    path = folder / f"m{counter}.mrc"
    try:
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(array)
    except (ValueError, TypeError):
        return
    result = _valid_or_one_line(lambda: read_image(path))
    if result is not None:
        data, _meta = result
        assert data.size > 0


# --- task adapters and preflight --------------------------------------------------------


@pytest.fixture(scope="module")
def metadata():
    from napari_cvdm.engine.registry import make_untrained_model

    return {task: make_untrained_model(task, "tiny").metadata for task in ("sr", "qpi")}


@FEW
@given(
    array=ARRAYS,
    task=st.sampled_from(["sr", "qpi"]),
    pixel_size=st.one_of(st.none(), st.floats(0.005, 20.0)),
    offset=st.one_of(st.none(), st.floats(0.0, 65535.0)),
)
def test_adapters_accept_or_refuse_in_one_line(metadata, array, task, pixel_size, offset):
    from napari_cvdm.workflows.preflight import check_job, check_sr_offset
    from napari_cvdm.tasks import make_adapter

    meta = metadata[task]
    options = {"pixel_size_um": pixel_size}
    if task == "sr":
        options["offset_adu"] = offset

    def prepare():
        check_job(task, array.shape, meta, options, 2, "fuzz", available=2**40)
        check_sr_offset(task, array, meta, offset, "fuzz")
        return make_adapter(task, array, meta, **{k: v for k, v in options.items() if v})

    adapter = _valid_or_one_line(prepare)
    if adapter is not None and adapter.frames:
        frame = adapter.prepare(0)
        assert np.isfinite(np.asarray(frame.condition)).all()


@FEW
@given(
    shape=st.lists(st.integers(0, 100_000), min_size=0, max_size=5),
    task=st.sampled_from(["sr", "qpi"]),
    pixel_size=st.one_of(st.none(), st.floats(1e-6, 1e6)),
    samples=st.integers(1, 1000),
)
def test_preflight_job_refuses_or_estimates(metadata, shape, task, pixel_size, samples):
    from napari_cvdm.workflows.preflight import check_job

    result = _valid_or_one_line(
        lambda: check_job(
            task,
            shape,
            metadata[task],
            {"pixel_size_um": pixel_size},
            samples,
            "x",
            available=2**36,
        )  # fmt: skip
    )
    if result is not None:
        assert math.isfinite(result["bytes"]) and result["bytes"] <= 0.8 * 2**36


@FEW
@given(
    array=hnp.arrays(
        np.float64, hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=16),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    ),
    offset=st.floats(allow_nan=True, allow_infinity=True),
    user=st.booleans(),
)  # fmt: skip
def test_offset_check_refuses_or_notes_in_one_line(array, offset, user):
    from napari_cvdm.imagekind import check_offset

    note = _valid_or_one_line(lambda: check_offset(array, offset, "x", given=user))
    assert note is None or "\n" not in note


# --- the CLI's option checks --------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 1e-9, 62.6, 525, 2**63, float("nan")]),
)
ODD = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.lists(st.integers(), max_size=2))


@settings(max_examples=200, deadline=None, database=None)
@given(name=st.sampled_from(sorted(LIMITS)), value=st.one_of(NUMBERS, ODD))
def test_check_value_accepts_only_the_range(name, value):
    spec = LIMITS[name]
    try:
        out = check_value(name, value)
    except InputError as exc:
        line = _one_line(exc)
        assert line.startswith("--") and " must be " in line
        return
    if value is None:
        return
    assert out == value and not isinstance(value, bool)
    x = float(value)
    assert math.isfinite(x)
    assert (spec.zero_ok and x == 0) or (
        (x > spec.low if spec.open_low else x >= spec.low) and x <= spec.high
    )
    assert not spec.integer or x.is_integer()


def _commands():
    from napari_cvdm.commands import baseline, predict, train

    return {
        "predict": predict.OPTION_LIMITS,
        "train": train.OPTION_LIMITS,
        "baseline": baseline.OPTION_LIMITS,
        "simulate": {
            k: k
            if k in LIMITS
            else {"dz": "dz_um", "wavelength": "wavelength_um", "pixel_size": "pixel_size_um"}[k]
            for k in (
                "n",
                "seed",
                "size",
                "photons",
                "planes",
                "dz",
                "wavelength",
                "na",
                "pixel_size",
            )
        },  # fmt: skip
    }


@settings(max_examples=60, deadline=None, database=None)
@given(
    command=st.sampled_from(["predict", "train", "baseline", "simulate"]),
    data=st.data(),
    text=st.one_of(
        NUMBERS.map(str),
        st.sampled_from(["nan", "inf", "-inf", "1e309", "0x10", "", " ", "1_000", "½"]),
        st.text(max_size=6),
    ),
)
def test_cli_options_parse_and_check_in_one_line(command, data, text):
    """Any text for any checked option: argparse's one-line error (exit 2), or check_args'
    one InputError line, or a value inside its range."""
    from napari_cvdm.cli import build_parser

    limits = _commands()[command]
    attr = data.draw(st.sampled_from(sorted(limits)))
    flag = "--" + attr.removeprefix("physics_").removesuffix("_um").replace("_", "-")
    required = {
        "predict": ["predict", "in.tif", "--model", "m", "--output-dir", "o"],
        "train": ["train", "--task", "sr", "--data", "synthetic", "--output", "m.safetensors"],
        "baseline": ["baseline", "rl", "in.tif", "--output-dir", "o"],
        "simulate": ["simulate", "sr", "--output-dir", "o"],
    }[command]
    parser = build_parser()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args([*required, f"{flag}={text}"])
    except SystemExit as exc:
        assert exc.code == 2
        err = stderr.getvalue().strip()
        assert len(err.splitlines()) == 1 and "error:" in err, err
        return
    assert isinstance(args, argparse.Namespace)
    try:
        check_args(args, limits)
    except InputError as exc:
        assert flag in _one_line(exc)
        return
    value = getattr(args, attr)
    if isinstance(value, int | float):
        assert math.isfinite(float(value))
