"""Training a text language model: `reverie.train()` and `reverie train`, and the Trainer's step loop.

    import reverie
    reverie.train("shakespeare", "runs/shakespeare", minutes=5)       # the defaults
    reverie.train("nietzsche", "runs/book", preset="book")             # the book's run, exactly
    reverie.train("nietzsche", "runs/book", resume=True)               # continue after Ctrl-C
    reverie.train("poems.txt", "runs/poems", base="english", minutes=2)  # fine-tune a shipped model
    reverie.train("poems.txt", "runs/poems", stop=event)               # ends once event.is_set()

    reverie train shakespeare --out runs/shakespeare --minutes 5
    torchrun --standalone --nproc_per_node 2 -m reverie train shakespeare --out runs/ddp --batch-size 16

A run starts in reverie.text.start (the run directory locked, a resumed run's config, the options,
the corpus); `Trainer.prepare()` builds a reverie.text.run.Run (batches, the model fitted by
reverie.text.fit, optimizer, the TrainState, restored by reverie.text.checkpointing when resuming);
`Trainer.train()` steps it within the budget (reverie.text.budget) and, at each epoch end or
--sample-every steps, evaluates (reverie.text.evaluation), writes samples (reverie.text.samples) and
saves (reverie.text.checkpointing). It stops when the epochs, steps or minutes are spent, after
--patience evaluations without a better validation loss, or at Ctrl-C, SIGTERM or `stop=`
(reverie.text.stopping: the step in flight finishes); then it saves, evaluates and writes samples.
A checkpoint holds the optimizer and RNG states, so N steps, then resuming for M more, gives the
same weights and losses as N + M steps in one go. Under torchrun each process trains a replica on
its share of every step's batch (reverie.text.ddp); only rank 0 prints, evaluates, samples and
writes the run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from reverie import distributed, rng
from reverie.device import autocast, compiled
from reverie.stopping import Stop, stop_function
from reverie.text import checkpointing, ddp, fit
from reverie.text.batches import MAX_EVAL_TOKENS, check_lengths, make_batches, training_loss
from reverie.text.budget import Budget
from reverie.text.corpus import split_ids
from reverie.text.evaluation import evaluate_run
from reverie.text.fit import step_work, text_kind  # reverie.doctor measures a step as the trainer does
from reverie.text.generator import restore_weights
from reverie.text.optim import build_optimizer, learning_rate
from reverie.text.progress import Progress
from reverie.text.run import Run, TrainResult, new_state, resume_command
from reverie.text.samples import write_samples
from reverie.text.start import Start, opened
from reverie.text.stopping import Stopping


class Trainer:
    """One training run's loop: `prepare()` builds the run (a reverie.text.run.Run, whose `state`
    is the one TrainState of the run; restored when `start` resumes one), `train()` runs the steps
    within the budget and evaluates, samples and saves at the cadence the options ask for."""

    def __init__(
        self,
        start: Start,
        on_step: Callable[[int, float], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        self.start, self.options, self.where, self.on_step = start, start.options, start.where, on_step
        self.stopping = Stopping(start.where, stop)
        self.agreed_stop = False  # with several ranks: whether any was asked to stop, after the last step
        self.save_due = False  # a checkpoint is due by the clock (--save-every-minutes), as agreed
        self.report_seconds: float | None = None  # how long the last evaluation and samples took
        self.session_tokens = 0

    def prepare(self) -> Run:
        """Build the run: batches, model (in the dtype --dtype auto measures, with the dropout the
        budget buys when none is given), optimizer, TrainState, or the saved run's restored; then
        the budget and the module a step runs (a DDP replica with several ranks)."""
        options, where, start = self.options, self.where, self.start
        corpus, base, out = start.corpus, start.base, start.out
        device = distributed.device_for(options.device, where)
        train_ids, val_ids = split_ids(corpus.ids, options.val_fraction)
        check_lengths(options, corpus.tokenizer, len(train_ids), len(val_ids))
        batches = make_batches(options, train_ids, where.rank, where.world_size)
        options, model, dtype = fit.fitted_model(options, corpus.tokenizer.vocab_size, batches, device, where)
        if base is not None:  # fine-tuning: the base's weights, its shape (finetune_options kept it)
            restore_weights(model, base.weights, base.folder)
        if where.rank > 0:  # rank 0 keeps a single process's random stream; the others draw their own dropout
            torch.manual_seed(rng.rank_seed(options.seed, where.rank, 0))
        optimizer = build_optimizer(model, options)
        state = new_state(batches.steps_per_epoch, str(dtype).removeprefix("torch."), where.world_size)
        self.options = options
        self.run = run = Run(
            corpus, out, options, where, device, train_ids, val_ids, batches, model, optimizer, dtype, state
        )
        if start.saved is not None:
            checkpointing.restore(run, start.saved)
        self.budget = Budget(
            options.epochs, options.steps, options.minutes, run.steps_per_epoch, run.state.elapsed_s
        )
        self.epochs_per_evaluation = options.epochs_per_evaluation(run.steps_per_epoch)
        self.network = ddp.replica(model, device, where)
        if options.compile:
            self.network = compiled(self.network, device)
        self.session_start = self.last_save = time.monotonic()
        if where.distributed:
            self._agree(0.0)
        return run

    # -- budget and stopping --

    def reserve_s(self) -> float:
        """Seconds to keep for the final evaluation and samples: the last report's duration, or
        before any report an estimate from the training speed."""
        if self.report_seconds is not None:
            return self.report_seconds
        speed = self.session_tokens / max(time.monotonic() - self.session_start, 1e-9)
        return min(len(self.run.val_ids), MAX_EVAL_TOKENS) / (2 * speed) if speed > 0 else 0.0

    def _agree(self, loss: float) -> float:
        """Measure the time budget spent and whether a checkpoint is due by the clock, and with
        several ranks agree on both (rank 0's), on a stop and on the step's mean loss, so every rank
        stops and saves at the same step with the same schedule."""
        main = self.where.is_main
        fraction = self.budget.update_time(self.reserve_s()) if main else 0.0
        minutes = self.options.save_every_minutes
        self.save_due = main and bool(minutes) and time.monotonic() - self.last_save >= 60 * minutes
        if self.where.distributed:
            agreed = self.stopping.agree(values=(loss, fraction, float(self.save_due)))
            self.agreed_stop = agreed.stopped
            total, self.budget.time_fraction, saves = agreed.sums
            loss, self.save_due = total / self.where.world_size, saves > 0
        return loss

    def checkpoint_due(self) -> bool:
        """Whether a checkpoint between evaluations is due: --save-every steps, or the clock."""
        every = self.options.save_every
        return bool(every and self.run.state.step % every == 0) or self.save_due

    def budget_reason(self) -> str | None:
        """The budget spent, or "patience" once that many evaluations found no better loss."""
        state, patience = self.run.state, self.options.patience
        if patience and state.evals_since_best >= patience:
            return "patience"
        return self.budget.reason(state.step, state.epoch)

    def stop_reason(self) -> str | None:
        asked = self.agreed_stop if self.where.distributed else self.stopping.requested
        return "interrupted" if asked else self.budget_reason()

    # -- training --

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        run, state, batches, device = self.run, self.run.state, self.run.batches, self.run.device
        self.stopping.computing(device)
        inputs, targets = inputs.to(device), targets.to(device)
        weight = batches.weight(state.step_in_epoch)
        step_tokens = batches.step_tokens(state.step_in_epoch)
        with autocast(device, run.dtype):
            outputs, carry = self.network(inputs, run.carry, ahead=True)
        loss, reported = training_loss(outputs, targets, batches.loss)  # one head: the same loss
        if weight != 1.0:  # a short last step shared unevenly between ranks
            loss, reported = loss * weight, reported * weight
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.options.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), self.options.grad_clip)
        lr = learning_rate(self.options, state.step, self.budget.progress(state.step))
        for group in run.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]  # build_optimizer gives every group one
        self.stopping.updating()
        run.optimizer.step()
        self.stopping.stepped()
        run.carry = run.model.detach_state(carry) if batches.carries_state else None
        state.step += 1
        state.step_in_epoch += 1
        state.tokens += step_tokens
        self.session_tokens += step_tokens
        value = self._agree(reported.item())
        run.history.append(
            {
                "step": state.step,
                "epoch": state.epoch + state.step_in_epoch / run.steps_per_epoch,
                "tokens": state.tokens,
                "lr": lr,
                "train_loss": value,
                "tokens_per_s": self.session_tokens / max(time.monotonic() - self.session_start, 1e-9),
                "elapsed_s": self.budget.elapsed,
            }
        )
        return value

    def train(self) -> TrainResult:
        """Step until the budget is spent or a stop is asked for, then `finish`."""
        run, state, options = self.run, self.run.state, self.options
        if self.where.is_main:
            run.out.mkdir(parents=True, exist_ok=True)
        self.progress = Progress(self.budget.total_steps, state.step, options.progress and self.where.is_main)
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        reason: str | None = None
        if self.start.base is not None and state.last_eval_step is None:
            self.report()  # the base on this text: where fine-tuning starts, and the first best
        with self.stopping:
            try:
                while (reason := self.stop_reason()) is None:
                    if batches is None:
                        batches = run.batches.epoch(state.epoch, state.step_in_epoch)
                    loss = self.train_step(*next(batches))
                    left = self.budget.seconds_left(self.reserve_s()) if options.minutes else None
                    self.progress.step(loss, run.history[-1], left)
                    if state.step_in_epoch == run.steps_per_epoch:
                        state.epoch, state.step_in_epoch, run.carry, batches = state.epoch + 1, 0, None, None
                        if options.sample_every is None and state.epoch % self.epochs_per_evaluation == 0:
                            self.report()
                    if options.sample_every and state.step % options.sample_every == 0:
                        self.report()
                    if self.checkpoint_due() and state.last_eval_step != state.step:
                        self.save()
                    if self.on_step is not None:
                        self.on_step(state.step, loss)
            except KeyboardInterrupt:
                reason = "interrupted"
                line = self.stopping.interrupted(run.device, run.out, run.resume_command())
                if line is not None:  # the checkpoint on disk is kept
                    self.progress.close()
                    print(line, file=sys.stderr)
                    raise
        self.progress.close()
        return self.finish(reason)

    def finish(self, reason: str) -> TrainResult:
        """Save, then evaluate, write samples and the plot: a second Ctrl-C here loses nothing."""
        run, state = self.run, self.run.state
        self.save()
        if reason == "interrupted" and self.where.is_main:
            print(
                f"reverie: {self.stopping.signal_name or 'stopped'}: stopped at step {state.step} "
                f"(epoch {state.epoch}); saved {run.out}. Resume with: {run.resume_command()}",
                file=sys.stderr,
            )
        if state.last_eval_step != state.step:
            self.report()
        rows = reversed(run.history)
        train_loss = next((r["train_loss"] for r in rows if r.get("train_loss") is not None), None)
        last, best = state.last_val_loss, state.best_val_loss
        if self.where.distributed:  # only rank 0 evaluated: every rank returns its figures
            last, best = ddp.from_main([last, best])
        resume, signal = run.resume_command(), self.stopping.signal_name
        return TrainResult(run.out, state.step, run.epochs, train_loss, last, best, reason, resume, signal)

    def report(self) -> None:
        """Validation loss, samples at each temperature, and a checkpoint."""
        started = time.monotonic()
        line, is_best = evaluate_run(self.run, lambda: self.budget.elapsed)
        if line is not None:
            self.progress.say(line)
        if self.where.is_main and (text := write_samples(self.run)):
            self.progress.say(text, sys.stdout)
        self.save(best=is_best)
        self.report_seconds = time.monotonic() - started
        self._agree(0.0)  # the report took time: measure the budget again before the next step

    def save(self, best: bool = False) -> None:
        checkpointing.save(self.run, self.budget.elapsed, best)
        self.last_save = time.monotonic()


# ---- the API ------------------------------------------------------------------------------------------


def train(
    corpus: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    on_step: Callable[[int, float], None] | None = None,
    stop: Stop | None = None,
    **options: Any,
) -> TrainResult:
    """Train a language model on `corpus` (files, directories or named corpora) into run directory
    `out`; `options` are TrainOptions fields. `on_step(step, loss)` is called after each step.
    `stop`, a threading.Event (anything with `is_set()`) or a function returning True to stop, is
    asked once per step: once it says stop, the run ends as at Ctrl-C (saved, resumable; stop_reason
    "interrupted").

    Started by torchrun (RANK, WORLD_SIZE, ... set), every process calls this and they train as
    one DistributedDataParallel job; a process whose peers die stops with a PeerLost error."""
    sources = [str(corpus)] if isinstance(corpus, (str, Path)) else [str(s) for s in corpus]
    out = Path(out)
    asked = stop_function(stop)  # refused in one line before anything is opened
    where = distributed.ranks()
    timeout = options.get("dist_timeout") or distributed.DEFAULT_TIMEOUT_S
    hint = (
        f"the last checkpoint in {out} is kept; resume with: {resume_command(sources, out, where.world_size)}"
    )
    with distributed.process_group(where, timeout, hint), opened(sources, out, where, options) as begun:
        trainer = Trainer(begun, on_step, asked)
        trainer.prepare()
        begun.proceed(trainer.budget_reason())
        return trainer.train()


__all__ = ["TrainResult", "Trainer", "resume_command", "step_work", "text_kind", "train"]
