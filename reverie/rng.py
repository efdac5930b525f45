"""Random-number state: captured into a checkpoint and restored, so a resumed run draws the same numbers.

    state = capture(device)        # {"cpu": ByteTensor, "cuda": ByteTensor (on a GPU)}
    ...
    restore(state, device)         # the next draws are the ones that followed the capture

`seed_option` declares a --seed option (the one bound every seed shares). `rank_seed` gives each
extra process of a torchrun job its own seed drawn from --seed, so that the
ranks draw different dropout masks while rank 0 keeps a single process's stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reverie.options import option

SEED_LIMIT = 2**63 - 1  # the largest seed every generator used here takes (numpy, torch)


def seed_option(default: int | None, help: str) -> Any:
    """The --seed option of an options dataclass: a whole number in [0, 2**63 - 1]."""
    return option(default, help, low=0, high=SEED_LIMIT, rule="a whole number in [0, 2**63 - 1]", metavar="S")


def capture(device: torch.device) -> dict[str, torch.Tensor]:
    """The torch generator states that training on `device` draws from."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore(state: dict[str, Any], device: torch.device) -> None:
    """Put back states made by `capture` (a GPU's state is skipped on a machine without that GPU)."""
    if "cpu" in state:
        torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        if isinstance(state["cuda"], (list, tuple)):  # every GPU's, as older runs saved it
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            torch.cuda.set_rng_state(state["cuda"], device)


def rank_seed(seed: int, rank: int, step: int) -> int:
    """A torch seed for rank `rank` (> 0) at `step`, drawn from `seed`."""
    return int(np.random.default_rng([seed, rank, step]).integers(2**63))
