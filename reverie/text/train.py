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

Under torchrun (see reverie.distributed) each process trains a DistributedDataParallel replica on
its own share of every step's batch (reverie.text.batches): `--batch-size` is per process and the
global batch is batch_size x processes. Only rank 0 prints, evaluates, samples and writes the run;
every rank's RNG state is saved, and a run resumed with another number of processes keeps its
global batch (each process takes global / processes), so it continues the same run.

    torchrun --standalone --nproc_per_node 2 -m reverie train shakespeare --out runs/ddp --batch-size 16
"""

from __future__ import annotations

import dataclasses
import json
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
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from reverie import distributed
from reverie.checkpoint import join_tensors, load_tensor_bytes, split_tensors
from reverie.device import autocast, resolve_dtype
from reverie.distributed import SINGLE, Ranks
from reverie.errors import ReverieError, require
from reverie.text import rundir
from reverie.text.batches import MAX_EVAL_TOKENS, StreamBatches, WindowBatches, evaluate
from reverie.text.corpus import TokenizedCorpus, load_corpus, split_ids
from reverie.text.generator import TextModel, restore_weights
from reverie.text.models import build_model, map_state, state_tensors
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
        where: Ranks = SINGLE,
    ) -> None:
        self.corpus, self.out, self.options, self.on_step, self.where = corpus, out, options, on_step, where
        self.device = distributed.device_for(options.device, where)
        self.dtype = resolve_dtype(options.dtype, self.device)
        self.train_ids, self.val_ids = split_ids(corpus.ids, options.val_fraction)
        self._check_lengths()
        rank, world = where.rank, where.world_size
        if options.batching == "windows":
            self.batches: StreamBatches | WindowBatches = WindowBatches(
                self.train_ids,
                options.batch_size,
                options.seq_len,
                options.window_step,
                options.seed,
                rank,
                world,
            )
        else:
            self.batches = StreamBatches(
                self.train_ids, options.batch_size, options.seq_len, options.seed, rank, world
            )
        self.steps_per_epoch = self.batches.steps_per_epoch
        torch.manual_seed(options.seed)
        self.model_config = model_config(options, corpus.tokenizer.vocab_size)
        self.model = build_model(self.model_config).to(self.device)
        if rank > 0:  # rank 0 keeps a single process's random stream; the others draw their own dropout
            torch.manual_seed(_rank_seed(options.seed, rank, 0))
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
        # the module a step runs: DDP averages the gradients over the ranks during backward
        self.network: torch.nn.Module = self.model
        if where.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=device_ids)
        self.session_start = time.monotonic()
        self.session_tokens = 0
        self.agreed_stop = False  # with several ranks: what they agreed on after the last step
        self.agreed_fraction = 0.0
        if where.distributed:
            self._agree(0.0)

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
        tensors = self._load_shared(saved, rundir.STATE)
        restore_weights(self.model, self._load_shared(saved, rundir.MODEL), self.out / rundir.MODEL)
        try:
            self.optimizer.load_state_dict(join_tensors(state["optimizer"], tensors))
            if self.where.rank == 0:
                rng = join_tensors(state["rng"], tensors)
            else:
                others = join_tensors(state.get("rng_ranks", []), tensors)
                rng = others[self.where.rank - 1] if self.where.rank <= len(others) else None
            if rng is None:  # more ranks than the run had: a fresh stream, still set by --seed
                torch.manual_seed(_rank_seed(self.options.seed, self.where.rank, int(state["step"])))
            else:
                self._set_rng_state(rng)
            carry = self._share_of(join_tensors(state["carry"], tensors))
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError):
            raise ReverieError(
                f"the training state in {self.out} does not fit this run; it is corrupted or from an "
                "incompatible version"
            ) from None
        self.carry = map_state(carry, lambda t: t.to(self.device))
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
        if self.where.is_main:
            self.history = [
                row for row in rundir.read_metrics(self.out / rundir.METRICS) if row["step"] <= self.step
            ]

    def _load_shared(self, saved: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
        """Tensors of a checkpoint file that rank 0 reads and hands to every rank (the run
        directory need only be on rank 0's machine)."""
        data = distributed.share_from_main(lambda: rundir.read_checked(self.out, saved, name))
        return load_tensor_bytes(data, self.out / name)

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
            parts.append(self._time_fraction())
        return max(parts)

    def _time_fraction(self) -> float:
        """The minutes budget spent; with several ranks rank 0's, as agreed after the last step."""
        if self.where.distributed:
            return self.agreed_fraction
        return self.elapsed / self.training_seconds()

    def _agree(self, loss: float) -> float:
        """All ranks: sum this step's loss, whether any rank was asked to stop, and rank 0's time
        budget spent, so every rank stops at the same step with the same schedule. Returns the
        step's loss over the global batch."""
        fraction = (
            self.elapsed / self.training_seconds() if self.where.is_main and self.options.minutes else 0.0
        )
        total, stops, fraction = distributed.all_sum([loss, float(self.stop_requested), fraction])
        self.agreed_stop, self.agreed_fraction = stops > 0, fraction
        return total / self.where.world_size

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
        if self.agreed_stop if self.where.distributed else self.stop_requested:
            return "interrupted"
        if options.steps is not None and self.step >= options.steps:
            return "steps"
        if options.epochs is not None and self.epoch >= options.epochs:
            return "epochs"
        if options.minutes is not None:
            spent = (
                self.agreed_fraction >= 1.0
                if self.where.distributed
                else self.elapsed >= self.training_seconds()
            )
            if spent:
                return "minutes"
        return None

    def resume_command(self) -> str:
        return resume_command(self.corpus.sources, self.out, self.where.world_size)

    # -- training --

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        self.phase = "compute"
        self.rng_before_step = self._rng_state()
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        weight, step_tokens = (
            self.batches.weight(self.step_in_epoch),
            self.batches.step_tokens(self.step_in_epoch),
        )
        with autocast(self.device, self.dtype):
            logits, carry = self.network(inputs, self.carry)
        loss = self.batches.loss(logits.float(), targets)
        if weight != 1.0:  # a short last step shared unevenly between ranks
            loss = loss * weight
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
        self.tokens += step_tokens
        self.session_tokens += step_tokens
        value = loss.item()
        if self.where.distributed:
            value = self._agree(value)
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
        if self.where.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not options.progress or not self.where.is_main,
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
            # weights half-updated, or one rank alone stopping (the others cannot save with it):
            # keep the checkpoint already on disk
            if self.phase == "update" or self.where.distributed:
                bar.close()
                self._restore_ctrl_c(previous_handler)
                where = f"rank {self.where.rank} " if self.where.distributed else ""
                print(
                    f"reverie: {where}interrupted during a step; the last checkpoint in {self.out} is "
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
        if reason == "interrupted" and self.where.is_main:
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
        if self.where.is_main:
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
        """Write the checkpoint (weights, optimizer, RNG, counters), metrics.csv and loss.png.

        With several ranks every rank calls it: rank 0 gathers their RNG states and carried
        states (all ranks' streams, in global order) and writes alone."""
        rng = self._gathered_rng()
        carry = self._gathered_carry()
        if not self.where.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        weights = {name: t.detach() for name, t in self.model.state_dict().items()}
        optimizer_json, tensors = split_tensors(self.optimizer.state_dict(), "optimizer")
        rng_json, rng_tensors = split_tensors(rng[0], "rng")
        ranks_json, ranks_tensors = split_tensors(rng[1:], "rng_ranks")
        carry_json, carry_tensors = split_tensors(carry, "carry")
        groups = {
            rundir.MODEL: weights,
            rundir.STATE: {**tensors, **rng_tensors, **ranks_tensors, **carry_tensors},
        }
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
                "world_size": self.where.world_size,
                "optimizer": optimizer_json,
                "rng": rng_json,
                "rng_ranks": ranks_json,
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
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        if "cpu" in state:
            torch.set_rng_state(state["cpu"])
        if "cuda" in state and self.device.type == "cuda":
            if isinstance(state["cuda"], (list, tuple)):  # every GPU's, as older runs saved it
                torch.cuda.set_rng_state_all(state["cuda"])
            else:
                torch.cuda.set_rng_state(state["cuda"], self.device)

    def _gathered_rng(self) -> list[dict[str, Any]]:
        """Every rank's RNG state, in rank order (collective with several ranks)."""
        local = self._rng_state()
        if not self.where.distributed:
            return [local]
        parts = {key: distributed.all_gather(tensor) for key, tensor in local.items()}
        return [{key: parts[key][rank] for key in local} for rank in range(self.where.world_size)]

    def _gathered_carry(self) -> Any:
        """The carried state of all ranks' streams, in global order (collective with several ranks)."""
        if not self.where.distributed or self.carry is None:
            return self.carry
        dim = self.model.state_batch_dim
        return map_state(self.carry, lambda t: torch.cat(distributed.all_gather(t), dim=dim))

    def _catch_ctrl_c(self) -> Any:
        """First Ctrl-C: finish the step, save and stop. Second: stop at once (KeyboardInterrupt)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum: int, frame: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            if self.where.is_main:
                print(
                    "\nreverie: Ctrl-C: stopping after this step and saving (Ctrl-C again quits at once)",
                    file=sys.stderr,
                )

        return signal.signal(signal.SIGINT, request_stop)

    @staticmethod
    def _restore_ctrl_c(previous: Any) -> None:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)


def _rank_seed(seed: int, rank: int, step: int) -> int:
    """A torch seed for rank `rank` (> 0) drawn from --seed: ranks draw different dropout masks."""
    return int(np.random.default_rng([seed, rank, step]).integers(2**63))


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
    saved = None
    if options.get("resume"):
        saved = json.loads(distributed.share_from_main(lambda: json.dumps(rundir.read_config(out)).encode()))
        if not isinstance(saved.get("state"), dict) or not isinstance(saved.get("options"), dict):
            raise ReverieError(f"{out} holds no training state to resume; train a new run into another --out")
        saved["options"] = _per_rank_options(saved, out, where.world_size)
    else:
        distributed.share_from_main(lambda: _check_new_run(out, bool(options.get("overwrite"))))
    resolved = resolve_options(options, saved["options"] if saved else None)
    tokenizer = Tokenizer.from_json(saved["tokenizer"]) if saved is not None else None

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
        return load_corpus(sources, encoding=resolved.encoding, errors=resolved.errors, tokenizer=tokenizer)

    # a named corpus is downloaded, a big one encoded into the cache, once per machine
    tokens = distributed.local_first(where, read_corpus)
    if saved is not None:
        trained_on = saved.get("corpus", {}).get("fingerprint")
        require(
            tokens.fingerprint == trained_on,
            f"--resume with a different corpus: {' '.join(sources)} is not the text the run in {out} was "
            "trained on; pass the same corpus, or train a new run into another --out",
        )
    trainer = Trainer(tokens, out, resolved, saved, on_step, where)
    if saved is not None:
        finished = trainer.stop_reason()
        require(
            finished is None,
            f"the run in {out} already reached its budget ({finished}); pass a larger --epochs, --steps or "
            "--minutes with --resume to train on",
        )
    elif resolved.overwrite and where.is_main:
        for name in rundir.RUN_FILES:
            (out / name).unlink(missing_ok=True)
    return trainer.run()


def _check_new_run(out: Path, overwrite: bool) -> bytes:
    if rundir.has_run(out) and not overwrite:
        raise ReverieError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
            "or choose another --out"
        )
    return b""


def _per_rank_options(saved: dict[str, Any], out: Path, world_size: int) -> dict[str, Any]:
    """The run's options with --batch-size split for `world_size` processes: a resumed run keeps
    its global batch (per-process batch x the processes it ran on), whatever the processes now."""
    options = dict(saved["options"])
    global_batch = int(options["batch_size"]) * int(saved["state"].get("world_size", 1))
    require(
        global_batch % world_size == 0,
        f"the run in {out} trains on a global batch of {global_batch} sequences, which {world_size} "
        f"processes cannot share evenly; resume with a number of processes that divides {global_batch}",
    )
    options["batch_size"] = global_batch // world_size
    return options


__all__ = ["TrainResult", "Trainer", "resume_command", "train"]
