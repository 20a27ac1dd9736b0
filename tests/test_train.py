"""The training loop: events, loss decrease, exact resume, stop, fine-tuning, DDP, metadata."""

import json
import os
import socket
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from napari_cvdm.engine.modelfile import load_model, read_metadata
from napari_cvdm.errors import InputError
from napari_cvdm.physics.fluorescence import simulate_sr_pair
from napari_cvdm.physics.qpi import simulate_qpi_stack
from napari_cvdm.workflows.checkpoint import load_checkpoint
from napari_cvdm.workflows.events import Finished, LossReport, Progress, Validation
from napari_cvdm.workflows.train import TrainConfig, learning_rate_at, train
from napari_cvdm.workflows.training_data import PairedImages


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sr_data(frames=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    pairs = [simulate_sr_pair(rng, size=size) for _ in range(frames)]
    return PairedImages(
        "sr",
        [p.widefield for p in pairs],
        [p.target for p in pairs],
        val_fraction=0.5,
        input_pixel_size_um=[p.metadata["widefield_pixel_size_um"] for p in pairs],
        target_pixel_size_um=[p.metadata["target_pixel_size_um"] for p in pairs],
    )


def _config(tmp_path, name="m", **changes):
    base = dict(
        task="sr",
        output=tmp_path / f"{name}.safetensors",
        steps=4,
        batch=2,
        patch=32,
        preset="tiny",
        val_every=2,
        val_count=1,
        val_steps=2,
        ckpt_every=2,
        device="cpu",
        warmup_steps=1,
        prefetch=1,
        lr_schedule="constant",  # the library default is cosine; these runs test other things
    )
    base.update(changes)
    return TrainConfig(**base)


def _losses(events):
    return [e.losses["total"] for e in events if isinstance(e, LossReport)]


def test_event_stream_order_and_outputs(tmp_path):
    events = list(train(_config(tmp_path), data=_sr_data()))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["LossReport", "Progress", "LossReport", "Progress", "Validation"] * 2 + [
        "Finished"
    ]
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3, 4]
    report = events[0]
    assert set(report.losses) >= {"total", "diff", "boundary", "prior", "gamma_curvature"}
    assert report.lr == pytest.approx(1e-4) and report.total == 4
    val = events[4]
    assert isinstance(val, Validation) and set(val.metrics) == {"loss", "psnr", "ssim"}
    assert val.preview.shape == (32, 96) and val.preview.dtype == np.float32
    done = events[-1]
    assert isinstance(done, Finished) and not done.cancelled
    assert done.result == tmp_path / "m.safetensors" and done.info["steps"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "m.safetensors"]
    loaded = load_model(done.result)
    meta = loaded.metadata
    assert meta["task"] == "sr" and meta["name"] == "m"
    assert meta["architecture"]["preset"] == "tiny" and meta["architecture"]["residual"] is True
    assert meta["normalization"]["task"] == "sr"
    assert meta["physics"]["pixel_size_um"] == pytest.approx(0.0626)
    assert meta["physics"]["upscale"] == 2.0 and meta["physics"]["na"] == pytest.approx(1.49)
    training = meta["training"]
    assert training["steps"] == 4 and training["data"]["source"] == "pairs"
    assert training["validation"]["psnr"] == pytest.approx(events[-2].metrics["psnr"])
    assert {"date", "code_version", "wall_time_s", "command"} <= set(training)
    assert meta["weights"]["dtype"] == "float32"


def test_loss_decreases_on_a_tiny_run(tmp_path):
    config = _config(tmp_path, steps=50, batch=4, lr=2e-3, val_every=1000, ckpt_every=1000)
    losses = _losses(train(config, data=_sr_data(frames=3)))
    assert len(losses) == 50
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < 0.8 * first, (first, last)


