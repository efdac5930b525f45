"""Device and precision choice shared by training and dreaming.

`resolve_device("auto")` picks cuda, then mps, then cpu. `resolve_dtype("auto", device)` picks
bfloat16 only where the hardware runs it fast (CUDA GPUs with bfloat16, CPUs with AMX tiles) and
float32 elsewhere: on a CPU without AMX, PyTorch emulates bfloat16 matmuls and they run several times
slower than float32. `autocast(device, dtype)` returns the context that runs matmuls and convolutions
in bfloat16 where asked (weights stay float32).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from reverie.errors import ReverieError
from reverie.options import option

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DTYPE_CHOICES = ("auto", *DTYPES)  # what --dtype accepts: auto picks per device (resolve_dtype)


def device_option(help: str = "where to run") -> Any:
    """The --device option of an options dataclass (auto, or one of DEVICES)."""
    return option("auto", help, choices=DEVICES)


def dtype_option(note: str = "") -> Any:
    """The --dtype option of an options dataclass; `note` adds what the command does with it."""
    help = "bfloat16 autocast or float32; auto is bfloat16 where the hardware runs it fast (CUDA GPUs, "
    help += "CPUs with AMX)"
    return option("auto", f"{help}{note}", choices=DTYPE_CHOICES)


def resolve_device(name: str = "auto") -> torch.device:
    """Turn `auto|cpu|cuda|mps` into a torch.device, refusing one that is not available."""
    if name not in DEVICES:
        raise ReverieError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ReverieError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ReverieError("--device mps was asked for but MPS is not available; use --device cpu")
    return torch.device(name)


def has_fast_bfloat16(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 matmuls natively (a CUDA GPU of compute capability 8 or
    more, or a CPU with AMX); older GPUs only emulate it, like CPUs without AMX."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return "amx_bf16" in _cpu_flags()
    return False


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_dtype(name: str, device: torch.device | None = None) -> torch.dtype:
    """Turn `float32|bfloat16|auto` into a torch dtype (`auto`: bfloat16 where it is fast on `device`)."""
    if name == "auto":
        fast = device is not None and has_fast_bfloat16(device)
        return torch.bfloat16 if fast else torch.float32
    if name not in DTYPES:
        raise ReverieError(f"unknown dtype {name!r}; choose one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on `device` when dtype is bfloat16; a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
