"""BioImage Model Zoo export (`export-bioimageio`) and import (`models --import`), tiny models.

The scripted network must compute what `reconstruct` computes (within CHECK_TOLERANCE of the
mean's range; measured about 1e-7 of it), the package must pass bioimageio.spec's validation
(and bioimageio.core's test, when installed), and an imported package must give back the very
model file, usable by `predict`. Bad inputs: one line, exit 2, nothing written.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from importlib import resources

import numpy as np
import pytest
import tifffile
import torch
import yaml

from napari_cvdm.cli import main
from napari_cvdm.engine import registry
from napari_cvdm.engine.modelfile import load_model, save_model
from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.engine.scripted import (
    percentile,
    quiet_jit,
    script_reconstruction,
    tie_prior,
)
from napari_cvdm.workflows.bioimageio_package import CHECK_TOLERANCE
from napari_cvdm.workflows.events import Finished
from napari_cvdm.workflows.predict import ReconstructionParams, reconstruct

torch.set_num_threads(1)
#: a cheap but real sampler: 3 samples × 5 ancestral steps (export tests: 2 × 4)
SAMPLES, STEPS = 3, 5
EXPORT_FLAGS = ["--samples", "2", "--steps", "4", "--test-size", "32"]


def _jit_load(path):
    with quiet_jit():
        return torch.jit.load(path)


def _save_tiny(folder, task, name):
    loaded = make_untrained_model(task, "tiny")
    meta = {
        k: loaded.metadata[k]
        for k in ("task", "normalization", "physics", "training", "description")
    }
    meta["name"] = name
    folder.mkdir(parents=True, exist_ok=True)
    return save_model(folder / f"{name}.safetensors", loaded.model, meta)


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _image(task, shape=(24, 32), seed=0):
    rng = np.random.default_rng(seed)
    if task == "sr":  # widefield ADU with the model's 100 ADU offset
        return (100 + rng.poisson(60, size=shape) * (1 + np.arange(shape[1]) / shape[1])).astype(
            np.float32
        )
    planes = 1 + 0.1 * rng.standard_normal((2, *shape))  # through-focus planes, background 1
    return planes.astype(np.float32)


def _reference(loaded, image, sampler="ancestral", eta=0.0):
    params = ReconstructionParams(
        n_samples=SAMPLES, steps=STEPS, sampler=sampler, eta=eta, seed=3, device="cpu"
    )
    events = reconstruct(image, loaded, params)
    return next(e.result for e in events if isinstance(e, Finished))


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path / "bioimageio-cache"))
    monkeypatch.setattr(registry, "_bundled_files", lambda: [])


# ----------------------------------------------------------------------------- the network


@pytest.mark.parametrize(
    ("task", "sampler", "eta"),
    [
        ("sr", "ancestral", 0.0),
        ("qpi", "ancestral", 0.0),
        ("sr", "ddim", 0.0),
        ("qpi", "ddim", 0.5),
    ],
)
def test_scripted_network_equals_reconstruct(tmp_path, task, sampler, eta):
    loaded = make_untrained_model(task, "tiny")
    module = script_reconstruction(
        loaded, n_samples=SAMPLES, steps=STEPS, sampler=sampler, eta=eta, seed=3
    )
    module.save(str(tmp_path / "net.pt"))
    net = _jit_load(str(tmp_path / "net.pt"))
    image = _image(task)
    batch = np.stack([image[None] if task == "sr" else image] * 2)  # two copies of the image
    mean, std = (t.numpy() for t in net(torch.from_numpy(batch)))
    ref = _reference(loaded, image, sampler, eta)
    out_shape = (2, 1, *ref.mean.shape)
    assert mean.shape == std.shape == out_shape
    assert ref.mean.shape == ((48, 64) if task == "sr" else (24, 32))
    span = float(np.ptp(ref.mean))
    err_mean = float(np.max(np.abs(mean[0, 0] - ref.mean)))
    err_std = float(np.max(np.abs(std[0, 0] - ref.std)))
    # measured: ≈ 2e-7 of the range (channels-last vs contiguous convolutions, float32)
    assert err_mean <= CHECK_TOLERANCE * span and err_std <= CHECK_TOLERANCE * span
    assert float(std.min()) >= 0 and float(std.max()) > 0  # several distinct samples
    np.testing.assert_array_equal(mean[0], mean[1])  # each batch item on its own, same seeds
    np.testing.assert_array_equal(std[0], std[1])


def test_scripted_network_is_deterministic_and_seeded(tmp_path):
    loaded = make_untrained_model("sr", "tiny")
    image = torch.from_numpy(_image("sr")[None, None])
    nets = [
        script_reconstruction(loaded, n_samples=2, steps=3, sampler="ancestral", seed=seed)
        for seed in (0, 0, 1)
    ]
    (a, _), (b, _), (c, _) = (net(image) for net in nets)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float((a - c).abs().max()) > 1e-3 * float(a.max() - a.min())  # the seed matters


def test_torch_percentile_equals_numpy():
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 1000, 4097):
        values = rng.standard_normal(n) * 50 + 100
        for q in (0.0, 1.0, 37.3, 50.0, 99.8, 100.0):
            got = float(percentile(torch.from_numpy(values), q))
            assert got == pytest.approx(float(np.percentile(values, q)), rel=1e-14, abs=1e-12)


def test_torch_tie_prior_equals_numpy():
    from napari_cvdm.normalization import qpi_tie_prior

    rng = np.random.default_rng(2)
    contrast = (0.05 * rng.standard_normal((2, 40, 56))).astype(np.float32)
    want = qpi_tie_prior(contrast, 11.8, alpha=1e-6, phi_norm=3.5, floor_percentile=1.0)
    got = tie_prior(torch.from_numpy(contrast), 11.8, 1e-6, 3.5, 1.0).numpy()
    assert got.shape == want.shape and got.dtype == np.float32
    assert float(np.max(np.abs(got - want))) <= 1e-5 * float(np.ptp(want))


def test_unet_scripts_with_and_without_embedding():
    from napari_cvdm.engine.unet import UNet

    torch.manual_seed(0)
    for embed in (0, 16):
        net = UNet(3, 1, base_width=8, channel_mults=(1, 2, 4), embed_dim=embed).eval()
        with quiet_jit():
            scripted = torch.jit.script(net)
        x = torch.randn(2, 3, 21, 30)  # not a multiple of the stride: padded and cropped
        cond = torch.tensor([0.3, -0.2]) if embed else None
        torch.testing.assert_close(scripted(x, cond), net(x, cond), rtol=0, atol=0)


# ----------------------------------------------------------------------------- export, import


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Tiny SR and QPI models exported once with the CLI (2 samples × 4 steps, 32-px inputs)."""
    pytest.importorskip("bioimageio.spec")
    root = tmp_path_factory.mktemp("bmz")
    out = {}
    for task in ("sr", "qpi"):
        model = _save_tiny(root / "models", task, f"tiny-{task}-bmz")
        package = root / f"{task}.zip"
        code = main(["export-bioimageio", str(model), "--output", str(package), *EXPORT_FLAGS])
        assert code == 0
        out[task] = (model, package)
    return out


