"""One training run as its parts see it (`Run`), and what it ended with (`TrainResult`).

    state = new_state(batches.steps_per_epoch, "float32", world_size=1)
    run = Run(corpus, out, options, where, device, train, val, batches, model, optimizer, dtype, state)
    run.state.step                 # where training stands: the TrainState a checkpoint saves
    evaluation.evaluate_run(run, clock); samples.write_samples(run); checkpointing.save(run, elapsed)

The Trainer (reverie.text.train) builds the Run in `prepare()` and steps it; evaluation, samples,
checkpointing and ddp each take it whole. What a checkpoint restores lives here too: `state` (the
counters, saved as config.json's "state" with dataclasses.asdict), the carried hidden state, the
metric rows and the run's tensor files.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reverie.distributed import Ranks
from reverie.interrupt import EXIT_CODES
from reverie.text.batches import Batches
from reverie.text.corpus import TokenizedCorpus
from reverie.text.language_model import LanguageModel
from reverie.text.options import TrainOptions
from reverie.text.rundir import Stored, TrainState

STOP_REASONS = {
    "epochs": "its --epochs",
    "steps": "its --steps",
    "minutes": "its --minutes",
    "patience": "early stopping (--patience evaluations without a better validation loss)",
}


def new_state(steps_per_epoch: int, dtype: str, world_size: int) -> TrainState:
    """The state of a run before its first step. The optimizer, RNG and carried states stay None
    until a checkpoint fills them in (checkpointing.save)."""
    return TrainState(
        step=0,
        epoch=0,
        step_in_epoch=0,
        tokens=0,
        steps_per_epoch=steps_per_epoch,
        elapsed_s=0.0,
        best_val_loss=None,
        best_step=None,
        last_val_loss=None,
        last_eval_step=None,
        dtype=dtype,
        world_size=world_size,
        optimizer=None,
        rng=None,
        rng_ranks=None,
        carry=None,
    )


@dataclass
class Run:
    """What a training run works with on this process, and where it stands."""

    corpus: TokenizedCorpus
    out: Path
    options: TrainOptions
    where: Ranks
    device: torch.device
    train_ids: np.ndarray
    val_ids: np.ndarray
    batches: Batches
    model: LanguageModel
    optimizer: torch.optim.Optimizer
    dtype: torch.dtype
    state: TrainState
    carry: Any = None  # the hidden state carried to the next step (stream batches)
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv's rows (rank 0's)
    files: dict[str, Stored] = field(default_factory=dict)  # the last checkpoint's tensor files

    @property
    def steps_per_epoch(self) -> int:
        return self.state.steps_per_epoch

    @property
    def epochs(self) -> float:
        """Epochs trained, a fraction after a part of one."""
        return self.state.step / self.state.steps_per_epoch

    def resume_command(self) -> str:
        return resume_command(self.corpus.sources, self.out, self.where.world_size)


def resume_command(sources: Sequence[str], out: Path, world_size: int = 1) -> str:
    """The command that continues a run (under torchrun when it ran on several processes)."""
    launcher = ["torchrun", "--standalone", f"--nproc_per_node={world_size}", "-m"] if world_size > 1 else []
    return shlex.join([*launcher, "reverie", "train", *sources, "--out", str(out), "--resume"])


@dataclass
class TrainResult:
    """What a training run ended with."""

    run_dir: Path
    step: int
    epoch: float
    train_loss: float | None
    val_loss: float | None  # nats per token
    best_val_loss: float | None
    stop_reason: str  # "epochs" | "steps" | "minutes" | "patience" | "interrupted"
    resume_command: str
    # what interrupted it: "Ctrl-C" or "SIGTERM" (None: another rank's signal, or the stop= event)
    signal: str | None = None

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == "interrupted"

    @property
    def exit_code(self) -> int:
        """What the command exits with: 0, or 130 after Ctrl-C and 143 after SIGTERM, as shells do."""
        return EXIT_CODES.get(self.signal or "Ctrl-C", 130) if self.interrupted else 0

    @property
    def val_bits(self) -> float | None:
        return None if self.val_loss is None else self.val_loss / math.log(2)

    def summary(self) -> str:
        """One line: steps, why it stopped, the losses, and where the run is."""
        line = f"reverie: {self.step} steps ({self.epoch:.2f} epochs), "
        line += f"stopped by {STOP_REASONS.get(self.stop_reason, self.signal or 'a stop request')}"
        if self.val_loss is not None:
            line += (
                f"; validation loss {self.val_loss:.4f} nats/token ({self.val_bits:.4f} bits), "
                f"best {self.best_val_loss:.4f}"
            )
        return f"{line}; run saved in {self.run_dir}"
