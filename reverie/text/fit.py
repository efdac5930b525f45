"""Settings that fit the budget: the dropout of a recurrent model chosen for the epochs that this run's
budget buys on this machine, when the user gives no --dropout.

    from reverie.text.fit import planned_epochs, dropout_for
    epochs = planned_epochs(epochs=None, steps=None, minutes=5, steps_per_epoch=980, seconds_per_step=0.05)
    dropout_for(epochs)        # 0.2 for about 6 epochs

With --epochs or --steps the epochs are known; with --minutes they are the minutes over the time of
a training step measured in the run's first second (rank 0, on its first batch, in the run's dtype).
The rule comes from `python benchmarks/sweep.py lstm-dropout` (docs/benchmarks.md, "Sweep:
lstm-dropout"): the default 2x448 LSTM on tiny-shakespeare with dropout 0, 0.1 and 0.2 after about
1.5, 3 and 6 epochs. Dropout only costs while a model sees its text a few times (0 best at 1.5 and 3
epochs) and pays once it sees it more often (0.2 best at 6); the switch lies between the two, where
the losses cross, and 0.1 bridges it. Beyond 6 epochs the rule keeps 0.2 unmeasured.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

# (epochs up to, dropout): the first row whose bound the planned epochs do not pass
DROPOUT_RULE: tuple[tuple[float, float], ...] = ((3.5, 0.0), (4.5, 0.1), (math.inf, 0.2))
FITTED_KINDS = ("lstm", "gru")  # the recurrent models the rule was fitted on; the others keep 0
# a whole step (update, batches, bar) against the forward and backward timed: with it, a 1-minute
# default run on tiny-shakespeare planned 0.60 epochs and made 0.61 (docs/benchmarks.md)
STEP_OVERHEAD = 1.15
TIMED_STEPS = 3


@dataclass(frozen=True)
class FittedDropout:
    """The dropout chosen for a run, and the line that says why."""

    dropout: float
    reason: str


def dropout_for(epochs: float) -> float:
    """The dropout of the rule for a run of `epochs` passes over its text."""
    return next(dropout for bound, dropout in DROPOUT_RULE if epochs <= bound)


def planned_epochs(
    epochs: int | None,
    steps: int | None,
    minutes: float | None,
    steps_per_epoch: int,
    seconds_per_step: float | None,
) -> float:
    """The epochs the first budget reached allows (minutes need the measured seconds per step)."""
    allowed = [math.inf]
    if epochs is not None:
        allowed.append(float(epochs))
    if steps is not None:
        allowed.append(steps / steps_per_epoch)
    if minutes is not None and seconds_per_step:
        allowed.append(minutes * 60 / (seconds_per_step * STEP_OVERHEAD) / steps_per_epoch)
    return min(allowed)


def rule_text() -> str:
    bounds = [f"{dropout:g} up to {bound:g} epochs" for bound, dropout in DROPOUT_RULE if bound < math.inf]
    return ", ".join(bounds) + f", {DROPOUT_RULE[-1][1]:g} beyond"


def fit_dropout(
    kind: str,
    epochs: int | None,
    steps: int | None,
    minutes: float | None,
    steps_per_epoch: int,
    time_step: Callable[[], object],
) -> FittedDropout:
    """The dropout of a run that was given none: from the rule for recurrent models (`time_step`
    times one forward and backward, called only for a budget in minutes), 0 for the others."""
    if kind not in FITTED_KINDS:
        return FittedDropout(0.0, f"dropout 0 for a {kind} model")
    seconds = None
    if minutes is not None:
        time_step()  # warm up
        seconds = min(_timed(time_step) for _ in range(TIMED_STEPS))
    planned = planned_epochs(epochs, steps, minutes, steps_per_epoch, seconds)
    dropout = dropout_for(planned)
    how = f"{planned:.1f} epochs"
    if seconds is not None:
        step_ms = seconds * STEP_OVERHEAD * 1e3
        how += f" (about {step_ms:.0f} ms a step here, {steps_per_epoch:,} steps an epoch)"
    return FittedDropout(dropout, f"--dropout {dropout:g} for a budget of about {how}; rule: {rule_text()}")


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started
