"""Tests for napari_cvdm.engine.modelfile: safetensors model files with a validated header."""

import json
import struct

import pytest
import torch

from napari_cvdm.engine.cvdm import CVDM, CVDMConfig
from napari_cvdm.engine.modelfile import (
    HEADER_KEY,
    header_digest,
    load_model,
    read_metadata,
    save_model,
    validate_metadata,
)
from napari_cvdm.errors import ModelFileError
from napari_cvdm.tasks.qpi import rule as qpi_rule
from napari_cvdm.tasks.sr import rule as sr_rule


def _model(task="sr", seed=0):
    torch.manual_seed(seed)
    cond = {"sr": 1, "qpi": 3}[task]  # QPI: [TIE prior, c−, c+]
    return CVDM(
        CVDMConfig(condition_channels=cond, target_channels=1, preset="tiny", residual=True)
    )


def _meta(task="sr"):
    physics = (
        {"pixel_size_um": 0.0626, "upscale": 2.0, "wavelength_um": 0.525, "na": 1.49}
        if task == "sr"
        else {"pixel_size_um": 0.21, "wavelength_um": 0.521, "dz_um": 1.0}
    )
    return {
        "task": task,
        "name": f"test-{task}",
        "description": "a test model",
        "normalization": sr_rule() if task == "sr" else qpi_rule(),
        "physics": physics,
        "training": {"steps": 0, "data": "none"},
    }


def _split(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _join(path, header, data):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _edit_header(path, edit):
    """Rewrite the napari-cvdm JSON document inside a saved file (as a tamperer would)."""
    header, data = _split(path)
    header["__metadata__"][HEADER_KEY] = edit(header["__metadata__"][HEADER_KEY])
    _join(path, header, data)


@pytest.mark.parametrize("task", ["sr", "qpi"])
def test_round_trip_float32_is_bit_exact(tmp_path, task):
    model = _model(task)
    path = save_model(tmp_path / "m.safetensors", model, _meta(task), dtype="float32")
    loaded = load_model(path, "cpu")
    assert loaded.task == task and loaded.name == f"test-{task}"
    assert loaded.metadata["architecture"] == model.config.to_dict()
    assert loaded.metadata["weights"]["dtype"] == "float32"
    assert len(loaded.sha256) == 64 and loaded.path == path
    assert not loaded.model.training
    original, again = model.state_dict(), loaded.model.state_dict()
    assert original.keys() == again.keys()
    for key in original:
        assert torch.equal(original[key], again[key]), key
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def test_float16_weights_are_cast_to_float32_at_load(tmp_path):
    model = _model()
    path = save_model(tmp_path / "half.safetensors", model, _meta(), dtype=torch.float16)
    full = save_model(tmp_path / "full.safetensors", model, _meta(), dtype="float32")
    assert path.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(path)
    assert loaded.metadata["weights"]["dtype"] == "float16"
    for key, value in model.state_dict().items():
        got = loaded.model.state_dict()[key]
        if value.is_floating_point():
            assert got.dtype == torch.float32
            assert torch.equal(got, value.half().float()), key


def test_read_metadata_without_tensors(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _model(), _meta())
    meta = read_metadata(path)
    assert meta["format"] == "napari-cvdm-model" and meta["format_version"] == 1
    assert meta["physics"]["pixel_size_um"] == 0.0626


def test_truncated_file_is_refused(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _model(), _meta())
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(path)


def test_tampered_json_is_refused(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _model(), _meta())
    _edit_header(path, lambda text: text[:-5])
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(path)


def test_missing_key_is_refused(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _model(), _meta())

    def drop_physics(text):
        meta = json.loads(text)
        del meta["physics"]
        return json.dumps(meta)

    _edit_header(path, drop_physics)
    with pytest.raises(ModelFileError, match=r"missing \['physics'\]"):
        load_model(path)


def test_removed_weights_digest_is_refused(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _model(), _meta())

    def drop_digest(text):
        meta = json.loads(text)
        del meta["weights"]
        return json.dumps(meta)

    _edit_header(path, drop_digest)
    with pytest.raises(ModelFileError, match="lacks the 'weights' digest"):
        load_model(path)


def test_architecture_that_does_not_fit_the_tensors_is_refused(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _model(), _meta())
    other = CVDM(CVDMConfig(condition_channels=1, target_channels=1, preset="small", residual=True))

    def swap_architecture(text):
        meta = json.loads(text)
        meta["architecture"] = other.config.to_dict()
        meta["weights"]["header_sha256"] = header_digest(meta)  # a consistent, re-digested edit
        return json.dumps(meta)

    _edit_header(path, swap_architecture)
    with pytest.raises(ModelFileError, match="do not match its architecture"):
        load_model(path)


def test_edited_architecture_without_new_digest_is_refused(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _model(), _meta())

    def edit(text):
        meta = json.loads(text)
        meta["architecture"]["preset"] = "small"
        return json.dumps(meta)

    _edit_header(path, edit)
    with pytest.raises(ModelFileError, match="does not match its digest"):
        load_model(path)


def test_wrong_tensor_shape_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = save_model(tmp_path / "m.safetensors", _model(), _meta(), dtype="float32")
    header, _ = _split(path)
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    key = next(k for k, v in tensors.items() if v.dim() >= 2)
    tensors[key] = torch.zeros(*[s + 1 for s in tensors[key].shape])
    save_file(tensors, str(path), metadata=header["__metadata__"])
    with pytest.raises(ModelFileError, match="wrong shape"):
        load_model(path)


def test_missing_tensor_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_model(tmp_path / "m.safetensors", _model(), _meta(), dtype="float32")
    header, _ = _split(path)
    tensors = load_file(str(path))
    del tensors[sorted(tensors)[0]]
    save_file(tensors, str(path), metadata=header["__metadata__"])
    with pytest.raises(ModelFileError, match="missing tensors"):
        load_model(path)


def test_altered_weights_fail_the_digest(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _model(), _meta(), dtype="float32")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # flip bits in the last tensor's data
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="digest"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"hello, this is not a model", b"II*\x00" + bytes(100)])
def test_non_safetensors_file_is_refused(tmp_path, content):
    path = tmp_path / "fake.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_model(path)


