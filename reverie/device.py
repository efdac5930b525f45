"""Device and precision choice shared by training and dreaming.

`resolve_device("auto")` picks cuda, then mps, then cpu. `resolve_dtype("auto", device, measure)`
is what measuring the model's own work on this machine finds faster (reverie.precision: bfloat16 runs
at a fifth of float32 on some CPUs and at three times it on others, whatever their flags say).
`autocast(device, dtype)` returns the context that runs matmuls and convolutions in bfloat16 where
asked (weights stay float32).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from reverie.errors import ReverieError
from reverie.options import option

if TYPE_CHECKING:
    from reverie.precision import Choice

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DTYPE_CHOICES = ("auto", *DTYPES)  # what --dtype accepts: auto picks per device (resolve_dtype)


def device_option(help: str = "where to run") -> Any:
    """The --device option of an options dataclass (auto, or one of DEVICES)."""
    return option("auto", help, choices=DEVICES)


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """--device for a command whose options class has none (generate, visualize), as device_option
    writes it for the others."""
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to run (default: auto)")


def dtype_option(note: str = "") -> Any:
    """The --dtype option of an options dataclass; `note` adds what the command does with it."""
    help = "bfloat16 autocast or float32; auto measures which is faster for this model here (once, cached)"
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


def resolve_dtype(
    name: str, device: torch.device | None = None, measure: Callable[[], Choice] | None = None
) -> torch.dtype:
    """Turn `float32|bfloat16|auto` into a torch dtype. `auto` is what `measure` finds (the model's
    own work timed on this machine, see reverie.precision), or float32 where there is nothing to
    measure."""
    if name == "auto":
        return measure().dtype if measure is not None else torch.float32
    if name not in DTYPES:
        raise ReverieError(f"unknown dtype {name!r}; choose one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def use_available_cores() -> int:
    """Let torch use as many threads as the cores this process may run on (its CPU affinity, a
    cgroup's CPU quota; shared among the processes torchrun starts on this machine), not the
    machine's count, unless OMP_NUM_THREADS says otherwise. Returns the number of threads."""
    import os

    from reverie.precision import available_cores

    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return torch.get_num_threads()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    threads = max(1, available_cores() // local)
    torch.set_num_threads(threads)
    return threads


def compiled(module: Any, device: torch.device, **settings: Any) -> Any:
    """`torch.compile(module)` (a module or a function), refused in one line where this platform
    cannot compile: on the CPU torch.compile's inductor needs a C++ compiler."""
    import shutil

    if device.type == "cpu" and not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        raise ReverieError(
            "--compile needs a C++ compiler for the CPU and none was found; install g++ or leave "
            "--compile out"
        )
    try:
        return torch.compile(module, **settings)
    except RuntimeError as exc:  # e.g. a Python version torch.compile does not support yet
        raise ReverieError(
            f"torch.compile cannot run here ({str(exc).splitlines()[0]}); leave --compile out"
        ) from None


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on `device` when dtype is bfloat16; a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
