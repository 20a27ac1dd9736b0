"""Training checkpoints: safetensors + JSON round trip, atomic writes, clear errors."""

import json

import pytest
import torch
from safetensors.torch import save_file

from napari_cvdm.errors import InputError
from napari_cvdm.workflows.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _state():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    model(torch.randn(5, 3)).square().mean().backward()
    opt.step()
    return model, opt


def test_round_trip_restores_model_optimizer_and_info(tmp_path):
    model, opt = _state()
    path = save_checkpoint(
        tmp_path / "run.ckpt",
        step=7,
        model_state=model.state_dict(),
        ema_state={k: v * 2 for k, v in model.state_dict().items()},
        optimizer_state=opt.state_dict(),
        rng_state=capture_rng_state(),
        info={"task": "sr", "history": [1.5, 2.5]},
    )
    data = load_checkpoint(path)
    assert data.step == 7
    assert data.info == {"task": "sr", "history": [1.5, 2.5]}
    for key, value in model.state_dict().items():
        assert torch.equal(data.model_state[key], value)
        assert torch.equal(data.ema_state[key], value * 2)
    model2, opt2 = _state()
    opt2.load_state_dict(data.optimizer_state)
    for (i, a), (j, b) in zip(
        opt.state_dict()["state"].items(), opt2.state_dict()["state"].items()
    ):
        assert i == j
        for key in a:
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key]))
    assert opt2.param_groups[0]["lr"] == 1e-3
    # no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(11)
    state = capture_rng_state()
    expected = torch.rand(4)
    model, opt = _state()
    save_checkpoint(
        tmp_path / "a.ckpt",
        step=1,
        model_state=model.state_dict(),
        ema_state={},
        optimizer_state=opt.state_dict(),
        rng_state=state,
    )
    torch.manual_seed(999)
    restore_rng_state(load_checkpoint(tmp_path / "a.ckpt").rng_state)
    assert torch.equal(torch.rand(4), expected)


def test_missing_and_foreign_files_are_clear_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(InputError, match="not a readable"):
        load_checkpoint(garbage)
    model_like = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(model_like), metadata={"napari_cvdm": json.dumps({})})
    with pytest.raises(InputError, match="--base-model"):
        load_checkpoint(model_like)
