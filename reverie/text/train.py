"""Training a text language model: `reverie.train()` and `reverie train`.

    import reverie
    reverie.train("shakespeare", "runs/shakespeare", minutes=5)       # the defaults
    reverie.train("nietzsche", "runs/book", preset="book")             # the book's run, exactly
    reverie.train("nietzsche", "runs/book", resume=True)               # continue after Ctrl-C
    reverie.train("poems.txt", "runs/poems", base="english", minutes=2)  # fine-tune a shipped model

    reverie train shakespeare --out runs/shakespeare --minutes 5
    reverie train poems.txt --from english --out runs/poems --minutes 2

The Trainer runs the steps and decides when to evaluate, sample and save; around it, batches come
from reverie.text.batches ("stream" by default, as char-rnn, or the book's "windows"), options from
reverie.text.options, the optimizer and schedule from reverie.text.optim, the budget from
reverie.text.budget, Ctrl-C from reverie.interrupt, and the run directory's layout from
reverie.text.rundir. A run with `base` (`--from`) starts from another model's weights and keeps its
tokenizer and shape (reverie.text.finetune); with `patience` it stops once that many evaluations
in a row found no better validation loss.

Training stops when the epochs, steps or minutes budget is spent or at Ctrl-C (the step in flight
finishes); then it saves the run, evaluates, and writes samples. A checkpoint holds the optimizer
and RNG states, so `resume=True` continues the same run: N steps, then resuming for M more, gives
the same weights and losses as N + M steps in one go.

Under torchrun (see reverie.distributed) each process trains a DistributedDataParallel replica on
its own share of every step's batch: `--batch-size` is per process and the global batch is
batch_size x processes. Only rank 0 prints, evaluates, samples and writes the run; every rank's RNG
state is saved, and a run resumed with another number of processes keeps its global batch (each
process takes global / processes), so it continues the same run.

    torchrun --standalone --nproc_per_node 2 -m reverie train shakespeare --out runs/ddp --batch-size 16
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from reverie import distributed, precision, rng
from reverie.checkpoint import join_tensors, load_tensor_bytes, split_tensors
from reverie.device import autocast, compiled, resolve_dtype
from reverie.distributed import SINGLE, Ranks
from reverie.errors import ReverieError, require
from reverie.interrupt import EXIT_CODES, StopRequests
from reverie.text import rundir
from reverie.text.batches import MAX_EVAL_TOKENS, RandomWindows, StreamBatches, WindowBatches, evaluate
from reverie.text.budget import Budget
from reverie.text.corpus import TokenizedCorpus, load_corpus, split_ids
from reverie.text.finetune import Base, finetune_options, load_base
from reverie.text.fit import fit_dropout
from reverie.text.generator import TextModel, restore_weights
from reverie.text.language_model import ModelConfig, map_state, state_tensors
from reverie.text.models import build_model
from reverie.text.optim import build_optimizer, learning_rate
from reverie.text.options import TrainOptions, resolve_options
from reverie.text.plots import plot_losses
from reverie.text.rundir import CorpusInfo, RunConfig, TrainState
from reverie.text.sampling import SamplingOptions
from reverie.text.tokenizer import Tokenizer

SAMPLE_PROMPT_TOKENS = 60  # the book's seed length
MAX_LOGITS_BYTES = 8 << 30  # one step's output layer (its gradient as much again)
STOP_REASONS = {
    "epochs": "its --epochs",
    "steps": "its --steps",
    "minutes": "its --minutes",
    "patience": "early stopping (--patience evaluations without a better validation loss)",
}


@dataclass
class TrainResult:
    """What a training run ended with."""

    run_dir: Path
    step: int
    epoch: float
    train_loss: float | None
    val_loss: float | None  # nats per token
    best_val_loss: float | None
    stop_reason: str  # "epochs" | "steps" | "minutes" | "interrupted"
    resume_command: str
    signal: str | None = None  # what interrupted it: "Ctrl-C" or "SIGTERM" (None: another rank's signal)

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


def make_batches(
    options: TrainOptions, ids: np.ndarray, where: Ranks
) -> StreamBatches | WindowBatches | RandomWindows:
    """The training batches `options.batching` asks for, this rank's share."""
    if options.batching == "windows":
        return WindowBatches(
            ids,
            options.batch_size,
            options.seq_len,
            options.window_step,
            options.seed,
            where.rank,
            where.world_size,
        )
    if options.batching == "random":
        return RandomWindows(
            ids, options.batch_size, options.window, options.seed, where.rank, where.world_size
        )
    return StreamBatches(ids, options.batch_size, options.seq_len, options.seed, where.rank, where.world_size)