def test_resume_continues_exactly(tmp_path):
    # a constant rate: with the cosine default a longer run re-stretches the decay by design
    data = _sr_data()
    fixed = {"val_every": 5, "ckpt_every": 10, "lr_schedule": "constant"}
    straight = list(train(_config(tmp_path, "a", steps=20, **fixed), data=data))
    first = list(train(_config(tmp_path, "b", steps=10, **fixed), data=data))
    assert load_checkpoint(tmp_path / "b.ckpt").step == 10
    resumed = list(
        train(
            _config(tmp_path, "b", steps=20, resume=tmp_path / "b.ckpt", **fixed),
            data=data,
        )
    )
    assert _losses(first) + _losses(resumed) == _losses(straight)
    val_a = [e.metrics for e in straight if isinstance(e, Validation)]
    val_b = [e.metrics for e in first + resumed if isinstance(e, Validation)]
    assert val_a == val_b
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight[-1].info["weights_sha256"] == resumed[-1].info["weights_sha256"]
    ckpt_a, ckpt_b = load_checkpoint(tmp_path / "a.ckpt"), load_checkpoint(tmp_path / "b.ckpt")
    assert all(
        torch.equal(ckpt_a.model_state[k], ckpt_b.model_state[k]) for k in ckpt_a.model_state
    )
    assert resumed[-1].info["wall_time_s"] > first[-1].info["wall_time_s"]


def test_resume_refuses_other_optimisation_settings(tmp_path):
    data = _sr_data()
    list(train(_config(tmp_path, "r", steps=2, lr=1e-3), data=data))
    ckpt = tmp_path / "r.ckpt"
    with pytest.raises(InputError, match=r"learning rate 0.001 \(now 0.0001\).*--lr"):
        list(train(_config(tmp_path, "r", steps=3, lr=1e-4, resume=ckpt), data=data))
    with pytest.raises(InputError, match="lr schedule constant \\(now cosine\\)"):
        list(train(_config(tmp_path, "r", steps=3, lr=1e-3, lr_schedule="cosine", resume=ckpt),
                   data=data))  # fmt: skip
    events = list(train(_config(tmp_path, "r", steps=3, lr=1e-3, resume=ckpt), data=data))
    assert events[-1].info["steps"] == 3  # the same settings and more steps: continues


def test_stop_flag_saves_checkpoint_and_model(tmp_path):
    stop = threading.Event()
    events = []
    for event in train(
        _config(tmp_path, steps=100, val_every=1000, ckpt_every=1000), stop, data=_sr_data()
    ):
        events.append(event)
        if isinstance(event, LossReport) and event.step == 3:
            stop.set()
    done = events[-1]
    assert isinstance(done, Finished) and done.cancelled and done.info["steps"] == 3
    assert load_checkpoint(tmp_path / "m.ckpt").step == 3
    meta = read_metadata(tmp_path / "m.safetensors")
    assert meta["training"]["steps"] == 3 and meta["training"]["stopped_early"] is True


def test_closing_the_generator_saves_a_checkpoint(tmp_path):
    gen = train(_config(tmp_path, steps=100, val_every=1000, ckpt_every=1000), data=_sr_data())
    for event in gen:
        if isinstance(event, Progress) and event.step == 2:
            break
    gen.close()
    assert load_checkpoint(tmp_path / "m.ckpt").step == 2
    assert not (tmp_path / "m.safetensors").exists()


def test_keyboard_interrupt_inside_the_loop_stops_cleanly(tmp_path):
    gen = train(_config(tmp_path, steps=100, val_every=1000, ckpt_every=1000), data=_sr_data())
    for event in gen:
        if isinstance(event, LossReport) and event.step == 2:
            break
    done = gen.throw(KeyboardInterrupt())
    assert isinstance(done, Finished) and done.cancelled and done.info["steps"] == 2
    assert load_checkpoint(tmp_path / "m.ckpt").step == 2
    assert (tmp_path / "m.safetensors").is_file()


