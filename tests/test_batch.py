"""Many inputs: in process and on a real Dask LocalCluster of 2 worker processes (tiny model).

The cluster is started once for the module (a few seconds); every reconstruction is a tiny
untrained SR model on 16-48 px inputs, so each test takes seconds.
"""

import os
import signal
import socket
import sys

import numpy as np
import pytest

from napari_cvdm import batch
from napari_cvdm.cli import main
from napari_cvdm.engine.modelfile import save_model
from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.io import read_image, write_tiff
from napari_cvdm.workflows.predict import ReconstructionParams

FAST = ["--samples", "2", "--steps", "2", "--device", "cpu", "--threads", "1"]
KINDS = ("mean", "std", "schedule")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    loaded = make_untrained_model("sr", "tiny")
    meta = {
        k: loaded.metadata[k]
        for k in ("task", "normalization", "physics", "training", "description")
    }
    meta["name"] = "tiny-sr-batch"
    return save_model(tmp_path_factory.mktemp("models") / "tiny.safetensors", loaded.model, meta)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    import logging

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    yield cluster
    cluster.close()


@pytest.fixture()
def client(cluster):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


def _inputs(folder, n=3, size=16):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        data = (100 + np.random.default_rng(i).poisson(50, (size, size))).astype(np.uint16)
        paths.append(write_tiff(folder / f"cell{i}.tif", data, 0.0626, {}))
    return paths


def _arrays(folder, stem):
    return {k: read_image(folder / f"{stem}_{k}.tif")[0] for k in KINDS}


def _same_pixels(folder_a, folder_b, stems):
    for stem in stems:
        a, b = _arrays(folder_a, stem), _arrays(folder_b, stem)
        for kind in KINDS:
            assert np.array_equal(a[kind], b[kind]), (stem, kind)


def _single_process(tmp_path, model_path, paths, extra=()):
    out = tmp_path / "single"
    args = ["predict", *map(str, paths), "--model", str(model_path), "--output-dir", str(out)]
    assert main([*args, *FAST, *extra]) == 0
    return out


def test_importing_batch_imports_no_dask_or_torch():
    code = (
        "import sys, napari_cvdm.batch, napari_cvdm.commands.predict; "
        "print(any(m.split('.')[0] in ('dask', 'distributed', 'torch') for m in sys.modules))"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reconstruct_many_in_process_matches_the_cli(tmp_path, model_path):
    paths = _inputs(tmp_path / "in", n=2)
    single = _single_process(tmp_path, model_path, paths)
    params = ReconstructionParams(n_samples=2, steps=2, device="cpu")
    written = batch.reconstruct_many(paths, model_path, tmp_path / "many", params=params)
    assert sorted(written) == sorted(str(p.resolve()) for p in paths)
    assert all(len(v) == 3 and all(p.is_file() for p in v) for v in written.values())
    _same_pixels(single, tmp_path / "many", ["cell0", "cell1"])


def test_reconstruct_many_on_two_workers_matches_one_process(tmp_path, model_path, client):
    paths = _inputs(tmp_path / "in", n=3)
    single = _single_process(tmp_path, model_path, paths)
    seen = []
    params = ReconstructionParams(n_samples=2, steps=2, device="cpu")
    written = batch.reconstruct_many(
        paths,
        model_path,
        tmp_path / "dask",
        client=client,
        params=params,
        threads=1,
        on_progress=lambda p: seen.append((p.fraction, len(p.finished))),
    )
    assert len(written) == 3
    _same_pixels(single, tmp_path / "dask", ["cell0", "cell1", "cell2"])
    assert seen[-1] == (1.0, 3)
    assert all(a <= b + 1e-9 for (a, _), (b, _) in zip(seen, seen[1:]))  # never goes back
    # provenance names this run; the model is loaded once per worker process and kept
    prov = read_image(tmp_path / "dask" / "cell0_mean.tif")[1].extra["provenance"]
    assert len(prov["batch"]["run_id"]) == 32 and prov["samples_done"] == 2
    again = batch.reconstruct_many(
        paths[:2], model_path, tmp_path / "again", client=client, params=params, threads=1
    )
    assert len(again) == 2
    counts = client.run(lambda: len(__import__("napari_cvdm.batch").batch._MODELS))
    assert set(counts.values()) <= {0, 1} and sum(counts.values()) >= 1


def test_cli_dask_scheduler_address_writes_the_same_files(tmp_path, model_path, cluster, capsys):
    paths = _inputs(tmp_path / "in", n=2)
    single = _single_process(tmp_path, model_path, paths)
    capsys.readouterr()
    out = tmp_path / "cli"
    args = ["predict", *map(str, paths), "--model", str(model_path), "--output-dir", str(out)]
    assert main([*args, *FAST, "--dask-scheduler", cluster.scheduler_address]) == 0
    captured = capsys.readouterr()
    assert sorted(captured.out.split()) == sorted(
        str((out / f"cell{i}_{k}.tif").resolve()) for i in range(2) for k in KINDS
    )
    assert "2 inputs on 2 Dask workers" in captured.err and "100%" in captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"cell{i}_{k}.tif" for i in range(2) for k in KINDS
    )
    _same_pixels(single, out, ["cell0", "cell1"])
    # existing outputs are refused before any task is sent
    assert main([*args, *FAST, "--dask-scheduler", cluster.scheduler_address]) == 2
    assert "--overwrite" in capsys.readouterr().err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["dead", "garbage"])
