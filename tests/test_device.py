"""Device resolution with torch's CUDA/MPS probes monkeypatched (no GPU needed)."""

import pytest
import torch

from napari_cvdm.engine import device as dev
from napari_cvdm.errors import DeviceError, UserError


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("CI", "GITHUB_ACTIONS", "NAPARI_CVDM_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def fake_hardware(monkeypatch, cuda_count=0, mps=False, cuda_build=True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"Fake GPU {i}")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(torch.version, "cuda", "12.4" if cuda_build else None)


def test_auto_prefers_cuda_then_mps_then_cpu(clean_env):
    fake_hardware(clean_env, cuda_count=2, mps=True)
    assert dev.resolve_device("auto") == torch.device("cuda:0")
    fake_hardware(clean_env, cuda_count=0, mps=True)
    assert dev.resolve_device("auto") == torch.device("mps")
    fake_hardware(clean_env, cuda_count=0, mps=False)
    assert dev.resolve_device("auto") == torch.device("cpu")
    assert dev.resolve_device(None) == torch.device("cpu")


@pytest.mark.parametrize("variable", ["CI", "GITHUB_ACTIONS"])
def test_auto_is_cpu_in_ci(clean_env, variable):
    fake_hardware(clean_env, cuda_count=1, mps=True)
    clean_env.setenv(variable, "true")
    assert dev.resolve_device("auto") == torch.device("cpu")
    # an explicit choice is still honoured in CI
    assert dev.resolve_device("cuda") == torch.device("cuda:0")


def test_explicit_cuda_index(clean_env):
    fake_hardware(clean_env, cuda_count=2)
    assert dev.resolve_device("cuda:1") == torch.device("cuda:1")
    assert dev.resolve_device("CUDA") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match=r"2 CUDA device\(s\)"):
        dev.resolve_device("cuda:5")


def test_cuda_absent_gives_readable_error(clean_env):
    fake_hardware(clean_env, cuda_count=0, cuda_build=False)
    with pytest.raises(DeviceError, match="this torch build has no CUDA.*--device cpu"):
        dev.resolve_device("cuda")
    fake_hardware(clean_env, cuda_count=0, cuda_build=True)
    with pytest.raises(DeviceError, match="no CUDA GPU is usable"):
        dev.resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="MPS"):
        dev.resolve_device("mps")


def test_environment_override(clean_env):
    fake_hardware(clean_env, cuda_count=1)
    clean_env.setenv("NAPARI_CVDM_DEVICE", "cpu")
    assert dev.resolve_device("cuda") == torch.device("cpu")
    clean_env.setenv("NAPARI_CVDM_DEVICE", "gpu")
    with pytest.raises(DeviceError, match="NAPARI_CVDM_DEVICE='gpu'"):
        dev.resolve_device("auto")


def test_bad_name_is_a_user_error(clean_env):
    fake_hardware(clean_env)
    with pytest.raises(UserError, match="unknown device 'tpu'.*auto, cpu, cuda"):
        dev.resolve_device("tpu")


def test_available_devices_lists_only_present(clean_env):
    fake_hardware(clean_env, cuda_count=2, mps=False)
    devices = dev.available_devices()
    ids = [d for d, _ in devices]
    assert ids == ["auto", "cuda:0", "cuda:1", "cpu"]
    assert devices[0][1] == "auto (cuda:0)"
    assert "Fake GPU 1" in devices[2][1]
    fake_hardware(clean_env, cuda_count=0, mps=True)
    assert [d for d, _ in dev.available_devices()] == ["auto", "mps", "cpu"]


def test_prepare_environment_sets_mps_fallback_on_macos(clean_env):
    clean_env.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    clean_env.setattr(dev.sys, "platform", "darwin")
    dev.prepare_torch_environment()
    import os

    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