def test_fine_tuning_from_a_model_file_with_frozen_schedule(tmp_path):
    base_events = list(train(_config(tmp_path, "base", steps=2), data=_sr_data()))
    base_path = base_events[-1].result
    base = load_file(str(base_path))
    config = _config(tmp_path, "tuned", steps=3, base_model=str(base_path), freeze_schedule=True)
    events = list(train(config, data=_sr_data(frames=4, size=16, seed=3)))
    assert all(e.lr == pytest.approx(3e-5) for e in events if isinstance(e, LossReport))
    tuned = load_file(str(tmp_path / "tuned.safetensors"))
    schedule = [k for k in base if k.startswith(("lambda_net.", "rho_net."))]
    denoiser = [k for k in base if k.startswith("denoiser.")]
    assert schedule and denoiser
    assert all(torch.equal(base[k], tuned[k]) for k in schedule)
    assert any(not torch.equal(base[k], tuned[k]) for k in denoiser)
    training = read_metadata(tmp_path / "tuned.safetensors")["training"]
    assert training["base_model"] == "base" and training["freeze_schedule"] is True
    assert training["lr"] == pytest.approx(3e-5)
    # the training budget accumulates over fine-tuning runs (2 base steps + 3 tuned steps)
    base_training = read_metadata(base_path)["training"]
    assert base_training["cumulative_steps"] == 2 and training["cumulative_steps"] == 5
    assert training["cumulative_wall_time_s"] >= base_training["cumulative_wall_time_s"]


def test_fine_tuning_task_mismatch_and_bad_settings(tmp_path):
    base = list(train(_config(tmp_path, "base", steps=1), data=_sr_data()))[-1].result
    with pytest.raises(InputError, match="is a 'sr' model"):
        list(train(_config(tmp_path, "q", task="qpi", base_model=str(base)), data=_qpi_data()))
    with pytest.raises(InputError, match="multiple of 8"):
        list(train(_config(tmp_path, patch=30), data=_sr_data()))
    with pytest.raises(InputError, match=".safetensors"):
        list(train(_config(tmp_path, output=tmp_path / "m.pt"), data=_sr_data()))
    with pytest.raises(InputError, match="task"):
        list(
            train(
                _config(tmp_path, "q2", task="qpi", steps=1, resume=tmp_path / "base.ckpt"),
                data=_qpi_data(),
            )
        )


def _qpi_data(frames=4):
    rng = np.random.default_rng(0)
    samples = [simulate_qpi_stack(rng, size=32) for _ in range(frames)]
    return PairedImages(
        "qpi", [s.stack for s in samples], [s.phase for s in samples], val_fraction=0.25
    )


def test_qpi_training_from_four_pairs_reports_phase_mae(tmp_path):
    data = _qpi_data(4)
    assert len(data.train_pairs) == 3 and len(data.val_pairs) == 1
    events = list(train(_config(tmp_path, "q", task="qpi", steps=2, fp16=True), data=data))
    val = [e for e in events if isinstance(e, Validation)][-1]
    assert set(val.metrics) == {"loss", "phase_mae"} and val.metrics["phase_mae"] > 0
    meta = read_metadata(tmp_path / "q.safetensors")
    assert meta["weights"]["dtype"] == "float16"
    assert meta["architecture"]["condition_channels"] == 3  # [TIE prior, c−, c+]
    assert meta["architecture"]["residual"] is True  # learns the phase minus the TIE prior
    assert meta["normalization"]["task"] == "qpi"
    assert meta["normalization"]["prior"]["kind"] == "tie"
    # the D the prior was computed with in training (QPI-A's: no optics given)
    assert meta["normalization"]["prior"]["defocus_D"] == pytest.approx(0.521 / 0.21**2)
    assert meta["physics"]["dz_um"] == pytest.approx(1.0)