def text_kind(config: ModelConfig, options: TrainOptions) -> str:
    """The model kind --dtype auto measures once per machine: the model's shape and its batches."""
    return (
        f"text {config.kind} {config.layers}x{config.hidden} embed {config.embed} vocab "
        f"{config.vocab_size} batch {options.batch_size}x{options.window} {options.batching}"
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
                logits, _ = model(inputs)
            loss = loss_of(logits.float(), targets)
            gradients = torch.autograd.grad(loss, parameters)
        finally:
            rng.restore(saved, device)
        return float(loss.detach()), torch.cat([g.flatten() for g in gradients])

    return work


class Trainer:
    """One training run: model, optimizer, batches and the counters that a checkpoint saves; it
    runs the steps, and evaluates, samples and saves at the cadence the options ask for."""

    def __init__(
        self,
        corpus: TokenizedCorpus,
        out: Path,
        options: TrainOptions,
        saved: RunConfig | None,
        on_step: Callable[[int, float], None] | None = None,
        where: Ranks = SINGLE,
        base: Base | None = None,
    ) -> None:
        self.corpus, self.out, self.options, self.on_step, self.where = corpus, out, options, on_step, where
        self.base = base if saved is None else None  # a resumed run has its own weights
        self.device = distributed.device_for(options.device, where)
        self.train_ids, self.val_ids = split_ids(corpus.ids, options.val_fraction)
        self._check_lengths()
        self.batches = make_batches(options, self.train_ids, where)
        self.steps_per_epoch = self.batches.steps_per_epoch
        torch.manual_seed(options.seed)
        self.model_config = options.model_config(corpus.tokenizer.vocab_size)
        self.model = build_model(self.model_config).to(self.device)
        self.dtype = resolve_dtype(options.dtype, self.device, self._measure_dtype)
        if options.dropout is None:  # chosen for the budget; the run keeps it (a resumed run has it)
            self.options = options = dataclasses.replace(options, dropout=self._fit_dropout())
            if options.dropout != self.model_config.dropout:  # the same weights as given --dropout
                torch.manual_seed(options.seed)
                self.model_config = options.model_config(corpus.tokenizer.vocab_size)
                self.model = build_model(self.model_config).to(self.device)
        if self.base is not None:  # fine-tuning: the base's weights, its shape (finetune_options kept it)
            restore_weights(self.model, self.base.weights, self.base.folder)
        if where.rank > 0:  # rank 0 keeps a single process's random stream; the others draw their own dropout
            torch.manual_seed(rng.rank_seed(options.seed, where.rank, 0))
        self.optimizer = build_optimizer(self.model, options)
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.tokens = 0  # input tokens trained on, over the whole run
        self.best_val_loss: float | None = None
        self.best_step: int | None = None
        self.last_val_loss: float | None = None
        self.last_eval_step: int | None = None
        self.evals_since_best = 0  # evaluations in a row without a better validation loss (--patience)
        self.report_seconds: float | None = None  # how long the last evaluation and samples took
        self.carry: Any = None
        self.history: list[dict[str, Any]] = []
        self.files: dict[str, rundir.Stored] = {}
        self.stop = StopRequests("stopping after this step and saving" if where.is_main else None)
        self.agreed_stop = False  # with several ranks: whether any was asked to stop, after the last step
        self.save_due = False  # a checkpoint is due by the clock (--save-every-minutes), as agreed
        self.last_save = time.monotonic()
        self.phase = "idle"  # "compute" | "update": where a hard Ctrl-C landed
        self.rng_before_step: dict[str, Any] = {}
        elapsed_before = 0.0
        if saved is not None:
            elapsed_before = self._restore(saved)
        self.budget = Budget(
            options.epochs, options.steps, options.minutes, self.steps_per_epoch, elapsed_before
        )
        # the module a step runs: DDP averages the gradients over the ranks during backward
        self.network: torch.nn.Module = self.model
        if where.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=device_ids)
        if options.compile:
            self.network = compiled(self.network, self.device)
        self.session_start = time.monotonic()
        self.session_tokens = 0
        if where.distributed:
            self._agree(0.0)

    # -- setup --

    def _check_lengths(self) -> None:
        options, n_train, n_val = self.options, len(self.train_ids), len(self.val_ids)
        tokenizer = self.corpus.tokenizer
        unit = {"char": "characters", "byte": "bytes"}.get(tokenizer.level, "tokens")
        require(
            tokenizer.vocab_size >= 2,
            f"the corpus has only one distinct {unit[:-1]} ({tokenizer.vocab[0]!r}): there is nothing to "
            "predict; use a text with some variety",
        )
        logits_bytes = 4 * options.batch_size * options.window * tokenizer.vocab_size
        require(
            logits_bytes <= MAX_LOGITS_BYTES,
            f"a step's logits would take {logits_bytes / 1e9:.1f} GB (--batch-size x --seq-len x "
            f"{tokenizer.vocab_size:,} tokens x 4 bytes), more than reverie's limit of "
            f"{MAX_LOGITS_BYTES / 1e9:.0f} GB; use a smaller --batch-size, --seq-len or --max-vocab",
        )
        require(
            n_train > options.window,
            f"the corpus is too short: {n_train} {unit} to train on, shorter than one training window of "
            f"{options.window + 1}; use a longer corpus or a smaller "
            + ("--context" if options.model == "transformer" else "--seq-len"),
        )
        if options.val_fraction > 0:
            needed = options.window + 1 if options.batching == "windows" else 2
            require(
                n_val >= needed,
                f"the validation tail has {n_val} {unit}, fewer than the {needed} it needs; raise "
                "--val-fraction, use a longer corpus, or pass --val-fraction 0",
            )

    def _restore(self, saved: RunConfig) -> float:
        """Weights, optimizer, RNG, carried state and counters of the saved run; returns its elapsed time."""
        state = saved.state
        assert state is not None
        tensors = self._load_shared(saved, rundir.STATE)
        restore_weights(
            self.model, self._load_shared(saved, rundir.MODEL), saved.path_of(self.out, rundir.MODEL)
        )
        try:
            self.optimizer.load_state_dict(join_tensors(state.optimizer, tensors))
            if self.where.rank == 0:
                saved_rng = join_tensors(state.rng, tensors)
            else:
                others = join_tensors(state.rng_ranks or [], tensors)
                saved_rng = others[self.where.rank - 1] if self.where.rank <= len(others) else None
            if saved_rng is None:  # more ranks than the run had: a fresh stream, still set by --seed
                torch.manual_seed(rng.rank_seed(self.options.seed, self.where.rank, state.step))
            else:
                rng.restore(saved_rng, self.device)
            carry = self._share_of(join_tensors(state.carry, tensors))
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError):
            raise ReverieError(
                f"the training state in {self.out} does not fit this run; it is corrupted or from an "
                "incompatible version"
            ) from None
        self.carry = map_state(carry, lambda t: t.to(self.device))
        self.step, self.epoch, self.step_in_epoch, self.tokens = (
            state.step,
            state.epoch,
            state.step_in_epoch,
            state.tokens,
        )
        self.best_val_loss, self.best_step = state.best_val_loss, state.best_step
        self.last_val_loss, self.last_eval_step = state.last_val_loss, state.last_eval_step
        self.evals_since_best = state.evals_since_best
        self.files = dict(saved.files)
        if self.where.is_main:
            self.history = [
                row for row in rundir.read_metrics(self.out / rundir.METRICS) if row["step"] <= self.step
            ]
            samples = self.out / rundir.SAMPLES
            if samples.is_file() and samples.stat().st_size > state.samples_bytes:
                with open(samples, "r+b") as handle:  # samples written after this checkpoint: redone
                    handle.truncate(state.samples_bytes)
        return float(state.elapsed_s)

    def _load_shared(self, saved: RunConfig, role: str) -> dict[str, torch.Tensor]:
        """Tensors of a checkpoint file that rank 0 reads and hands to every rank (the run
        directory need only be on rank 0's machine)."""
        data = distributed.share_from_main(lambda: saved.read_checked(self.out, role))
        return load_tensor_bytes(data, saved.path_of(self.out, role))

    def _share_of(self, carry: Any) -> Any:
        """This rank's streams of a saved (global) carried state; None (a fresh state) when the
        run had another set of streams."""
        if carry is None:
            return None
        streams, dim = getattr(self.batches, "streams", None), self.model.state_batch_dim
        if any(t.shape[dim] != streams for t in state_tensors(carry)):
            return None
        share = streams // self.where.world_size
        return map_state(carry, lambda t: t.narrow(dim, self.where.rank * share, share))

    def _fit_dropout(self) -> float:
        """The dropout for the epochs this budget buys (reverie.text.fit), decided on rank 0 (which
        times a step of this model on its first batch for a budget in minutes) for every rank."""
        options = self.options

        def fit() -> bytes:
            inputs, targets = (t.to(self.device) for t in next(iter(self.batches.epoch(0))))
            work = step_work(self.model, self.batches.loss, inputs, targets, self.device)
            way = str(self.dtype).removeprefix("torch.")
            fitted = fit_dropout(
                options.model,
                options.epochs,
                options.steps,
                options.minutes,
                self.steps_per_epoch,
                lambda: work(way),
            )
            if self.where.is_main:
                print(f"reverie: {fitted.reason}", file=sys.stderr, flush=True)
            return json.dumps(fitted.dropout).encode()

        return float(json.loads(distributed.share_from_main(fit)))

    def _measure_dtype(self) -> precision.Choice:
        """What `--dtype auto` runs on this machine: rank 0 measures (once per machine and model
        kind, see reverie.precision) a training step of this model on its first batch, and every
        rank takes its choice."""
        inputs, targets = (t.to(self.device) for t in next(iter(self.batches.epoch(0))))
        kind = text_kind(self.model_config, self.options)
        work = step_work(self.model, self.batches.loss, inputs, targets, self.device)

        def measure() -> bytes:
            return json.dumps(dataclasses.asdict(precision.choose(kind, self.device, work))).encode()

        choice = precision.Choice(**json.loads(distributed.share_from_main(measure)))
        if self.where.is_main:
            print(f"reverie: --dtype auto: {choice.way} ({choice.reason})", file=sys.stderr, flush=True)
        return choice

    # -- budget and stopping --

    def reserve_s(self) -> float:
        """Seconds to keep for the final evaluation and samples: the last report's duration, or
        before any report an estimate from the training speed."""
        if self.report_seconds is not None:
            return self.report_seconds
        speed = self.session_tokens / max(time.monotonic() - self.session_start, 1e-9)
        return min(len(self.val_ids), MAX_EVAL_TOKENS) / (2 * speed) if speed > 0 else 0.0

    def _agree(self, loss: float) -> float:
        """Measure the time budget spent and whether a checkpoint is due by the clock, and with
        several ranks agree on both (rank 0's), on a stop and on the step's mean loss, so every rank
        stops and saves at the same step with the same schedule."""
        main = self.where.is_main
        fraction = self.budget.update_time(self.reserve_s()) if main else 0.0
        minutes = self.options.save_every_minutes
        self.save_due = main and bool(minutes) and time.monotonic() - self.last_save >= 60 * minutes
        if self.where.distributed:
            loss, self.agreed_stop, self.budget.time_fraction, self.save_due = distributed.agree(
                loss, self.stop.requested, fraction, self.save_due
            )
        return loss

    def checkpoint_due(self) -> bool:
        """Whether a checkpoint between evaluations is due: --save-every steps, or the clock."""
        every = self.options.save_every
        return bool(every and self.step % every == 0) or self.save_due

    def stop_reason(self) -> str | None:
        asked = self.agreed_stop if self.where.distributed else self.stop.requested
        if asked:
            return "interrupted"
        if self.options.patience and self.evals_since_best >= self.options.patience:
            return "patience"
        return self.budget.reason(self.step, self.epoch)

    def resume_command(self) -> str:
        return resume_command(self.corpus.sources, self.out, self.where.world_size)

    # -- training --

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        self.phase = "compute"
        self.rng_before_step = rng.capture(self.device)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        weight = self.batches.weight(self.step_in_epoch)
        step_tokens = self.batches.step_tokens(self.step_in_epoch)
        with autocast(self.device, self.dtype):
            logits, carry = self.network(inputs, self.carry)
        loss = self.batches.loss(logits.float(), targets)
        if weight != 1.0:  # a short last step shared unevenly between ranks
            loss = loss * weight
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.options.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.grad_clip)
        lr = learning_rate(self.options, self.step, self.budget.progress(self.step))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.phase = "update"
        self.optimizer.step()
        self.phase = "idle"
        self.carry = self.model.detach_state(carry) if self.batches.carries_state else None
        self.step += 1
        self.step_in_epoch += 1
        self.tokens += step_tokens
        self.session_tokens += step_tokens
        value = self._agree(loss.item())
        self.history.append(
            {
                "step": self.step,
                "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
                "tokens": self.tokens,
                "lr": lr,
                "train_loss": value,
                "tokens_per_s": self.session_tokens / max(time.monotonic() - self.session_start, 1e-9),
                "elapsed_s": self.budget.elapsed,
            }
        )
        return value

    def run(self) -> TrainResult:
        options = self.options
        if self.where.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(
            total=self.budget.total_steps,
            initial=self.step,
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not options.progress or not self.where.is_main,
            desc="training",
        )
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        reason: str | None = None
        if self.base is not None and self.last_eval_step is None:
            self.report(bar)  # the base on this text: where fine-tuning starts, and the first best
        with self.stop:
            try:
                while (reason := self.stop_reason()) is None:
                    if batches is None:
                        batches = self.batches.epoch(self.epoch, self.step_in_epoch)
                    loss = self.train_step(*next(batches))
                    bar.update(1)
                    bar.set_postfix(self._postfix(loss), refresh=False)
                    if self.step_in_epoch == self.steps_per_epoch:
                        self.epoch, self.step_in_epoch, self.carry, batches = self.epoch + 1, 0, None, None
                        if options.sample_every is None:
                            self.report(bar)
                    if options.sample_every and self.step % options.sample_every == 0:
                        self.report(bar)
                    if self.checkpoint_due() and self.last_eval_step != self.step:
                        self.save()
                    if self.on_step is not None:
                        self.on_step(self.step, loss)
            except KeyboardInterrupt:
                reason = "interrupted"
                # weights half-updated, or one rank alone stopping (the others cannot save with it):
                # keep the checkpoint already on disk
                if self.phase == "update" or self.where.distributed:
                    bar.close()
                    where = f"rank {self.where.rank} " if self.where.distributed else ""
                    print(
                        f"reverie: {where}interrupted during a step; the last checkpoint in {self.out} is "
                        f"kept. Resume with: {self.resume_command()}",
                        file=sys.stderr,
                    )
                    raise
                if self.phase == "compute":  # the step in flight is dropped: resuming redoes it
                    rng.restore(self.rng_before_step, self.device)
        bar.close()
        return self.finish(reason)

    def _postfix(self, loss: float) -> dict[str, str]:
        last = self.history[-1]
        postfix = {
            "loss": f"{loss:.4f}",
            "tok_s": f"{last['tokens_per_s']:,.0f}",
            "epoch": f"{last['epoch']:.2f}",
        }
        if self.options.minutes:
            postfix["left"] = _clock(self.budget.seconds_left(self.reserve_s()))
        return postfix

    def finish(self, reason: str) -> TrainResult:
        """Save, then evaluate, write samples and the plot: a second Ctrl-C here loses nothing."""
        self.save()
        if reason == "interrupted" and self.where.is_main:
            print(
                f"reverie: {self.stop.signal_name or 'stopped'}: stopped at step {self.step} "
                f"(epoch {self.epoch}); saved {self.out}. "
                f"Resume with: {self.resume_command()}",
                file=sys.stderr,
            )
        if self.last_eval_step != self.step:
            self.report(None)
        train_loss = next(
            (r["train_loss"] for r in reversed(self.history) if r.get("train_loss") is not None), None
        )
        if self.where.distributed:  # only rank 0 evaluated: every rank returns its figures
            shared = distributed.broadcast(torch.tensor([_nan(self.last_val_loss), _nan(self.best_val_loss)]))
            self.last_val_loss, self.best_val_loss = (None if math.isnan(v) else v for v in shared.tolist())
        return TrainResult(
            self.out,
            self.step,
            self.step / self.steps_per_epoch,
            train_loss,
            self.last_val_loss,
            self.best_val_loss,
            reason,
            self.resume_command(),
            self.stop.signal_name,
        )

    def report(self, bar: tqdm | None) -> None:
        """Validation loss, samples at each temperature, and a checkpoint."""
        started = time.monotonic()
        is_best = False
        if self.where.is_main and len(self.val_ids) > 0:
            val_loss = evaluate(self.model, self.val_ids, self.options, self.device)
            self.last_val_loss = val_loss
            is_best = self.best_val_loss is None or val_loss < self.best_val_loss
            if is_best:
                self.best_val_loss, self.best_step = val_loss, self.step
            self.evals_since_best = 0 if is_best else self.evals_since_best + 1
            self.history.append(
                {
                    "step": self.step,
                    "epoch": self.step / self.steps_per_epoch,
                    "val_loss": val_loss,
                    "val_bits": val_loss / math.log(2),
                    "elapsed_s": self.budget.elapsed,
                }
            )
            message = (
                f"step {self.step} (epoch {self.step / self.steps_per_epoch:.2f}): validation loss "
                f"{val_loss:.4f} nats/token, {val_loss / math.log(2):.4f} bits/token"
                f"{' (best)' if is_best else ''}"
            )
            _say(message, sys.stderr, bar)
        self.last_eval_step = self.step
        if self.where.is_main:
            self.write_samples(bar)
        if self.where.distributed:  # only rank 0 evaluated: every rank stops early at the same step
            self.evals_since_best = int(distributed.broadcast(torch.tensor([self.evals_since_best])))
        self.save(best=is_best)
        self.report_seconds = time.monotonic() - started
        self._agree(0.0)  # the report took time: measure the budget again before the next step

    def write_samples(self, bar: tqdm | None) -> None:
        """`sample_length` tokens at each sample temperature, from a seed window of the corpus (the
        book's way)."""
        options = self.options
        if not options.sample_temperatures:
            return
        tokenizer = self.corpus.tokenizer
        prompt_len = min(SAMPLE_PROMPT_TOKENS, options.window, len(self.train_ids) - 1)
        begin = int(
            np.random.default_rng([options.seed, self.step]).integers(0, len(self.train_ids) - prompt_len)
        )
        prompt_ids = [int(i) for i in self.train_ids[begin : begin + prompt_len]]
        writer = TextModel(self.model, tokenizer, self.device)
        seed_text = tokenizer.decode(prompt_ids)
        blocks = [f"=== step {self.step}, epoch {self.step / self.steps_per_epoch:.2f}, seed: {seed_text!r}"]
        for index, temperature in enumerate(options.sample_temperatures):
            seed = int(np.random.default_rng([options.seed, self.step, index]).integers(2**31))
            sampling = SamplingOptions(temperature=temperature, length=options.sample_length, seed=seed)
            pieces = writer.stream_ids(prompt_ids, sampling, follows=prompt_ids[-1])
            blocks.append(f"--- temperature {temperature:g}\n{seed_text}{''.join(p[0] for p in pieces)}")
        text = "\n".join(blocks) + "\n\n"
        with open(self.out / rundir.SAMPLES, "a", encoding="utf-8") as handle:
            handle.write(text)
        _say(text, sys.stdout, bar)

    def save(self, best: bool = False) -> None:
        """Write the checkpoint (weights, optimizer, RNG, counters), metrics.csv and loss.png.

        With several ranks every rank calls it: rank 0 gathers their RNG states and carried
        states (all ranks' streams, in global order) and writes alone."""
        states = distributed.gather_tensors(rng.capture(self.device))
        carry = self._gathered_carry()
        if not self.where.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        weights = {name: t.detach() for name, t in self.model.state_dict().items()}
        optimizer_json, tensors = split_tensors(self.optimizer.state_dict(), "optimizer")
        rng_json, rng_tensors = split_tensors(states[0], "rng")
        ranks_json, ranks_tensors = split_tensors(states[1:], "rng_ranks")
        carry_json, carry_tensors = split_tensors(carry, "carry")
        groups = {
            rundir.MODEL: weights,
            rundir.STATE: {**tensors, **rng_tensors, **ranks_tensors, **carry_tensors},
        }
        if best:
            groups[rundir.BEST] = weights
        corpus = self.corpus
        samples = self.out / rundir.SAMPLES
        config = RunConfig(
            model=self.model_config,
            tokenizer=corpus.tokenizer,
            files=dict(self.files),
            corpus=CorpusInfo(
                corpus.sources, corpus.fingerprint, len(corpus.ids), len(self.train_ids), len(self.val_ids)
            ),
            options=self.options,
            state=TrainState(
                step=self.step,
                epoch=self.epoch,
                step_in_epoch=self.step_in_epoch,
                tokens=self.tokens,
                steps_per_epoch=self.steps_per_epoch,
                elapsed_s=self.budget.elapsed,
                best_val_loss=self.best_val_loss,
                best_step=self.best_step,
                last_val_loss=self.last_val_loss,
                last_eval_step=self.last_eval_step,
                dtype=str(self.dtype).removeprefix("torch."),
                world_size=self.where.world_size,
                optimizer=optimizer_json,
                rng=rng_json,
                rng_ranks=ranks_json,
                carry=carry_json,
                samples_bytes=samples.stat().st_size if samples.is_file() else 0,
                evals_since_best=self.evals_since_best,
            ),
        )
        config.store(self.out, groups)
        # before config.json: a run resumed from the previous checkpoint keeps only its own rows
        rundir.write_metrics(self.out / rundir.METRICS, self.history)
        plot_losses(
            self.history,
            self.out / rundir.PLOT,
            title=f"{self.out.name}: {self.model_config.kind} "
            f"{self.model_config.layers}x{self.model_config.hidden}, {corpus.tokenizer.level} level",
        )
        config.commit(self.out)
        self.files = config.files
        self.last_save = time.monotonic()

    def _gathered_carry(self) -> Any:
        """The carried state of all ranks' streams, in global order (collective with several ranks)."""
        if not self.where.distributed or self.carry is None:
            return self.carry
        dim = self.model.state_batch_dim
        return map_state(self.carry, lambda t: torch.cat(distributed.all_gather(t), dim=dim))


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def resume_command(sources: Sequence[str], out: Path, world_size: int = 1) -> str:
    """The command that continues a run (under torchrun when it ran on several processes)."""
    launcher = ["torchrun", "--standalone", f"--nproc_per_node={world_size}", "-m"] if world_size > 1 else []
    return shlex.join([*launcher, "reverie", "train", *sources, "--out", str(out), "--resume"])


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(max(int(seconds), 0), 60)
    return f"{minutes}:{seconds:02d}"


