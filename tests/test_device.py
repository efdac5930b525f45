"""Device and dtype names resolve, and unavailable or unknown ones are refused in one line."""

import pytest
import torch

from reverie.device import autocast, resolve_device, resolve_dtype
from reverie.errors import ReverieError


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}


def test_unknown_device_and_dtype_refused():
    with pytest.raises(ReverieError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ReverieError, match="unknown dtype"):
        resolve_dtype("float8")


def test_missing_cuda_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ReverieError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_bfloat16_autocast_runs_matmul_in_bf16():
    a = torch.ones(4, 4)
    with autocast(torch.device("cpu"), resolve_dtype("bfloat16")):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), resolve_dtype("float32")):
        assert (a @ a).dtype == torch.float32


def test_auto_dtype_is_what_measuring_finds():
    from reverie.precision import Choice

    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu, lambda: Choice("bfloat16", "faster", {})) == torch.bfloat16
    assert resolve_dtype("auto", cpu, lambda: Choice("float32 channels-last", "faster", {})) == torch.float32
    assert resolve_dtype("auto", cpu) == torch.float32  # nothing to measure: the safe choice