def test_unreachable_scheduler_is_one_line(tmp_path, model_path, monkeypatch, capsys, address):
    pytest.importorskip("distributed")
    monkeypatch.setattr(batch, "CONNECT_TIMEOUT_S", 2.0)
    target = f"tcp://127.0.0.1:{_free_port()}" if address == "dead" else "no such:scheme::"
    paths = _inputs(tmp_path / "in", n=1)
    args = ["predict", str(paths[0]), "--model", str(model_path), "--output-dir"]
    code = main([*args, str(tmp_path / "o"), *FAST, "--dask-scheduler", target])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len([line for line in err if "error" in line]) == 1
    assert "cannot connect to the Dask scheduler" in err[-1] and "Traceback" not in err[-1]
    assert not list((tmp_path / "o").glob("*.tif"))


def test_a_worker_killed_mid_task_loses_and_duplicates_nothing(tmp_path, model_path, client):
    paths = _inputs(tmp_path / "in", n=2, size=48)  # a second or so per task: time to kill
    params = ReconstructionParams(n_samples=2, steps=40, device="cpu")
    single = tmp_path / "single"
    batch.reconstruct_many(paths, model_path, single, params=params, threads=1)
    pids = client.run(os.getpid)
    killed = []

    def kill_first_reporter(progress):
        # SIGKILL (like the OOM killer) the first worker seen computing, once
        if not killed and progress.workers and not progress.finished:
            address = sorted(progress.workers)[0]
            killed.append(address)
            os.kill(pids[address], signal.SIGKILL)

    out = tmp_path / "dask"
    written = batch.reconstruct_many(
        paths,
        model_path,
        out,
        client=client,
        params=params,
        threads=1,
        on_progress=kill_first_reporter,
    )
    assert killed, "no worker reported progress before finishing"
    assert len(written) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"cell{i}_{k}.tif" for i in range(2) for k in KINDS
    )  # no staging folder, no duplicate
    _same_pixels(single, out, ["cell0", "cell1"])
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it, for the next tests


def test_a_bad_input_on_a_worker_is_the_same_one_line_error(tmp_path, model_path, client):
    from napari_cvdm.errors import InputError

    good = _inputs(tmp_path / "in", n=1)[0]
    bad = tmp_path / "in" / "broken.tif"
    bad.write_bytes(b"this is not a tiff" * 10)
    params = ReconstructionParams(n_samples=1, steps=1, device="cpu")
    with pytest.raises(InputError, match="(?i)could not read .*broken.tif"):
        batch.reconstruct_many(
            [good, bad], model_path, tmp_path / "o", client=client, params=params
        )
    assert not list((tmp_path / "o").glob("broken_*"))


def test_earlier_attempt_of_the_same_run_is_not_redone(tmp_path, model_path, monkeypatch):
    paths = _inputs(tmp_path / "in", n=1)
    params = ReconstructionParams(n_samples=1, steps=1, device="cpu")
    jobs = batch.make_jobs(paths, model_path, tmp_path / "out", params, threads=1)
    (tmp_path / "out").mkdir()
    first = batch._run_task(jobs[0])
    stamp = [os.stat(p).st_mtime_ns for p in first["written"]]
    calls = []
    original = batch.predict_file
    monkeypatch.setattr(batch, "predict_file", lambda *a, **k: calls.append(1))
    again = batch._run_task(jobs[0])  # e.g. re-run after its worker died before reporting
    assert again["written"] == first["written"] and not calls
    assert [os.stat(p).st_mtime_ns for p in first["written"]] == stamp
    # one file of this run missing (a commit cut short elsewhere): redone, replacing only ours
    os.unlink(first["written"][1])
    monkeypatch.setattr(batch, "predict_file", original)
    third = batch._run_task(jobs[0])
    assert all(os.path.isfile(p) for p in third["written"])


def test_progress_fraction_weighs_inputs_equally():
    p = batch.BatchProgress(inputs=4)
    p.done.update({"a": 5, "b": 10})
    p.total.update({"a": 10, "b": 10})
    p.finished.add("b")
    assert p.fraction == pytest.approx((0.5 + 1.0) / 4)


def test_dask_workers_without_a_scheduler_is_one_line(tmp_path, model_path, capsys):
    paths = _inputs(tmp_path / "in", n=1)
    args = ["predict", str(paths[0]), "--model", str(model_path), "--output-dir"]
    assert main([*args, str(tmp_path / "o"), *FAST, "--dask-workers", "2"]) == 2
    assert "--dask-workers needs --dask-scheduler local" in capsys.readouterr().err


def test_dask_workers_needs_local(tmp_path, model_path, capsys):
    pytest.importorskip("distributed")
    paths = _inputs(tmp_path / "in", n=1)
    args = ["predict", str(paths[0]), "--model", str(model_path), "--output-dir"]
    code = main(
        [*args, str(tmp_path / "o"), *FAST, "--dask-scheduler", "tcp://h:1", "--dask-workers", "2"]
    )
    assert (
        code == 2 and "--dask-workers applies to --dask-scheduler local" in capsys.readouterr().err
    )
