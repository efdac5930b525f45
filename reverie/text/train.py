"""Training a text language model: `reverie.train()` and `reverie train`.

    import reverie
    reverie.train("shakespeare", "runs/shakespeare", minutes=5)       # the defaults
    reverie.train("nietzsche", "runs/book", preset="book")             # the book's run, exactly
    reverie.train("nietzsche", "runs/book", resume=True)               # continue after Ctrl-C

    reverie train shakespeare --out runs/shakespeare --minutes 5

Batches come from reverie.text.batches ("stream" by default, as char-rnn, or the book's "windows"),
options from reverie.text.options, the optimizer and schedule from reverie.text.optim.

Training stops when the epochs, steps or minutes budget is spent or at Ctrl-C (the step in flight
finishes); then it saves the run (see reverie.text.rundir), evaluates, and writes samples. A
checkpoint holds the optimizer and RNG states, so `resume=True` continues the same run: N steps,
then resuming for M more, gives the same weights and losses as N + M steps in one go.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from reverie.checkpoint import join_tensors, split_tensors
from reverie.device import autocast, resolve_device, resolve_dtype
from reverie.errors import ReverieError, require
from reverie.text import rundir
from reverie.text.batches import MAX_EVAL_TOKENS, StreamBatches, WindowBatches, evaluate
from reverie.text.corpus import TokenizedCorpus, load_corpus, split_ids
from reverie.text.generator import TextModel, restore_weights
from reverie.text.models import build_model
from reverie.text.optim import build_optimizer, learning_rate
from reverie.text.options import TrainOptions, model_config, resolve_options
from reverie.text.plots import plot_losses
from reverie.text.sampling import SamplingOptions
from reverie.text.tokenizer import Tokenizer

SAMPLE_PROMPT_TOKENS = 60  # the book's seed length


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

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == "interrupted"

    @property
    def val_bits(self) -> float | None:
        return None if self.val_loss is None else self.val_loss / math.log(2)


# ---- the run ------------------------------------------------------------------------------------------


class Trainer:
    """One training run: model, optimizer, batches and the counters that a checkpoint saves."""

    def __init__(
        self,
        corpus: TokenizedCorpus,
        out: Path,
        options: TrainOptions,
        saved: dict[str, Any] | None,
        on_step: Callable[[int, float], None] | None = None,
    ) -> None:
        self.corpus, self.out, self.options, self.on_step = corpus, out, options, on_step
        self.device = resolve_device(options.device)
        self.dtype = resolve_dtype(options.dtype, self.device)
        self.train_ids, self.val_ids = split_ids(corpus.ids, options.val_fraction)
        self._check_lengths()
        if options.batching == "windows":
            self.batches: StreamBatches | WindowBatches = WindowBatches(
                self.train_ids, options.batch_size, options.seq_len, options.window_step, options.seed
            )
        else:
            self.batches = StreamBatches(self.train_ids, options.batch_size, options.seq_len, options.seed)
        self.steps_per_epoch = self.batches.steps_per_epoch
        torch.manual_seed(options.seed)
        self.model_config = model_config(options, corpus.tokenizer.vocab_size)
        self.model = build_model(self.model_config).to(self.device)
        self.optimizer = build_optimizer(self.model, options)
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.tokens = 0  # input tokens trained on, over the whole run
        self.elapsed_before = 0.0
        self.best_val_loss: float | None = None
        self.best_step: int | None = None
        self.last_val_loss: float | None = None
        self.last_eval_step: int | None = None
        self.report_seconds: float | None = None
        self.carry: Any = None
        self.history: list[dict[str, Any]] = []
        self.files: dict[str, str] = {}
        self.stop_requested = False
        self.phase = "idle"  # "compute" | "update": where a hard Ctrl-C landed
        self.rng_before_step: dict[str, Any] = {}
        if saved is not None:
            self._restore(saved)
        self.session_start = time.monotonic()
        self.session_tokens = 0

    # -- setup --

    def _check_lengths(self) -> None:
        options, n_train, n_val = self.options, len(self.train_ids), len(self.val_ids)
        unit = "characters" if self.corpus.tokenizer.level == "char" else "tokens"
        require(
            n_train > options.seq_len,
            f"the corpus is too short: {n_train} {unit} to train on, shorter than one training window of "
            f"{options.seq_len + 1}; use a longer corpus or a smaller --seq-len",
        )
        if options.val_fraction > 0:
            needed = options.seq_len + 1 if options.batching == "windows" else 2
            require(
                n_val >= needed,
                f"the validation tail has {n_val} {unit}, fewer than the {needed} it needs; raise "
                "--val-fraction, use a longer corpus, or pass --val-fraction 0",
            )

    def _restore(self, saved: dict[str, Any]) -> None:
        state = saved["state"]
        tensors = rundir.load_checked(self.out, saved, rundir.STATE)
        restore_weights(
            self.model, rundir.load_checked(self.out, saved, rundir.MODEL), self.out / rundir.MODEL
        )
        try:
            self.optimizer.load_state_dict(join_tensors(state["optimizer"], tensors))
            rng = join_tensors(state["rng"], tensors)
            torch.set_rng_state(rng["cpu"])
            if self.device.type == "cuda" and "cuda" in rng:
                torch.cuda.set_rng_state_all(rng["cuda"])
            carry = join_tensors(state["carry"], tensors)
        except (KeyError, ValueError, TypeError, RuntimeError):
            raise ReverieError(
                f"the training state in {self.out} does not fit this run; it is corrupted or from an "
                "incompatible version"
            ) from None
        self.carry = _to_device(carry, self.device)
        for name in (
            "step",
            "epoch",
            "step_in_epoch",
            "tokens",
            "best_val_loss",
            "best_step",
            "last_val_loss",
            "last_eval_step",
        ):
            setattr(self, name, state.get(name))
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.files = dict(saved["files"])
        self.history = [
            row for row in rundir.read_metrics(self.out / rundir.METRICS) if row["step"] <= self.step
        ]

    # -- bookkeeping --

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.session_start

    @property
    def total_steps(self) -> int | None:
        budgets = [self.options.steps, self.options.epochs and self.options.epochs * self.steps_per_epoch]
        known = [b for b in budgets if b]
        return min(known) if known else None

    def progress(self) -> float:
        """The fraction of the budget spent (the nearest one to its end)."""
        parts = []
        if self.total_steps:
            parts.append(self.step / self.total_steps)
        if self.options.minutes:
            parts.append(self.elapsed / self.training_seconds())
        return max(parts)

    def training_seconds(self) -> float:
        """The minutes budget less the time the final evaluation and samples will take (the last
        report's duration, or before any report an estimate from the training speed), so that the
        whole run, final report included, fits the budget."""
        reserve = self.report_seconds
        if reserve is None:
            speed = self.session_tokens / max(time.monotonic() - self.session_start, 1e-9)
            reserve = min(len(self.val_ids), MAX_EVAL_TOKENS) / (2 * speed) if speed > 0 else 0.0
        budget = 60.0 * self.options.minutes
        return max(budget - reserve, 0.5 * budget)

    def stop_reason(self) -> str | None:
        options = self.options
        if self.stop_requested:
            return "interrupted"
        if options.steps is not None and self.step >= options.steps:
            return "steps"
        if options.epochs is not None and self.epoch >= options.epochs:
            return "epochs"
        if options.minutes is not None and self.elapsed >= self.training_seconds():
            return "minutes"
        return None

    def resume_command(self) -> str:
        return shlex.join(["reverie", "train", *self.corpus.sources, "--out", str(self.out), "--resume"])

    # -- training --

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        self.phase = "compute"
        self.rng_before_step = self._rng_state()
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        with autocast(self.device, self.dtype):
            logits, carry = self.model(inputs, self.carry)
        loss = self.batches.loss(logits.float(), targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.options.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.grad_clip)
        lr = learning_rate(self.options, self.step, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.phase = "update"
        self.optimizer.step()
        self.phase = "idle"
        self.carry = self.model.detach_state(carry) if self.batches.carries_state else None
        self.step += 1
        self.step_in_epoch += 1
        self.tokens += inputs.numel()
        self.session_tokens += inputs.numel()
        value = loss.item()
        self.history.append(
            {
                "step": self.step,
                "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
                "tokens": self.tokens,
                "lr": lr,
                "train_loss": value,
                "tokens_per_s": self.session_tokens / max(time.monotonic() - self.session_start, 1e-9),
                "elapsed_s": self.elapsed,
            }
        )
        return value

    def run(self) -> TrainResult:
        options = self.options
        self.out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not options.progress,
            desc="training",
        )
        previous_handler = self._catch_ctrl_c()
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        reason: str | None = None
        try:
            while (reason := self.stop_reason()) is None:
                if batches is None:
                    batches = self.batches.epoch(self.epoch, self.step_in_epoch)
                loss = self.train_step(*next(batches))
                bar.update(1)
                postfix = {
                    "loss": f"{loss:.4f}",
                    "tok_s": f"{self.history[-1]['tokens_per_s']:,.0f}",
                    "epoch": f"{self.history[-1]['epoch']:.2f}",
                }
                if options.minutes:
                    postfix["left"] = _clock(self.training_seconds() - self.elapsed)
                bar.set_postfix(postfix, refresh=False)
                if self.step_in_epoch == self.steps_per_epoch:
                    self.epoch, self.step_in_epoch, self.carry, batches = self.epoch + 1, 0, None, None
                    if options.sample_every is None:
                        self.report(bar)
                if options.sample_every and self.step % options.sample_every == 0:
                    self.report(bar)
                if self.on_step is not None:
                    self.on_step(self.step, loss)
        except KeyboardInterrupt:
            reason = "interrupted"
            if self.phase == "update":  # weights half-updated: keep the checkpoint already on disk
                bar.close()
                self._restore_ctrl_c(previous_handler)
                print(
                    f"reverie: interrupted while updating the weights; the last checkpoint in {self.out} is "
                    f"kept. Resume with: {self.resume_command()}",
                    file=sys.stderr,
                )
                raise
            if self.phase == "compute":  # the step in flight is dropped: resuming redoes it
                self._set_rng_state(self.rng_before_step)
        finally:
            self._restore_ctrl_c(previous_handler)
        bar.close()
        return self.finish(reason)

    def finish(self, reason: str) -> TrainResult:
        """Save, then evaluate, write samples and the plot: a second Ctrl-C here loses nothing."""
        self.save()
        if reason == "interrupted":
            print(
                f"reverie: stopped at step {self.step} (epoch {self.epoch}); saved {self.out}. "
                f"Resume with: {self.resume_command()}",
                file=sys.stderr,
            )
        if self.last_eval_step != self.step:
            self.report(None)
        train_loss = next(
            (r["train_loss"] for r in reversed(self.history) if r.get("train_loss") is not None), None
        )
        return TrainResult(
            self.out,
            self.step,
            self.step / self.steps_per_epoch,
            train_loss,
            self.last_val_loss,
            self.best_val_loss,
            reason,
            self.resume_command(),
        )

    def report(self, bar: tqdm | None) -> None:
        """Validation loss, samples at each temperature, and a checkpoint."""
        started = time.monotonic()
        is_best = False
        if len(self.val_ids) > 0:
            val_loss = evaluate(self.model, self.val_ids, self.options, self.device)
            self.last_val_loss = val_loss
            is_best = self.best_val_loss is None or val_loss < self.best_val_loss
            if is_best:
                self.best_val_loss, self.best_step = val_loss, self.step
            self.history.append(
                {
                    "step": self.step,
                    "epoch": self.step / self.steps_per_epoch,
                    "val_loss": val_loss,
                    "val_bits": val_loss / math.log(2),
                    "elapsed_s": self.elapsed,
                }
            )
            message = (
                f"step {self.step} (epoch {self.step / self.steps_per_epoch:.2f}): validation loss "
                f"{val_loss:.4f} nats/token, {val_loss / math.log(2):.4f} bits/token"
                f"{' (best)' if is_best else ''}"
            )
            _say(message, sys.stderr, bar)
        self.last_eval_step = self.step
        self.write_samples(bar)
        self.save(best=is_best)
        self.report_seconds = time.monotonic() - started

    def write_samples(self, bar: tqdm | None) -> None:
        options = self.options
        if not options.sample_temperatures:
            return
        tokenizer = self.corpus.tokenizer
        rng = np.random.default_rng([options.seed, self.step])
        prompt_len = min(SAMPLE_PROMPT_TOKENS, options.seq_len, len(self.train_ids) - 1)
        begin = int(rng.integers(0, len(self.train_ids) - prompt_len))
        prompt_ids = [int(i) for i in self.train_ids[begin : begin + prompt_len]]
        writer = TextModel(self.model, tokenizer, self.device)
        seed_text = tokenizer.decode(prompt_ids)
        blocks = [
            (f"=== step {self.step}, epoch {self.step / self.steps_per_epoch:.2f}, seed: {seed_text!r}")
        ]
        for index, temperature in enumerate(options.sample_temperatures):
            seed = int(np.random.default_rng([options.seed, self.step, index]).integers(2**31))
            pieces = writer.stream_ids(
                prompt_ids, options.sample_length, SamplingOptions(temperature=temperature), seed=seed
            )
            blocks.append(f"--- temperature {temperature:g}\n{seed_text}{''.join(p[0] for p in pieces)}")
        text = "\n".join(blocks) + "\n\n"
        with open(self.out / rundir.SAMPLES, "a", encoding="utf-8") as handle:
            handle.write(text)
        _say(text, sys.stdout, bar)

    def save(self, best: bool = False) -> None:
        """Write the checkpoint (weights, optimizer, RNG, counters), metrics.csv and loss.png."""
        self.out.mkdir(parents=True, exist_ok=True)
        weights = {name: t.detach() for name, t in self.model.state_dict().items()}
        optimizer_json, tensors = split_tensors(self.optimizer.state_dict(), "optimizer")
        rng_json, rng_tensors = split_tensors(self._rng_state(), "rng")
        carry_json, carry_tensors = split_tensors(self.carry, "carry")
        groups = {rundir.MODEL: weights, rundir.STATE: {**tensors, **rng_tensors, **carry_tensors}}
        if best:
            groups[rundir.BEST] = weights
        config = {
            "model": self.model_config.to_json(),
            "tokenizer": self.corpus.tokenizer.to_json(),
            "corpus": {
                "sources": self.corpus.sources,
                "fingerprint": self.corpus.fingerprint,
                "tokens": len(self.corpus.ids),
                "train_tokens": len(self.train_ids),
                "val_tokens": len(self.val_ids),
            },
            "options": dataclasses.asdict(self.options),
            "state": {
                "step": self.step,
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "tokens": self.tokens,
                "steps_per_epoch": self.steps_per_epoch,
                "elapsed_s": self.elapsed,
                "best_val_loss": self.best_val_loss,
                "best_step": self.best_step,
                "last_val_loss": self.last_val_loss,
                "last_eval_step": self.last_eval_step,
                "dtype": str(self.dtype).removeprefix("torch."),
                "optimizer": optimizer_json,
                "rng": rng_json,
                "carry": carry_json,
            },
            "files": self.files,
        }
        rundir.save_checkpoint(self.out, config, groups)
        self.files = config["files"]
        rundir.write_metrics(self.out / rundir.METRICS, self.history)
        plot_losses(
            self.history,
            self.out / rundir.PLOT,
            title=f"{self.out.name}: {self.model_config.kind} "
            f"{self.model_config.layers}x{self.model_config.hidden}, {self.corpus.tokenizer.level} level",
        )

    # -- RNG and Ctrl-C --

    def _rng_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        if "cpu" in state:
            torch.set_rng_state(state["cpu"])
        if "cuda" in state:
            torch.cuda.set_rng_state_all(state["cuda"])

    def _catch_ctrl_c(self) -> Any:
        """First Ctrl-C: finish the step, save and stop. Second: stop at once (KeyboardInterrupt)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum: int, frame: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            print(
                "\nreverie: Ctrl-C: stopping after this step and saving (Ctrl-C again quits at once)",
                file=sys.stderr,
            )

        return signal.signal(signal.SIGINT, request_stop)

    @staticmethod
    def _restore_ctrl_c(previous: Any) -> None:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)


