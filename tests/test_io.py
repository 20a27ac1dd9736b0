"""TIFF/OME-TIFF/MRC round trips with pixel sizes, paired folders, atomic writes."""

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile

from napari_cvdm import io
from napari_cvdm.errors import InputError
from napari_cvdm.mrc import read_mrc_fallback

MT_MRC = Path(__file__).parent / "data" / "rdlsim-mt" / "MT.mrc"


def _stack(dtype=np.float32, shape=(3, 20, 24)):
    rng = np.random.default_rng(0)
    return (rng.random(shape) * 1000).astype(dtype)


@pytest.mark.parametrize("ome", [False, True])
@pytest.mark.parametrize("sizes", [(0.5, 0.0313, 0.0626), (0.21, 0.21)])
def test_tiff_round_trip_is_bit_exact_with_pixel_sizes(tmp_path, ome, sizes):
    data = _stack() if len(sizes) == 3 else _stack()[0]
    path = io.write_tiff(tmp_path / "x.tif", data, sizes, ome=ome)
    back, meta = io.read_image(path)
    assert back.dtype == np.float32 and np.array_equal(back, data)
    np.testing.assert_allclose(meta.pixel_size_um, sizes, atol=1e-6, rtol=0)
    assert meta.axes == ("ZYX" if len(sizes) == 3 else "YX")
    assert meta.extra["format"] == ("ome-tiff" if ome else "imagej-tiff")
    assert meta.extra["pixel_size_source"] == ("ome" if ome else "imagej")


def test_ome_tiff_has_resolution_tags_in_px_per_cm(tmp_path):
    path = io.write_tiff(tmp_path / "x.ome.tif", _stack()[0], (0.0313, 0.0626))  # implies OME
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        tags = tif.pages[0].tags
        num, den = tags["XResolution"].value
        assert num / den == pytest.approx(1e4 / 0.0626)
        assert tags["ResolutionUnit"].value == 3  # centimetre


def test_uint16_and_float64_dtypes(tmp_path):
    raw = (np.arange(400).reshape(20, 20) + 100).astype(np.uint16)
    back, _ = io.read_image(io.write_tiff(tmp_path / "raw.tif", raw, 0.0626))
    assert back.dtype == np.uint16 and np.array_equal(back, raw)
    values = np.linspace(-3.5, 1e6, 400).reshape(20, 20)  # never clipped or rescaled
    back, _ = io.read_image(io.write_tiff(tmp_path / "f.tif", values, 0.1))
    assert back.dtype == np.float32 and np.array_equal(back, values.astype(np.float32))


@pytest.mark.parametrize("ome", [False, True])
def test_provenance_round_trip(tmp_path, ome):
    provenance = {
        "model": "cvdm-sr-tiny",
        "steps": 50,
        "optics": {"na": 1.49, "wavelength_um": 0.525},
        "note": "line1\nline2 = µm <&>",
    }
    path = io.write_tiff(tmp_path / "p.tif", _stack()[0], 0.05, metadata=provenance, ome=ome)
    _, meta = io.read_image(path)
    assert meta.extra["provenance"] == provenance


def test_imagej_hyperstack_axes_and_spacing(tmp_path):
    data = _stack(shape=(2, 3, 16, 16))
    path = io.write_tiff(tmp_path / "h.tif", data, (0.3, 0.1, 0.1), axes="TZYX")
    back, meta = io.read_image(path)
    assert back.shape == data.shape and meta.axes == "TZYX"
    assert meta.pixel_size_um == pytest.approx((0.3, 0.1, 0.1))


def test_plain_tiff_has_unknown_pixel_size_and_override(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, _stack()[0], resolution=(72, 72))  # 72 dpi is not a pixel size
    _, meta = io.read_image(path)
    assert meta.pixel_size_um is None
    _, meta = io.read_image(path, pixel_size_um=0.108)
    assert meta.pixel_size_um == (0.108, 0.108) and meta.extra["pixel_size_source"] == "user"


def test_ome_in_nanometres_is_converted(tmp_path):
    path = tmp_path / "nm.ome.tif"
    tifffile.imwrite(
        path,
        _stack()[0],
        ome=True,
        metadata={"PhysicalSizeX": 65.0, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 65.0,
                  "PhysicalSizeYUnit": "nm"},
    )  # fmt: skip
    _, meta = io.read_image(path)
    assert meta.pixel_size_um == pytest.approx((0.065, 0.065))


def test_read_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        io.read_image(tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="Could not read"):
        io.read_image(tmp_path / "junk.tif")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(InputError, match="unsupported"):
        io.read_image(tmp_path / "x.png")
    bad = _stack()[0]
    bad[2, 2] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", bad)
    with pytest.raises(InputError, match="NaN"):
        io.read_image(tmp_path / "nan.tif")
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 5), np.float32))
    with pytest.raises(InputError):
        io.read_image(tmp_path / "empty.tif")


