"""Settings that fit the machine and the budget: what `--dtype auto` runs a text model in, and the
dropout of a recurrent model chosen for the epochs that this run's budget buys on this machine,
when the user gives no --dropout.

    from reverie.text.fit import planned_epochs, dropout_for
    epochs = planned_epochs(epochs=None, steps=None, minutes=5, steps_per_epoch=980, seconds_per_step=0.05)
    dropout_for(epochs)        # 0.2 for about 6 epochs
    options, model, dtype = fitted_model(options, vocab_size, batches, device, where)

`fitted_model` builds a run's model from --seed in the dtype that --dtype auto measures
(`measure_dtype`), with the dropout the budget buys when none is given (`fitted_dropout`). Both
time a training step of the model on its first batch (`step_work`, which draws no number from the
run's random stream) on rank 0, and every rank takes rank 0's answer; reverie.precision keeps the
dtype's choice once per machine and model kind (`text_kind`).

With --epochs or --steps the epochs are known; with --minutes they are the minutes over the time of
a training step measured in the run's first second (rank 0, on its first batch, in the run's dtype).
The rule comes from `python benchmarks/sweep.py lstm-dropout` (docs/benchmarks.md, "Sweep:
lstm-dropout"): the default 2x448 LSTM on tiny-shakespeare with dropout 0, 0.1 and 0.2 after about
1.5, 3 and 6 epochs. Dropout only costs while a model sees its text a few times (0 best at 1.5 and 3
epochs) and pays once it sees it more often (0.2 best at 6); the switch lies between the two, where
the losses cross, and 0.1 bridges it. Beyond 6 epochs the rule keeps 0.2 unmeasured.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from reverie import distributed, precision, rng
from reverie.device import autocast, resolve_dtype
from reverie.distributed import Ranks
from reverie.text.batches import Batches, training_loss
from reverie.text.language_model import LanguageModel, ModelConfig
from reverie.text.models import build_model
from reverie.text.options import TrainOptions

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


# ---- a step of the run's model, timed on rank 0 --------------------------------------------------


def text_kind(config: ModelConfig, options: TrainOptions) -> str:
    """The model kind --dtype auto measures once per machine: the model's shape and its batches."""
    heads = f" predict {config.predict}" if config.predict > 1 else ""
    return (
        f"text {config.kind} {config.layers}x{config.hidden} embed {config.embed} vocab "
        f"{config.vocab_size} batch {options.batch_size}x{options.window} {options.batching}{heads}"
    )


def step_work(
    model: torch.nn.Module,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device,
) -> precision.Work:
    """One training step's forward and backward (no update) in a given way, for reverie.precision;
    it draws no number from the run's random stream."""
    parameters = [p for p in model.parameters() if p.requires_grad]

    def work(way: str) -> tuple[float, torch.Tensor]:
        saved = rng.capture(device)
        torch.manual_seed(0)  # the same dropout masks for every way
        try:
            with autocast(device, precision.dtype_of(way)):
                outputs, _ = model(inputs, ahead=True)
            loss = training_loss(outputs, targets, loss_of)[0]
            gradients = torch.autograd.grad(loss, parameters)
        finally:
            rng.restore(saved, device)
        return float(loss.detach()), torch.cat([g.flatten() for g in gradients])

    return work


def _first_step(model: torch.nn.Module, batches: Batches, device: torch.device) -> precision.Work:
    inputs, targets = (t.to(device) for t in next(iter(batches.epoch(0))))
    return step_work(model, batches.loss, inputs, targets, device)


def measure_dtype(
    model: torch.nn.Module,
    batches: Batches,
    config: ModelConfig,
    options: TrainOptions,
    device: torch.device,
    where: Ranks,
) -> precision.Choice:
    """What `--dtype auto` runs on this machine: rank 0 measures (once per machine and model kind,
    see reverie.precision) a training step of this model on its first batch, and every rank takes
    its choice."""
    work = _first_step(model, batches, device)

    def measure() -> bytes:
        choice = precision.choose(text_kind(config, options), device, work)
        return json.dumps(dataclasses.asdict(choice)).encode()

    choice = precision.Choice(**json.loads(distributed.share_from_main(measure)))
    if where.is_main:
        print(f"reverie: --dtype auto: {choice.way} ({choice.reason})", file=sys.stderr, flush=True)
    return choice


def fitted_dropout(
    model: torch.nn.Module,
    batches: Batches,
    options: TrainOptions,
    device: torch.device,
    dtype: torch.dtype,
    where: Ranks,
) -> float:
    """The dropout for the epochs this budget buys, decided on rank 0 (which times a step of this
    model on its first batch for a budget in minutes) for every rank."""

    def fit() -> bytes:
        work = _first_step(model, batches, device)
        way = str(dtype).removeprefix("torch.")
        fitted = fit_dropout(
            options.model.kind,
            options.epochs,
            options.steps,
            options.minutes,
            batches.steps_per_epoch,
            lambda: work(way),
        )
        if where.is_main:
            print(f"reverie: {fitted.reason}", file=sys.stderr, flush=True)
        return json.dumps(fitted.dropout).encode()

    return float(json.loads(distributed.share_from_main(fit)))


class Fitted(NamedTuple):
    """A run's model and the settings fitted to it: the options with the dropout chosen, the dtype."""

    options: TrainOptions
    model: LanguageModel
    dtype: torch.dtype


def fitted_model(
    options: TrainOptions, vocab_size: int, batches: Batches, device: torch.device, where: Ranks
) -> Fitted:
    """The model of a run, built from --seed for the corpus's `vocab_size` tokens, in the dtype
    --dtype auto measures, with the dropout the budget buys when none is given (a resumed run has
    its own): `options.model` is then the model's config but its vocab_size (the corpus's)."""
    config = dataclasses.replace(options.model, vocab_size=vocab_size)  # no dropout given: built without
    counts = np.bincount(batches.ids, minlength=vocab_size)[:vocab_size]  # the same on every rank
    model = started_model(config, options, counts, device)
    dtype = resolve_dtype(
        options.dtype, device, lambda: measure_dtype(model, batches, config, options, device, where)
    )
    if config.dropout is None:
        dropout = fitted_dropout(model, batches, options, device, dtype, where)
        options = dataclasses.replace(options, model=dataclasses.replace(options.model, dropout=dropout))
        if dropout != model.config.dropout:  # the same weights as given --dropout
            model = started_model(dataclasses.replace(config, dropout=dropout), options, counts, device)
    return Fitted(options, model, dtype)


def started_model(
    config: ModelConfig, options: TrainOptions, counts: np.ndarray, device: torch.device
) -> LanguageModel:
    """The model of `config` as --seed and --init build it, its output bias started as
    --output-bias says (from `counts`, the training text's tokens counted)."""
    torch.manual_seed(options.seed)
    model = build_model(config)
    if options.output_bias == "unigram":
        model.start_output_bias(torch.from_numpy(counts))
    return model.to(device)
