"""A training run on several processes (torchrun): its replicas and what the ranks share.

    network = replica(model, device, where)                 # DDP averages gradients during backward
    tensors = load_shared(saved, out, rundir.STATE)         # rank 0 reads, every rank gets the bytes
    carry = share_of(saved_carry, batches, model, where)    # this rank's streams of a saved state
    saved = gathered_carry(run)                             # all ranks' streams, in global order
    best, last = from_main([run.state.best_val_loss, ...])  # rank 0's figures on every rank
    per_rank_batch_size(16, 2, 4, out)                      # 8: a resumed run keeps its global batch

Each process trains a DistributedDataParallel replica on its own share of every step's batch;
only rank 0 evaluates, samples and writes the run, so whatever it decides (validation losses, early
stopping) is handed to the others. The collectives come from reverie.distributed and do nothing for
a single process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.parallel import DistributedDataParallel

from reverie import distributed
from reverie.checkpoint import load_tensor_bytes
from reverie.distributed import Ranks
from reverie.errors import require
from reverie.text.batches import Batches
from reverie.text.language_model import LanguageModel, map_state, state_tensors
from reverie.text.rundir import RunConfig

if TYPE_CHECKING:
    from reverie.text.run import Run


def replica(model: torch.nn.Module, device: torch.device, where: Ranks) -> torch.nn.Module:
    """The module a step runs: `model` itself alone, a DistributedDataParallel replica with peers."""
    if not where.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def load_shared(saved: RunConfig, out: Path, role: str) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file that rank 0 reads and hands to every rank (the run directory
    need only be on rank 0's machine)."""
    data = distributed.share_from_main(lambda: saved.read_checked(out, role))
    return load_tensor_bytes(data, saved.path_of(out, role))


def share_of(carry: Any, batches: Batches, model: LanguageModel, where: Ranks) -> Any:
    """This rank's streams of a saved (global) carried state; None (a fresh state) when the run
    had another set of streams."""
    if carry is None:
        return None
    streams, dim = getattr(batches, "streams", None), model.state_batch_dim
    if any(t.shape[dim] != streams for t in state_tensors(carry)):
        return None
    share = streams // where.world_size
    return map_state(carry, lambda t: t.narrow(dim, where.rank * share, share))


def gathered_carry(run: Run) -> Any:
    """The carried state of all ranks' streams, in global order (collective with several ranks)."""
    if not run.where.distributed or run.carry is None:
        return run.carry
    dim = run.model.state_batch_dim
    return map_state(run.carry, lambda t: torch.cat(distributed.all_gather(t), dim=dim))


def from_main(values: Sequence[float | None]) -> list[float | None]:
    """Rank 0's `values` on every rank (None passes as NaN), as float32 numbers."""
    local = torch.tensor([math.nan if value is None else value for value in values])
    return [None if math.isnan(value) else value for value in distributed.broadcast(local).tolist()]


def per_rank_batch_size(batch_size: int, trained_world_size: int, world_size: int, out: Path) -> int:
    """--batch-size for each of `world_size` processes resuming a run that trained with `batch_size`
    on `trained_world_size` processes: a resumed run keeps its global batch, whatever the processes now."""
    global_batch = int(batch_size) * int(trained_world_size)
    require(
        global_batch % world_size == 0,
        f"the run in {out} trains on a global batch of {global_batch} sequences, which {world_size} "
        f"processes cannot share evenly; resume with a number of processes that divides {global_batch}",
    )
    return global_batch // world_size
