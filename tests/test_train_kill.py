"""SIGKILL while training writes its checkpoint or its model (issue 14): what was saved before
still loads, the half-written file is swept, and ``--resume`` continues.

The child process is held inside the write (after the data reached the temporary file, before
it replaces the previous one) by a hook installed in the child only, so the kill lands exactly
there, not by chance. Linux only (the hook reads ``/proc/self/fd``).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from napari_cvdm.cli import main
from napari_cvdm.engine.modelfile import load_model
from napari_cvdm.workflows.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the write hook reads /proc/self/fd"
)

TINY = [
    "train", "--task", "sr", "--data", "synthetic", "--preset", "tiny", "--batch", "1",
    "--patch", "16", "--sim", "size=16", "--val-every", "100", "--val-count", "1",
    "--val-steps", "1", "--threads", "1", "--ckpt-every", "1", "--quiet",
]  # fmt: skip

#: child: hold the process when it writes the nth file whose name contains `kind`
HOOK = """
import os, sys, time
marker, kind, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = []

def hold(name):
    if kind in os.path.basename(name) and "ncvdm" in name:
        seen.append(name)
        if len(seen) == nth:
            open(marker, "w").write(name)
            time.sleep(600)

if kind == ".ckpt":  # the checkpoint: held at its fsync, the temp file complete
    real_fsync = os.fsync
    def fsync(fd):
        hold(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)
    os.fsync = fsync
else:  # the model: held after safetensors wrote the temp file, before it replaces the old one
    import safetensors.torch as st
    real_save = st.save_file
    def save_file(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        hold(str(filename))
    st.save_file = save_file

from napari_cvdm.cli import main
sys.exit(main(sys.argv[4:]))
"""


def _kill_inside_write(tmp_path, kind, nth, argv):
    marker = tmp_path / f"held-{kind.strip('.')}"
    env = {**os.environ, "NAPARI_CVDM_CACHE_DIR": str(tmp_path / "cache")}
    child = subprocess.Popen(
        [sys.executable, "-c", HOOK, str(marker), kind, str(nth), *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not marker.exists():
        if child.poll() is not None:
            pytest.fail(f"the run ended before the write: {child.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail("the run never reached the write")
        time.sleep(0.1)
    held = marker.read_text()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return held


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if "ncvdm" in p.name)


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    out = tmp_path / "run" / "m.safetensors"
    ckpt = out.with_suffix(".ckpt")
    argv = [*TINY, "--output", str(out), "--steps", "4"]
    held = _kill_inside_write(tmp_path, ".ckpt", 3, argv)  # the checkpoint of step 3
    assert load_checkpoint(ckpt).step == 2  # the previous checkpoint is intact
    assert not out.exists()  # no model yet: it is written at the end
    assert os.path.basename(held) in _leftovers(out.parent)  # the killed write's temp file
    assert main([*argv, "--resume", str(ckpt)]) == 0
    assert load_checkpoint(ckpt).step == 4
    assert load_model(out, "cpu").metadata["training"]["steps"] == 4
    assert _leftovers(out.parent) == []  # swept before step 1 of the resumed run


def test_sigkill_while_writing_the_model_keeps_the_previous_model(tmp_path):
    out = tmp_path / "run" / "m.safetensors"
    ckpt = out.with_suffix(".ckpt")
    assert main([*TINY, "--output", str(out), "--steps", "2"]) == 0
    before = out.read_bytes()
    argv = [*TINY, "--output", str(out), "--steps", "3", "--resume", str(ckpt)]
    _kill_inside_write(tmp_path, ".safetensors", 1, argv)
    assert out.read_bytes() == before  # the previous model is untouched and still loads
    assert load_model(out, "cpu").metadata["training"]["steps"] == 2
    assert load_checkpoint(ckpt).step == 3  # the checkpoint was saved before the model
    assert _leftovers(out.parent)  # the killed run's staging folder, until the next run
    assert main(argv) == 0  # resuming again finishes the run
    assert load_model(out, "cpu").metadata["training"]["steps"] == 3
    assert _leftovers(out.parent) == []


def test_a_second_run_into_the_same_model_is_refused_while_the_first_runs(tmp_path, capsys):
    out = tmp_path / "run" / "m.safetensors"
    argv = [*TINY, "--output", str(out), "--steps", "100000"]
    env = {**os.environ, "NAPARI_CVDM_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.Popen(
        [sys.executable, "-m", "napari_cvdm.cli", *argv], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not out.with_suffix(".ckpt").exists():  # the first run is past step 1
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        assert main([*argv, "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"another training run (process {first.pid}) is writing" in err
    finally:
        first.send_signal(signal.SIGTERM)  # stops after this step, saves, exits 130
        assert first.wait(timeout=120) == 130
    assert load_model(out, "cpu").metadata["training"]["stopped_early"]
    assert _leftovers(out.parent) == []