def test_synthetic_data_from_the_config(tmp_path):
    config = _config(tmp_path, "syn", steps=1, synthetic_overrides={"size": 32})
    events = list(train(config))
    meta = read_metadata(events[-1].result)
    assert meta["training"]["data"]["source"] == "synthetic"
    assert meta["training"]["data"]["recipe"] == "SR-B"
    assert meta["normalization"]["input"]["offset_adu"] == 100.0


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank, world, folder, port):
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    from pathlib import Path

    folder = Path(folder)
    config = TrainConfig(
        task="sr",
        output=folder / "ddp.safetensors",
        steps=3,
        batch=4,
        patch=16,
        preset="tiny",
        val_every=3,
        val_count=1,
        val_steps=1,
        ckpt_every=3,
        device="cpu",
        warmup_steps=1,
        prefetch=0,
    )
    rng = np.random.default_rng(0)
    pairs = [simulate_sr_pair(rng, size=16) for _ in range(2)]
    data = PairedImages(
        "sr", [p.widefield for p in pairs], [p.target for p in pairs], val_fraction=0.5
    )
    events = list(train(config, data=data))
    info = events[-1].info
    record = {
        "digest": info["weights_sha256"],
        "world": info["world_size"],
        "losses": _losses(events),
        "validations": sum(isinstance(e, Validation) for e in events),
    }
    (folder / f"rank{rank}.json").write_text(json.dumps(record))


def test_distributed_data_parallel_on_two_cpu_processes(tmp_path):
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, str(tmp_path), _free_port()), nprocs=2, join=True
    )
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["digest"] == r1["digest"]  # gradients were averaged: identical weights
    assert r0["losses"] != r1["losses"]  # each rank saw its own data
    assert r0["validations"] == 1 and r1["validations"] == 0  # only rank 0 validates
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ddp.ckpt",
        "ddp.safetensors",
        "rank0.json",
        "rank1.json",
    ]
    assert read_metadata(tmp_path / "ddp.safetensors")["training"]["world_size"] == 2


def test_cosine_learning_rate_warms_up_then_decays_to_the_floor(tmp_path):
    config = TrainConfig(task="sr", output=tmp_path / "m.safetensors", steps=1100, lr=1e-3,
                         warmup_steps=100, lr_schedule="cosine", lr_min_fraction=0.1)  # fmt: skip
    rates = np.array([learning_rate_at(step, config) for step in range(1, 1101)])
    assert rates[0] == pytest.approx(1e-5) and rates[99] == pytest.approx(1e-3)
    assert rates[599] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5), rel=1e-6)  # half-way: mid-point
    assert rates[-1] == pytest.approx(1e-4)  # the floor at the last step
    assert np.all(np.diff(rates[99:]) <= 0)  # monotone after the warm-up
    constant = TrainConfig(
        task="sr", output=tmp_path / "m.safetensors", steps=1100, lr=1e-3, lr_schedule="constant"
    )
    assert learning_rate_at(1100, constant) == pytest.approx(1e-3)
    with pytest.raises(InputError, match="lr_schedule"):
        TrainConfig(task="sr", output=tmp_path / "m.safetensors", lr_schedule="step").validate()


def test_a_rare_non_finite_gradient_skips_the_update_and_a_run_of_them_stops(tmp_path, monkeypatch):
    real = torch.nn.utils.clip_grad_norm_
    calls = []

    def flaky(parameters, max_norm):
        calls.append(1)
        norm = real(parameters, max_norm)
        return torch.tensor(float("nan")) if len(calls) == 2 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", flaky)
    events = list(train(_config(tmp_path, "a", steps=4), data=_sr_data()))
    assert isinstance(events[-1], Finished) and events[-1].info["steps"] == 4
    reports = [e for e in events if isinstance(e, LossReport)]
    assert np.isnan(reports[1].losses["grad_norm"]) and np.isfinite(reports[2].losses["grad_norm"])
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, m: torch.tensor(float("nan")))
    with pytest.raises(FloatingPointError, match="diverged at step 6"):
        list(train(_config(tmp_path, "b", steps=10), data=_sr_data()))