def _to_device(state: Any, device: torch.device) -> Any:
    if isinstance(state, torch.Tensor):
        return state.to(device)
    if isinstance(state, (list, tuple)):
        return type(state)(_to_device(item, device) for item in state)
    return state


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
    `out`; `options` are TrainOptions fields. `on_step(step, loss)` is called after each step."""
    sources = [str(corpus)] if isinstance(corpus, (str, Path)) else [str(s) for s in corpus]
    out = Path(out)
    require(not out.exists() or out.is_dir(), f"--out {out} is a file; pass a directory for the run")
    saved = None
    if options.get("resume"):
        saved = rundir.read_config(out)
        if not isinstance(saved.get("state"), dict) or not isinstance(saved.get("options"), dict):
            raise ReverieError(f"{out} holds no training state to resume; train a new run into another --out")
    elif rundir.has_run(out) and not options.get("overwrite"):
        raise ReverieError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
            "or choose another --out"
        )
    resolved = resolve_options(options, saved["options"] if saved else None)
    if saved is None:
        tokens = load_corpus(
            sources, resolved.level, resolved.lower, resolved.max_vocab, resolved.encoding, resolved.errors
        )
    else:
        tokens = load_corpus(
            sources,
            encoding=resolved.encoding,
            errors=resolved.errors,
            tokenizer=Tokenizer.from_json(saved["tokenizer"]),
        )
        trained_on = saved.get("corpus", {}).get("fingerprint")
        require(
            tokens.fingerprint == trained_on,
            f"--resume with a different corpus: {' '.join(sources)} is not the text the run in {out} was "
            "trained on; pass the same corpus, or train a new run into another --out",
        )
    trainer = Trainer(tokens, out, resolved, saved, on_step)
    if saved is not None:
        finished = trainer.stop_reason()
        require(
            finished is None,
            f"the run in {out} already reached its budget ({finished}); pass a larger --epochs, --steps or "
            "--minutes with --resume to train on",
        )
    elif resolved.overwrite:
        for name in rundir.RUN_FILES:
            (out / name).unlink(missing_ok=True)
    return trainer.run()


__all__ = ["TrainResult", "Trainer", "train"]
