"""Stopping a training run before its budget: Ctrl-C, SIGTERM, or the caller's `stop=`.

    stopping = Stopping(where, stop=asked)      # a reverie.jobs.Job: stop= is reverie.stopping's
    with stopping:                              # Ctrl-C and SIGTERM are caught (reverie.interrupt)
        try:
            while not stopping.requested:       # checked once per step
                stopping.computing(device)      # a step's phases, for a second Ctrl-C
                ...
                stopping.updating()
                optimizer.step()
                stopping.stepped()
        except KeyboardInterrupt:
            if line := stopping.interrupted(device, out, resume):
                print(line)                     # the checkpoint on disk must stay: give up
                raise

A first Ctrl-C or SIGTERM, or `stop=` saying stop (from on_step, another thread, a web page's Stop),
lets the step in flight finish; the trainer then saves a run that resumes. With several ranks they
agree after each step (reverie.jobs.Job.agree, as a video's processes do after each frame), so
all stop at the same step: the one whose agreement first sees a request (a stop set from on_step
ends the next step). A KeyboardInterrupt in the loop (a second Ctrl-C, or one that on_step raises)
drops the step in flight while it only computes and loses nothing between steps; while the optimizer
updates the weights, or with several ranks (the others cannot save with it), the trainer gives up
and the last checkpoint on disk is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reverie import rng
from reverie.distributed import Ranks
from reverie.jobs import Job
from reverie.stopping import Stop


class Stopping(Job):
    """Whether this process was asked to stop (reverie.jobs.Job: a signal or `stop=`), and where in
    a step a KeyboardInterrupt landed."""

    def __init__(self, where: Ranks, stop: Stop | None = None) -> None:
        super().__init__(stop, "stopping after this step and saving" if where.is_main else None)
        self.where = where
        self.phase = "idle"  # "compute" | "update": where a KeyboardInterrupt landed
        self._rng_before_step: dict[str, Any] = {}

    def computing(self, device: torch.device) -> None:
        """A step begins: until `updating`, it can be dropped and done again."""
        self.phase = "compute"
        self._rng_before_step = rng.capture(device)

    def updating(self) -> None:
        self.phase = "update"

    def stepped(self) -> None:
        self.phase = "idle"

    def interrupted(self, device: torch.device, out: Path, resume: str) -> str | None:
        """After a KeyboardInterrupt in the loop: drop the step in flight (its random draws undone)
        so that saving now leaves a run that resumes, and return None; or, with the weights half
        updated or with several ranks, the line to print before the interrupt goes on (the last
        checkpoint on disk is kept)."""
        if self.phase == "update" or self.where.distributed:
            place = f"rank {self.where.rank} " if self.where.distributed else ""
            return (
                f"reverie: {place}interrupted during a step; the last checkpoint in {out} is kept. "
                f"Resume with: {resume}"
            )
        if self.phase == "compute":  # the step in flight is dropped: resuming redoes it
            rng.restore(self._rng_before_step, device)
        return None
