"""A training run's budget: epochs, steps or minutes, whichever is reached first.

    budget = Budget(epochs=None, steps=None, minutes=5.0, steps_per_epoch=3000)
    budget.update_time(reserve_s=4.0)       # after each step: how much of the minutes is spent
    budget.progress(step)                   # 0..1, for the learning-rate schedule
    budget.reason(step, epoch)              # "steps" | "epochs" | "minutes" | None

Budgets are totals for the run: a resumed run counts the time and steps it already spent. The
minutes budget keeps back the time the final evaluation and samples will take (`reserve_s`), so the
whole run fits in it. With several processes, rank 0's clock decides for all: the trainer agrees on
`time_fraction` after each step (see reverie.distributed.agree).
"""

from __future__ import annotations

import time


class Budget:
    """The budget of one run, and the minutes spent so far."""

    def __init__(
        self,
        epochs: int | None,
        steps: int | None,
        minutes: float | None,
        steps_per_epoch: int,
        elapsed_before: float = 0.0,
    ) -> None:
        self.epochs, self.steps, self.minutes = epochs, steps, minutes
        self.steps_per_epoch = steps_per_epoch
        self.elapsed_before = elapsed_before
        self.session_start = time.monotonic()
        self.time_fraction = 0.0  # of the minutes budget, as last measured (or agreed between ranks)
        self.update_time(0.0)

    @property
    def elapsed(self) -> float:
        """Seconds of training over the whole run, this session included."""
        return self.elapsed_before + time.monotonic() - self.session_start

    @property
    def total_steps(self) -> int | None:
        known = [b for b in (self.steps, self.epochs and self.epochs * self.steps_per_epoch) if b]
        return min(known) if known else None

    def training_seconds(self, reserve_s: float) -> float:
        """The minutes budget less `reserve_s` for the final report, but at least half of it."""
        budget = 60.0 * (self.minutes or 0.0)
        return max(budget - reserve_s, 0.5 * budget)

    def update_time(self, reserve_s: float) -> float:
        """Measure the fraction of the minutes budget spent (0 without one) and keep it."""
        self.time_fraction = self.elapsed / self.training_seconds(reserve_s) if self.minutes else 0.0
        return self.time_fraction

    def seconds_left(self, reserve_s: float) -> float:
        return self.training_seconds(reserve_s) - self.elapsed

    def progress(self, step: int) -> float:
        """The fraction of the budget spent: of the steps, or of the minutes, whichever is further."""
        parts = [self.time_fraction] if self.minutes else []
        if self.total_steps:
            parts.append(step / self.total_steps)
        return max(parts)

    def reason(self, step: int, epoch: int) -> str | None:
        """Which budget is used up after `step` steps and `epoch` whole epochs, if any."""
        if self.steps is not None and step >= self.steps:
            return "steps"
        if self.epochs is not None and epoch >= self.epochs:
            return "epochs"
        if self.minutes is not None and self.time_fraction >= 1.0:
            return "minutes"
        return None