def _rdf(package):
    with zipfile.ZipFile(package) as archive:
        return yaml.safe_load(archive.read("rdf.yaml")), archive.namelist()


@pytest.mark.parametrize("task", ["sr", "qpi"])
def test_export_writes_a_valid_bioimageio_package(exported, tmp_path, task):
    from bioimageio.spec import InvalidDescr, load_description

    model, package = exported[task]
    descr = load_description(package, perform_io_checks=True)
    assert not isinstance(descr, InvalidDescr), descr.validation_summary.format()
    assert descr.validation_summary.status == "valid-format"
    assert str(descr.format_version).startswith("0.5") and descr.type == "model"
    rdf, names = _rdf(package)
    assert {
        "rdf.yaml",
        "weights_torchscript.pt",
        "test_input.npy",
        "test_output_mean.npy",
        "test_output_std.npy",
        "cover.png",
        "README.md",
        model.name,
    } <= set(names)
    record = rdf["config"]["napari_cvdm"]
    assert record["format"] == "napari-cvdm-bioimageio" and record["task"] == task
    assert (record["samples"], record["steps"], record["sampler"], record["seed"]) == (
        2,
        4,
        "ancestral",
        0,
    )
    assert record["model_sha256"] == _sha256(model)
    span = record["check"]["mean_range"]
    assert max(record["check"]["max_abs_difference"].values()) <= CHECK_TOLERANCE * span
    assert rdf["license"] == "BSD-3-Clause" and rdf["cite"][0]["doi"] == "10.48550/arXiv.2312.02246"
    assert [a["id"] for a in rdf["outputs"]] == ["mean", "std"]
    # the packaged test outputs are what the packaged network computes from the test input
    with zipfile.ZipFile(package) as archive:
        archive.extractall(tmp_path)
    net = _jit_load(str(tmp_path / "weights_torchscript.pt"))
    test_in = np.load(tmp_path / "test_input.npy")
    assert test_in.shape == ((1, 1, 32, 32) if task == "sr" else (1, 2, 32, 32))
    mean, std = net(torch.from_numpy(test_in))
    np.testing.assert_array_equal(mean.numpy(), np.load(tmp_path / "test_output_mean.npy"))
    np.testing.assert_array_equal(std.numpy(), np.load(tmp_path / "test_output_std.npy"))
    assert mean.shape[-1] == (64 if task == "sr" else 32)
    doc = (tmp_path / "README.md").read_text()
    assert "mean and standard\ndeviation of 2 samples" in doc.replace("**", "")
    assert "ancestral sampler in\n4 reverse steps" in doc.replace("**", "")
    assert "## Validation" in doc and "seed 0" in doc