def _say(text: str, stream: Any, bar: tqdm | None) -> None:
    """Print around the progress bar (tqdm redraws it below the text)."""
    if bar is not None and not bar.disable:
        bar.write(text.rstrip("\n"), file=stream)
    else:
        print(text.rstrip("\n"), file=stream, flush=True)


# ---- the API ------------------------------------------------------------------------------------------


def train(
    corpus: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    on_step: Callable[[int, float], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a language model on `corpus` (files, directories or named corpora) into run directory
    `out`; `options` are TrainOptions fields. `on_step(step, loss)` is called after each step.

    Started by torchrun (RANK, WORLD_SIZE, ... set), every process calls this and they train as
    one DistributedDataParallel job; a process whose peers die stops with a PeerLost error."""
    sources = [str(corpus)] if isinstance(corpus, (str, Path)) else [str(s) for s in corpus]
    out = Path(out)
    where = distributed.ranks()
    timeout = options.get("dist_timeout") or distributed.DEFAULT_TIMEOUT_S
    hint = (
        f"the last checkpoint in {out} is kept; resume with: {resume_command(sources, out, where.world_size)}"
    )
    with distributed.process_group(where, timeout, hint):
        return _train(sources, out, where, on_step, options)


def _train(
    sources: list[str],
    out: Path,
    where: Ranks,
    on_step: Callable[[int, float], None] | None,
    options: dict[str, Any],
) -> TrainResult:
    require(not out.exists() or out.is_dir(), f"--out {out} is a file; pass a directory for the run")
    resume = bool(options.get("resume"))
    if not resume:
        resolve_options(options)  # bad options are refused before anything is read or written
    lock = rundir.RunLock(out)  # rank 0's: it alone writes the run
    distributed.share_from_main(lambda: _lock(lock, out, resume))  # a refusal reaches every rank
    try:
        return _train_locked(sources, out, where, on_step, options, resume)
    finally:
        lock.release()


def _lock(lock: rundir.RunLock, out: Path, resume: bool) -> bytes:
    if not resume or out.is_dir():  # resuming a missing folder: RunConfig.load says so
        lock.acquire()
    return b""


def _train_locked(
    sources: list[str],
    out: Path,
    where: Ranks,
    on_step: Callable[[int, float], None] | None,
    options: dict[str, Any],
    resume: bool,
) -> TrainResult:
    saved: RunConfig | None = None
    saved_options: dict[str, Any] | None = None
    if resume:
        shared = distributed.share_from_main(lambda: _config_bytes(out))
        saved = RunConfig.from_json(json.loads(shared), out / rundir.CONFIG, training=True)
        if saved.state is None or saved.options is None:
            raise ReverieError(f"{out} holds no training state to resume; train a new run into another --out")
        saved_options = dataclasses.asdict(saved.options)
        saved_options["batch_size"] = per_rank_batch_size(
            saved.options.batch_size, saved.state.world_size, where.world_size, out
        )
    else:
        overwrite = bool(options.get("overwrite"))
        distributed.share_from_main(lambda: rundir.check_new_run(out, overwrite) or b"")
    base: Base | None = None
    if saved is None and options.get("base"):
        base = load_base(str(options["base"]))
        options = finetune_options(base, options)
    resolved = resolve_options(options, saved_options)
    tokenizer: Tokenizer | None = saved.tokenizer if saved is not None else None
    if base is not None:
        tokenizer = base.config.tokenizer

    def read_corpus() -> TokenizedCorpus:
        if tokenizer is None:
            return load_corpus(
                sources,
                resolved.level,
                resolved.lower,
                resolved.max_vocab,
                resolved.encoding,
                resolved.errors,
            )
        return load_corpus(
            sources,
            encoding=resolved.encoding,
            errors=resolved.errors,
            tokenizer=tokenizer,
            vocabulary_of=None if base is None else f"the base model {base.name}",
        )

    # a named corpus is downloaded, a big one encoded into the cache, once per machine
    tokens = distributed.local_first(where, read_corpus)
    distributed.check_same(
        f"{tokens.fingerprint} {len(tokens.ids)} {tokens.tokenizer.to_json()}",
        "corpus (its files, their bytes, or the settings that tokenize them)",
        "give every process the same corpus files",
    )
    if saved is not None:
        trained_on = saved.corpus.fingerprint if saved.corpus is not None else None
        require(
            tokens.fingerprint == trained_on,
            f"--resume with a different corpus: {' '.join(sources)} is not the text the run in {out} was "
            "trained on; pass the same corpus, or train a new run into another --out",
        )
    trainer = Trainer(tokens, out, resolved, saved, on_step, where, base)
    if saved is not None:
        finished = trainer.stop_reason()
        require(
            finished is None,
            f"the run in {out} already reached its budget ({finished}); pass a larger --epochs, --steps, "
            "--minutes or --patience with --resume to train on",
        )
    elif resolved.overwrite and where.is_main:
        rundir.clear_run(out)
    return trainer.run()


def _config_bytes(out: Path) -> bytes:
    """The run's config, checked, as JSON bytes (what rank 0 hands to the other ranks)."""
    return json.dumps(RunConfig.load(out, training=True).to_json()).encode()


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


__all__ = ["TrainResult", "Trainer", "resume_command", "train"]