def test_mrc_written_in_test_reads_back_exactly(tmp_path):
    data = (np.random.default_rng(1).random((9, 32, 40)) * 60000).astype(np.uint16)
    with mrcfile.new(tmp_path / "raw.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 626.0  # Å, ignored: BioSR headers are unreliable
    back, meta = io.read_image(tmp_path / "raw.mrc")
    assert back.dtype == np.uint16 and np.array_equal(back, data)
    assert meta.pixel_size_um == (0.0626, 0.0626) and meta.extra["raw_sim_frames"]
    single = np.random.default_rng(2).random((16, 16)).astype(np.float32)
    with mrcfile.new(tmp_path / "SIM_gt.mrc") as mrc:
        mrc.set_data(single)
    back, meta = io.read_image(tmp_path / "SIM_gt.mrc", pixel_size_um=None)
    assert np.array_equal(back, single) and meta.axes == "YX"
    assert meta.pixel_size_um == (0.0313, 0.0313)


def test_fallback_reader_handles_old_big_endian_priism_header(tmp_path):
    data = (np.arange(2 * 6 * 5) * 997 % 65535).astype(">u2").reshape(2, 6, 5)
    header = np.zeros(256, ">i4")
    header[:4] = (5, 6, 2, 6)
    header[23] = 92  # extended header bytes
    raw = header.tobytes() + b"\x00" * 92 + data.tobytes()
    (tmp_path / "old.mrc").write_bytes(raw)
    back, info = read_mrc_fallback(tmp_path / "old.mrc")
    assert info["byte_order"] == "big" and info["extended_header_bytes"] == 92
    assert np.array_equal(back, data) and back.dtype.isnative
    (tmp_path / "cut.mrc").write_bytes(raw[:-10])
    with pytest.raises(InputError, match="truncated"):
        read_mrc_fallback(tmp_path / "cut.mrc")


@pytest.mark.skipif(not MT_MRC.exists(), reason="shared rDL-SIM example not present")
def test_real_rdlsim_mrc_reads_and_gives_widefield():
    frames, meta = io.read_image(MT_MRC)
    assert frames.shape == (9, 256, 256) and frames.dtype == np.uint16
    assert meta.pixel_size_um == (0.0626, 0.0626) and meta.axes == "IYX"
    fallback, _ = read_mrc_fallback(MT_MRC)
    assert np.array_equal(fallback, frames)
    widefield = io.widefield_from_raw_sim(frames)
    assert widefield.shape == (256, 256) and widefield.dtype == np.float32
    np.testing.assert_allclose(widefield, frames.astype(np.float64).mean(0), rtol=1e-6)
    with pytest.raises(InputError, match="9 frames"):
        io.widefield_from_raw_sim(frames[:3])


def _touch_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        tifffile.imwrite(folder / name, np.zeros((4, 4), np.float32))


def test_paired_folders(tmp_path):
    _touch_images(tmp_path / "input", ["a.tif", "b.ome.tif", "c.tiff"])
    _touch_images(tmp_path / "target", ["a.tif", "b.tif", "c.ome.tiff", "notes.txt"])
    pairs = io.find_image_pairs(tmp_path)
    assert [p.name for p in pairs] == ["a", "b", "c"]
    assert pairs[1].input_path.name == "b.ome.tif" and pairs[1].target_path.name == "b.tif"


def test_paired_folders_mismatch_and_errors(tmp_path):
    _touch_images(tmp_path / "input", ["a.tif", "b.tif", "x.tif"])
    _touch_images(tmp_path / "target", ["a.tif", "b.tif", "y.tif"])
    with pytest.raises(InputError, match=r"only in input/: x.*only in target/: y"):
        io.find_image_pairs(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        io.find_image_pairs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no input/ and target/"):
        io.find_image_pairs(tmp_path / "empty")
    _touch_images(tmp_path / "dup" / "input", ["a.tif", "a.ome.tif"])
    _touch_images(tmp_path / "dup" / "target", ["a.tif"])
    with pytest.raises(InputError, match="two images named 'a'"):
        io.find_image_pairs(tmp_path / "dup")


def test_flat_simulate_layout_pairs(tmp_path):
    _touch_images(tmp_path, ["0000_input.tif", "0000_target.tif", "0001_input.tif"])
    with pytest.raises(InputError, match="0001"):
        io.find_image_pairs(tmp_path)
    _touch_images(tmp_path, ["0001_target.tif"])
    assert [p.name for p in io.find_image_pairs(tmp_path)] == ["0000", "0001"]


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.tif"

    def failing_imwrite(path, data, **kwargs):
        Path(path).write_bytes(b"half a tiff")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", failing_imwrite)
    with pytest.raises(OSError, match="disk full"):
        io.write_tiff(target, _stack()[0], 0.1)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    target = io.write_tiff(tmp_path / "out.tif", _stack()[0], 0.1)
    before = target.read_bytes()
    monkeypatch.setattr(tifffile, "imwrite", lambda *a, **k: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        io.write_tiff(target, _stack()[1], 0.1)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_write_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        io.write_tiff(tmp_path / "no" / "x.tif", _stack()[0], 0.1)
    with pytest.raises(InputError, match="empty"):
        io.write_tiff(tmp_path / "x.tif", np.zeros((0, 4)), 0.1)
    with pytest.raises(InputError, match="pixel_size_um"):
        io.write_tiff(tmp_path / "x.tif", _stack()[0], (-1.0, 0.1))
    assert list(tmp_path.iterdir()) == []


def test_numpy_values_in_provenance_become_json(tmp_path):
    provenance = {"na": np.float32(1.5), "n": np.int64(3), "z": np.array([-1.0, 1.0]),
                  "big": np.zeros((100, 100)), "where": tmp_path}  # fmt: skip
    _, meta = io.read_image(io.write_tiff(tmp_path / "n.tif", _stack()[0], 0.1, provenance))
    back = meta.extra["provenance"]
    assert back["na"] == 1.5 and back["n"] == 3 and back["z"] == [-1.0, 1.0]
    assert back["big"].startswith("<array shape=[100, 100]") and back["where"] == str(tmp_path)