def test_missing_file_and_foreign_safetensors(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ModelFileError, match="no napari-cvdm metadata"):
        load_model(foreign)


def test_failed_save_leaves_no_file(tmp_path):
    bad = _meta()
    bad["physics"] = {}
    with pytest.raises(ModelFileError, match="physics.pixel_size_um"):
        save_model(tmp_path / "m.safetensors", _model(), bad)
    assert list(tmp_path.iterdir()) == []


def _full_meta(task="sr"):
    meta = _meta(task)
    meta.update(
        format="napari-cvdm-model",
        format_version=1,
        architecture=_model(task).config.to_dict(),
    )
    return meta


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.update(extra=1), "unknown keys"),
        (lambda m: m.update(name=3), "'name' must be str"),
        (lambda m: m.update(physics=[]), "'physics' must be dict"),
        (lambda m: m.update(format="other"), "not a napari-cvdm model"),
        (lambda m: m.update(format_version=2), "update napari-cvdm"),
        (lambda m: m.update(task="denoise"), "task must be one of"),
        (
            lambda m: m.update(task="qpi", normalization=qpi_rule()),
            "with a TIE prior needs architecture.condition_channels = 3",
        ),
        (lambda m: m["normalization"].update(task="qpi"), "invalid normalisation rule"),
        (lambda m: m["physics"].update(na=-1.0), "physics.na"),
    ],
)
def test_validate_metadata_rejects(edit, match):
    meta = _full_meta()
    assert validate_metadata(meta) is meta
    edit(meta)
    with pytest.raises(ModelFileError, match=match):
        validate_metadata(meta)