def test_exported_package_passes_bioimageio_core_test(exported):
    """bioimageio.core runs the TorchScript network: the test outputs, batch 1 and 2, sizes
    16/24/32 px (skipped when bioimageio.core is not installed)."""
    core = pytest.importorskip("bioimageio.core")
    summary = core.test_model(exported["sr"][1])
    failed = [d.name for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed


def test_export_honours_the_umask_and_refuses_to_overwrite(exported, tmp_path, capsys):
    _, package = exported["sr"]
    model = _save_tiny(tmp_path / "m", "sr", "tiny-umask")
    target = tmp_path / "out" / "pkg.zip"
    old = os.umask(0o027)
    try:
        assert main(["export-bioimageio", str(model), "--output", str(target), *EXPORT_FLAGS]) == 0
    finally:
        os.umask(old)
    assert (target.stat().st_mode & 0o777) == 0o640
    capsys.readouterr()
    before = target.read_bytes()
    code = main(["export-bioimageio", str(model), "--output", str(target), *EXPORT_FLAGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["pkg.zip"]  # no temp files


def test_import_round_trip_installs_the_same_file_usable_by_predict(exported, tmp_path, capsys):
    model, package = exported["sr"]
    capsys.readouterr()
    assert main(["models", "--import", str(package)]) == 0
    out = capsys.readouterr().out
    installed = tmp_path / "cache" / "models" / "tiny-sr-bmz.safetensors"
    assert out.startswith("installed tiny-sr-bmz") and str(installed) in out
    assert _sha256(installed) == _sha256(model)
    assert sorted(p.name for p in installed.parent.iterdir()) == [installed.name]
    assert main(["models"]) == 0 and "tiny-sr-bmz" in capsys.readouterr().out
    # predict --model NAME reproduces the packaged test output (same seed, samples, steps)
    with zipfile.ZipFile(package) as archive:
        test_in = np.load(archive.open("test_input.npy"))
        test_mean = np.load(archive.open("test_output_mean.npy"))
    tifffile.imwrite(tmp_path / "wf.tif", test_in[0, 0])
    args = ["--samples", "2", "--steps", "4", "--seed", "0", "--device", "cpu"]
    assert main(["predict", str(tmp_path / "wf.tif"), "--model", "tiny-sr-bmz",
                 "--output-dir", str(tmp_path / "pred"), *args]) == 0  # fmt: skip
    mean = tifffile.imread(tmp_path / "pred" / "wf_mean.tif")
    span = float(np.ptp(test_mean))
    assert float(np.max(np.abs(mean - test_mean[0, 0]))) <= CHECK_TOLERANCE * span
    # a second import: refused without --overwrite, file untouched; replaced with it
    capsys.readouterr()
    assert main(["models", "--import", str(package)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    assert main(["models", "--import", str(package), "--overwrite"]) == 0
    assert capsys.readouterr().out.startswith("replaced tiny-sr-bmz")
    assert _sha256(installed) == _sha256(model)
    load_model(installed, "cpu")  # a valid model file


def test_import_of_a_qpi_package_and_the_identical_bundled_model(exported, monkeypatch, capsys):
    model, package = exported["qpi"]
    monkeypatch.setattr(registry, "_bundled_files", lambda: [model])  # as if it were bundled
    capsys.readouterr()
    assert main(["models", "--import", str(package)]) == 0
    assert "is bundled with napari-cvdm" in capsys.readouterr().out
    assert not (registry.user_models_dir() / model.name).exists()
    monkeypatch.setattr(registry, "_bundled_files", lambda: [])
    assert main(["models", "--import", str(package)]) == 0
    assert _sha256(registry.user_models_dir() / model.name) == _sha256(model)


# ----------------------------------------------------------------------------- bad inputs


def _one_line_error(capsys, code, *words):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_export_bad_inputs_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch):
    pytest.importorskip("bioimageio.spec")
    out = tmp_path / "out"
    out.mkdir()
    code = main(["export-bioimageio", "no-such-model", "--output", str(out / "a.zip")])
    _one_line_error(capsys, code, "unknown model 'no-such-model'")
    model = _save_tiny(tmp_path / "m", "sr", "tiny-bad")
    code = main(["export-bioimageio", str(model), "--output", str(out / "a.tif")])
    _one_line_error(capsys, code, "must be a .zip file")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code = main(["export-bioimageio", str(model), "--output", str(blocker / "a.zip")])
    _one_line_error(capsys, code, "is not a folder")
    code = main(["export-bioimageio", str(model), "--output", str(out / "a.zip"), "--samples", "0"])
    _one_line_error(capsys, code, "--samples")
    # one sample: the std output would be all zeros, which bioimage.io refuses
    code = main(["export-bioimageio", str(model), "--output", str(out / "a.zip"), "--samples", "1"])
    _one_line_error(capsys, code, "--samples must be at least 2")
    prior = resources.files("napari_cvdm").joinpath("models/prior-fluorescence.safetensors")
    code = main(["export-bioimageio", str(prior), "--output", str(out / "a.zip")])
    _one_line_error(capsys, code, "only SR and QPI models")
    import builtins

    real_import = builtins.__import__

    def no_bioimageio(name, *args, **kwargs):
        if name.startswith("bioimageio"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bioimageio)
    code = main(["export-bioimageio", str(model), "--output", str(out / "a.zip")])
    _one_line_error(capsys, code, "pip install 'napari-cvdm[bioimageio]'")
    assert list(out.iterdir()) == []


def _rewrite(package, target, change):
    """Copy a package, passing each (name, bytes) through ``change`` (None drops the entry)."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            entry = change(name, src.read(name))
            if entry is not None:
                dst.writestr(name, entry)
    return target


def test_import_bad_inputs_are_one_line_and_install_nothing(exported, tmp_path, capsys):
    _, package = exported["sr"]
    models = tmp_path / "cache" / "models"
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    no_rdf = _rewrite(package, tmp_path / "no_rdf.zip", lambda n, b: None if n == "rdf.yaml" else b)

    def foreign_rdf(name, data):
        if name != "rdf.yaml":
            return data
        rdf = yaml.safe_load(data)
        del rdf["config"]["napari_cvdm"]
        return yaml.safe_dump(rdf)

    foreign = _rewrite(package, tmp_path / "foreign.zip", foreign_rdf)

    def tampered_model(name, data):
        return data[:-8] + b"\0" * 8 if name.endswith(".safetensors") else data

    tampered = _rewrite(package, tmp_path / "tampered.zip", tampered_model)
    cases = [
        (tmp_path / "missing.zip", "no such package file"),
        (text, "is not a zip file"),
        (no_rdf, "holds no rdf.yaml"),
        (foreign, "is not a package exported by napari-cvdm"),
        (tampered, "does not match the sha256"),
    ]
    for path, words in cases:
        code = main(["models", "--import", str(path)])
        _one_line_error(capsys, code, words)
        assert not models.exists() or list(models.iterdir()) == []
    code = main(["models", "--overwrite"])
    _one_line_error(capsys, code, "--overwrite goes with --import")


def test_cli_help_of_the_new_commands_imports_no_torch_numpy_or_bioimageio():
    code = """
import sys
from napari_cvdm.cli import main
for argv in (["export-bioimageio", "--help"], ["models", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
print([m for m in ("numpy", "torch", "bioimageio.spec") if m in sys.modules])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--output FILE.zip" in proc.stdout and "--import FILE.zip" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_sr_model_with_the_rl_prior_is_refused_in_one_line(tmp_path, capsys):
    pytest.importorskip("bioimageio.spec")
    from napari_cvdm.engine.cvdm import CVDM, CVDMConfig
    from napari_cvdm.tasks.sr import rule as sr_rule

    base = make_untrained_model("sr", "tiny")
    model = CVDM(CVDMConfig(condition_channels=2, target_channels=1, preset="tiny", residual=True))
    meta = {k: base.metadata[k] for k in ("task", "physics", "training", "description")}
    meta.update(name="tiny-rl", normalization=sr_rule(prior=True))
    path = save_model(tmp_path / "tiny-rl.safetensors", model, meta)
    code = main(["export-bioimageio", str(path), "--output", str(tmp_path / "rl.zip")])
    _one_line_error(capsys, code, "Richardson-Lucy prior", "cannot be exported")
    assert not (tmp_path / "rl.zip").exists()


def test_scripted_network_of_a_multi_prior_qpi_model_equals_reconstruct(tmp_path):
    """A QPI model with extra TIE prior channels (rule prior.extra_alphas) exports the same
    reconstruction: the torch port builds every prior channel of the rule."""
    from napari_cvdm.engine.modelfile import LoadedModel, validate_metadata
    from napari_cvdm.normalization import QPI_TIE_EXTRA_ALPHAS
    from napari_cvdm.tasks.qpi import rule as qpi_rule
    from napari_cvdm.workflows.train import TrainConfig, _widen_condition

    single = make_untrained_model("qpi", "tiny")
    config = TrainConfig(task="qpi", output="m.safetensors", qpi_extra_alphas=QPI_TIE_EXTRA_ALPHAS)
    model = _widen_condition(single.model, config).eval()
    with torch.no_grad():  # non-zero weights on the new channels, so they matter
        stem = model.denoiser.stem.weight
        stem[:, 2:5] = 0.05 * torch.randn_like(stem[:, 2:5])
    meta = dict(single.metadata, architecture=model.config.to_dict())
    meta["normalization"] = qpi_rule(extra_alphas=QPI_TIE_EXTRA_ALPHAS)
    loaded = LoadedModel(model=model, metadata=validate_metadata(meta), sha256=None, path=None)
    module = script_reconstruction(
        loaded, n_samples=SAMPLES, steps=STEPS, sampler="ancestral", eta=0.0, seed=3
    )
    module.save(str(tmp_path / "net.pt"))
    net = _jit_load(str(tmp_path / "net.pt"))
    image = _image("qpi")
    mean, std = (t.numpy() for t in net(torch.from_numpy(image[None])))
    ref = _reference(loaded, image)
    span = float(np.ptp(ref.mean))
    assert float(np.max(np.abs(mean[0, 0] - ref.mean))) <= CHECK_TOLERANCE * span
    assert float(np.max(np.abs(std[0, 0] - ref.std))) <= CHECK_TOLERANCE * span
