"""Training a text language model: `reverie.train()` and `reverie train`.

    import reverie
    reverie.train("shakespeare", "runs/shakespeare", minutes=5)       # the defaults
    reverie.train("nietzsche", "runs/book", preset="book")             # the book's run, exactly
    reverie.train("nietzsche", "runs/book", resume=True)               # continue after Ctrl-C

    reverie train shakespeare --out runs/shakespeare --minutes 5

Two ways to cut the corpus into batches:
- "stream" (default, as char-rnn): the training ids are cut into `batch_size` contiguous streams
  read `seq_len` tokens at a time; the hidden state is carried from one batch to the next
  (truncated backpropagation through time) and every token is a target. The validation tail is
  scored the same way, so the loss is the model's per-token loss as it generates.
- "windows" (the book): windows of `seq_len` tokens every `window_step` tokens, shuffled each
  epoch, a fresh state per window, and only the token after the window as the target.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from reverie.checkpoint import join_tensors, split_tensors
from reverie.device import DEVICES, DTYPES, autocast, resolve_device, resolve_dtype
from reverie.errors import ReverieError, require
from reverie.text import rundir
from reverie.text.corpus import (
    TokenizedCorpus, WindowSampler, book_starts, check_encoding, gather_windows, load_corpus, split_ids,
)
from reverie.text.generator import TextModel, restore_weights
from reverie.text.models import INITS, KINDS, LanguageModel, ModelConfig, build_model
from reverie.text.plots import plot_losses
from reverie.text.sampling import SamplingOptions
from reverie.text.tokenizer import LEVELS

DEFAULT_EPOCHS = 10  # when no --epochs, --steps or --minutes is given
WORD_MAX_VOCAB = 10_000  # word level's default --max-vocab
MIN_LR_FRACTION = 0.1  # the cosine schedule ends at this fraction of --lr
MAX_EVAL_TOKENS = 1 << 17  # validation scores at most this many tokens of the held-out tail
EVAL_STREAMS = 32
SAMPLE_PROMPT_TOKENS = 60  # the book's seed length
BATCHINGS = ("stream", "windows")
OPTIMIZERS = ("adamw", "rmsprop")
SCHEDULES = ("cosine", "constant")
BUDGETS = ("epochs", "steps", "minutes")
DTYPE_CHOICES = ("auto", *DTYPES)


def _option(default: Any, help: str, **cli: Any) -> Any:
    """A TrainOptions field with its command-line help (command.py builds the parser from these)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainOptions:
    """Every training setting; `reverie train --help` lists them with the same names."""

    preset: str | None = _option(None, "start from a named set of options; explicit options override it",
                                 choices=("book",))
    # corpus
    level: str = _option("char", "tokens are characters or words (words and punctuation)", choices=LEVELS)
    lower: bool = _option(False, "lowercase the text")
    max_vocab: int | None = _option(None, f"word level: keep this many tokens, the rest become <unk> "
                                          f"(default {WORD_MAX_VOCAB})", type=int)
    encoding: str = _option("utf-8", "text encoding of the corpus files")
    errors: str = _option("strict", "what to do with undecodable bytes: strict, replace or ignore")
    val_fraction: float = _option(0.1, "hold out this tail fraction of the corpus for validation (0: none)",
                                  type=float)
    # model
    model: str = _option("lstm", "model kind", choices=KINDS)
    layers: int = _option(2, "layers", type=int)
    hidden: int = _option(512, "hidden units (conv: channels)", type=int)
    embed: int = _option(64, "token embedding size; 0 feeds one-hot vectors as the book does", type=int)
    dropout: float = _option(0.1, "dropout between layers and before the output", type=float)
    kernel_size: int = _option(3, "conv model: kernel size (layer i has dilation 2**i)", type=int)
    init: str = _option("torch", "weight initialization: PyTorch's or Keras' defaults", choices=INITS)
    # batches
    batching: str = _option("stream", "stream: contiguous streams with the state carried (every token a "
                                      "target); windows: the book's independent windows", choices=BATCHINGS)
    seq_len: int = _option(128, "tokens per training sequence (backprop length, or window length)", type=int)
    window_step: int = _option(3, "windows batching: one window every this many tokens", type=int)
    batch_size: int = _option(64, "sequences per batch", type=int)
    # optimization
    optimizer: str = _option("adamw", "adamw, or rmsprop as Keras does it (the book's)", choices=OPTIMIZERS)
    lr: float = _option(2e-3, "peak learning rate", type=float)
    weight_decay: float = _option(0.01, "AdamW weight decay (matrices only)", type=float)
    schedule: str = _option("cosine", "learning rate after warmup: cosine decay to 10%% over the budget, "
                                      "or constant", choices=SCHEDULES)
    warmup_steps: int = _option(50, "steps of linear learning-rate warmup", type=int)
    grad_clip: float = _option(1.0, "clip the gradient norm to this (0: no clipping)", type=float)
    # budget (totals for the run, --resume included); training stops at the first one reached
    epochs: int | None = _option(None, f"passes over the training text (default {DEFAULT_EPOCHS} when no "
                                       "budget is given)", type=int)
    steps: int | None = _option(None, "optimizer steps", type=int)
    minutes: float | None = _option(None, "wall-clock minutes", type=float)
    # machine
    seed: int = _option(0, "random seed (weights, batch order, dropout, samples)", type=int)
    device: str = _option("auto", "where to train", choices=DEVICES)
    dtype: str = _option("auto", "bfloat16 autocast, or float32; auto is bfloat16 on CUDA GPUs that "
                                 "support it, float32 on CPUs (where it is faster)", choices=DTYPE_CHOICES)
    # reporting
    sample_every: int | None = _option(None, "evaluate, sample and save every this many steps (default: "
                                             "each epoch end)", type=int)
    sample_temperatures: tuple[float, ...] = _option((0.2, 0.5, 1.0, 1.2), "temperatures of the samples "
                                                     "written while training", type=float, nargs="*")
    sample_length: int = _option(400, "tokens per sample written while training", type=int)
    progress: bool = _option(True, "show a progress bar (samples and validation losses are printed either way)")
    # run directory
    resume: bool = _option(False, "continue the run saved in --out")
    overwrite: bool = _option(False, "replace a run already saved in --out")


PRESETS: dict[str, dict[str, Any]] = {
    # Deep Learning with Python, 8.1: lowercased characters, 60-char windows every 3, one-hot input
    # to LSTM(128), softmax output, RMSprop(lr=0.01), batch 128, 60 epochs, no clipping.
    "book": dict(
        level="char", lower=True, model="lstm", layers=1, hidden=128, embed=0, dropout=0.0, init="keras",
        batching="windows", seq_len=60, window_step=3, batch_size=128,
        optimizer="rmsprop", lr=0.01, weight_decay=0.0, schedule="constant", warmup_steps=0, grad_clip=0.0,
        epochs=60, dtype="float32", sample_temperatures=(0.2, 0.5, 1.0, 1.2), sample_length=400,
    ),
}

# What a resumed run may change; any other option given with resume must equal the run's.
RESUME_OVERRIDABLE = frozenset(
    {*BUDGETS, "device", "dtype", "sample_every", "sample_temperatures", "sample_length", "progress", "resume"}
)
# Options that decide the model's shape, named in the refusal message.
SHAPE_OPTIONS = frozenset({"model", "layers", "hidden", "embed", "kernel_size", "level", "max_vocab", "lower"})

OPTION_NAMES = tuple(f.name for f in dataclasses.fields(TrainOptions))


def flag(name: str) -> str:
    """The command-line spelling of an option name."""
    return "--" + name.replace("_", "-")


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


# ---- options --------------------------------------------------------------------------------------


def resolve_options(explicit: dict[str, Any], saved: dict[str, Any] | None = None) -> TrainOptions:
    """Defaults, then the preset, then the explicit options; with `saved` (resuming), the run's
    options, of which only budgets, device, dtype and sampling may change."""
    unknown = sorted(set(explicit) - set(OPTION_NAMES))
    require(not unknown, f"unknown training option {', '.join(map(repr, unknown))}; "
                         f"see `reverie train --help` for the options")
    if saved is not None:
        values = {name: saved[name] for name in OPTION_NAMES if name in saved}
        for name, value in explicit.items():
            if name in RESUME_OVERRIDABLE or _same(value, values.get(name)):
                continue
            what = "a different model shape" if name in SHAPE_OPTIONS else "a different setting"
            raise ReverieError(
                f"--resume with {what}: {flag(name)} {value} but the run in progress has {values.get(name)}; "
                "resume with the run's settings or train a new run into another --out"
            )
    else:
        preset = explicit.get("preset")
        require(preset is None or preset in PRESETS,
                f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        values = {f.name: f.default for f in dataclasses.fields(TrainOptions)}
        values.update(PRESETS.get(preset, {}) if preset else {})
    if any(explicit.get(name) is not None for name in BUDGETS):
        values.update({name: None for name in BUDGETS})  # a budget given replaces the preset's or the run's
    values.update(explicit)
    if all(values.get(name) is None for name in BUDGETS):
        values["epochs"] = DEFAULT_EPOCHS
    if values["level"] == "word" and values.get("max_vocab") is None:
        values["max_vocab"] = WORD_MAX_VOCAB
    values["sample_temperatures"] = tuple(float(t) for t in values.get("sample_temperatures") or ())
    options = TrainOptions(**values)
    validate_options(options)
    return options


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def validate_options(options: TrainOptions) -> None:
    """Refuse an impossible setting in one line, before anything is read or written."""
    for name in ("layers", "hidden", "seq_len", "window_step", "batch_size", "sample_length",
                 "epochs", "steps", "sample_every"):
        value = getattr(options, name)
        if value is not None:
            require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                    f"{flag(name)} must be a positive integer, got {value}")
    for name in ("lr", "minutes"):
        value = getattr(options, name)
        if value is not None:
            require(value > 0 and math.isfinite(value), f"{flag(name)} must be positive, got {value}")
    for name in ("weight_decay", "grad_clip", "warmup_steps", "embed"):
        value = getattr(options, name)
        require(value >= 0, f"{flag(name)} must be zero or positive, got {value}")
    require(0.0 <= options.dropout < 1.0, f"--dropout must be in [0, 1), got {options.dropout}")
    require(0.0 <= options.val_fraction < 1.0, f"--val-fraction must be in [0, 1), got {options.val_fraction}")
    for temperature in options.sample_temperatures:
        require(temperature >= 0, f"--sample-temperatures must be zero (greedy) or positive, got {temperature}")
    if options.max_vocab is not None:
        require(options.max_vocab >= 2, f"--max-vocab must be at least 2, got {options.max_vocab}")
    for name, choices in (("level", LEVELS), ("batching", BATCHINGS), ("optimizer", OPTIMIZERS),
                          ("schedule", SCHEDULES), ("dtype", DTYPE_CHOICES), ("device", DEVICES)):
        value = getattr(options, name)
        require(value in choices, f"unknown {flag(name)} {value!r}; choose one of {', '.join(choices)}")
    check_encoding(options.encoding, options.errors)
    _model_config(options, vocab_size=1).validate()


def _model_config(options: TrainOptions, vocab_size: int) -> ModelConfig:
    return ModelConfig(kind=options.model, vocab_size=vocab_size, embed=options.embed, hidden=options.hidden,
                       layers=options.layers, dropout=options.dropout, kernel_size=options.kernel_size,
                       init=options.init)


def training_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 autocast on CUDA GPUs that support it and float32 elsewhere: on CPUs,
    even with AMX, PyTorch's LSTM and conv kernels measured 2-4x slower under bfloat16 autocast
    than in float32 (2-layer LSTM 512, batch 64x128: 2.7k against 0.6k tokens/s per core)."""
    if name != "auto":
        return resolve_dtype(name)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


# ---- batches ----------------------------------------------------------------------------------------


class StreamBatches:
    """The training ids as `batch_size` contiguous streams read `seq_len` tokens per step; each
    epoch shifts the grid by a seeded offset so windows do not always start at the same places."""

    carries_state = True

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int) -> None:
        self.ids, self.seq_len, self.seed = ids, seq_len, seed
        self.streams = min(batch_size, (len(ids) - 1) // seq_len)
        self.stream_len = (len(ids) - 1) // self.streams
        self.max_offset = min(seq_len - 1, self.stream_len - seq_len)
        self.steps_per_epoch = (self.stream_len - self.max_offset) // seq_len

    def epoch(self, epoch: int, first_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        offset = int(np.random.default_rng([self.seed, epoch]).integers(0, self.max_offset + 1))
        bases = np.arange(self.streams, dtype=np.int64) * self.stream_len + offset
        for step in range(first_step, self.steps_per_epoch):
            window = gather_windows(self.ids, bases + step * self.seq_len, self.seq_len + 1)
            yield window[:, :-1], window[:, 1:]

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class WindowBatches:
    """The book's batches: `seq_len`-token windows every `window_step` tokens, shuffled each epoch,
    and only the token after each window as its target."""

    carries_state = False

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, window_step: int, seed: int) -> None:
        self.ids, self.seq_len = ids, seq_len
        self.sampler = WindowSampler(book_starts(len(ids), seq_len, window_step), batch_size, seed)
        self.steps_per_epoch = self.sampler.steps_per_epoch()

    def epoch(self, epoch: int, first_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for starts in self.sampler.epoch_batches(epoch, first_step):
            window = gather_windows(self.ids, starts, self.seq_len + 1)
            yield window[:, :-1], window[:, -1]

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[:, -1], targets)


@torch.no_grad()
def evaluate(model: LanguageModel, ids: np.ndarray, options: TrainOptions, device: torch.device) -> float:
    """Mean validation loss in nats per token, scored as the model was trained (see module doc),
    in float32, over at most MAX_EVAL_TOKENS tokens."""
    ids = ids[: MAX_EVAL_TOKENS + 1]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        if options.batching == "windows":
            starts = book_starts(len(ids), options.seq_len, options.window_step)
            for begin in range(0, len(starts), options.batch_size):
                window = gather_windows(ids, starts[begin : begin + options.batch_size], options.seq_len + 1)
                logits, _ = model(window[:, :-1].to(device))
                total += F.cross_entropy(logits[:, -1].float(), window[:, -1].to(device), reduction="sum").item()
                count += len(window)
        else:
            streams = max(1, min(EVAL_STREAMS, (len(ids) - 1) // options.seq_len))
            length = (len(ids) - 1) // streams
            bases = np.arange(streams, dtype=np.int64) * length
            state = None
            for position in range(0, length, options.seq_len):
                span = min(options.seq_len, length - position)
                window = gather_windows(ids, bases + position, span + 1).to(device)
                logits, state = model(window[:, :-1], state)
                total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1),
                                         reduction="sum").item()
                count += window[:, 1:].numel()
    finally:
        model.train(was_training)
    return total / max(count, 1)


# ---- optimization -------------------------------------------------------------------------------------


class KerasRMSprop(torch.optim.Optimizer):
    """RMSprop as Keras writes it: v = rho*v + (1-rho)*g^2; w -= lr*g / sqrt(v + eps).

    torch.optim.RMSprop adds eps outside the square root, which bounds tiny-gradient steps very
    differently (1e-7 against sqrt(1e-7) = 3e-4), so the book preset uses this one.
    """

    def __init__(self, params: Any, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7) -> None:
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["square_avg"] = torch.zeros_like(param)
                square_avg = state["square_avg"]
                square_avg.mul_(group["rho"]).addcmul_(param.grad, param.grad, value=1 - group["rho"])
                param.addcdiv_(param.grad, square_avg.add(group["eps"]).sqrt_(), value=-group["lr"])


def build_optimizer(model: torch.nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    if options.optimizer == "rmsprop":
        return KerasRMSprop(model.parameters(), lr=options.lr)
    matrices = [p for name, p in model.named_parameters() if p.dim() >= 2 and not name.startswith("embedding.")]
    others = [p for name, p in model.named_parameters() if not (p.dim() >= 2 and not name.startswith("embedding."))]
    return torch.optim.AdamW(
        [{"params": matrices, "weight_decay": options.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=options.lr, betas=(0.9, 0.99),
    )


def learning_rate(options: TrainOptions, step: int, progress: float) -> float:
    """Linear warmup over warmup_steps, then constant or cosine decay to MIN_LR_FRACTION by
    `progress` (the fraction of the budget spent, 0..1)."""
    warmup = min(1.0, (step + 1) / options.warmup_steps) if options.warmup_steps else 1.0
    if options.schedule == "constant":
        return options.lr * warmup
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return options.lr * warmup * (MIN_LR_FRACTION + (1.0 - MIN_LR_FRACTION) * cosine)


# ---- the run ------------------------------------------------------------------------------------------


class Trainer:
    """One training run: model, optimizer, batches and the counters that a checkpoint saves."""

    def __init__(
        self, corpus: TokenizedCorpus, out: Path, options: TrainOptions, saved: dict[str, Any] | None,
        on_step: Callable[[int, float], None] | None = None,
    ) -> None:
        self.corpus, self.out, self.options, self.on_step = corpus, out, options, on_step
        self.device = resolve_device(options.device)
        self.dtype = training_dtype(options.dtype, self.device)
        self.train_ids, self.val_ids = split_ids(corpus.ids, options.val_fraction)
        self._check_lengths()
        if options.batching == "windows":
            self.batches: StreamBatches | WindowBatches = WindowBatches(
                self.train_ids, options.batch_size, options.seq_len, options.window_step, options.seed)
        else:
            self.batches = StreamBatches(self.train_ids, options.batch_size, options.seq_len, options.seed)
        self.steps_per_epoch = self.batches.steps_per_epoch
        torch.manual_seed(options.seed)
        self.model_config = _model_config(options, corpus.tokenizer.vocab_size)
        self.model = build_model(self.model_config).to(self.device)
        self.optimizer = build_optimizer(self.model, options)
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
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
        restore_weights(self.model, rundir.load_checked(self.out, saved, rundir.MODEL), self.out / rundir.MODEL)
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
        for name in ("step", "epoch", "step_in_epoch", "best_val_loss", "best_step", "last_val_loss",
                     "last_eval_step"):
            setattr(self, name, state.get(name))
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.files = dict(saved["files"])
        self.history = [row for row in rundir.read_metrics(self.out / rundir.METRICS) if row["step"] <= self.step]

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
        self.session_tokens += inputs.numel()
        value = loss.item()
        self.history.append({
            "step": self.step, "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
            "tokens": self.step * inputs.numel(), "lr": lr, "train_loss": value,
            "tokens_per_s": self.session_tokens / max(time.monotonic() - self.session_start, 1e-9),
            "elapsed_s": self.elapsed,
        })
        return value

    def run(self) -> TrainResult:
        options = self.options
        self.out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", file=sys.stderr, dynamic_ncols=True,
                   disable=not options.progress, desc="training")
        previous_handler = self._catch_ctrl_c()
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        reason: str | None = None
        try:
            while (reason := self.stop_reason()) is None:
                if batches is None:
                    batches = self.batches.epoch(self.epoch, self.step_in_epoch)
                loss = self.train_step(*next(batches))
                bar.update(1)
                postfix = dict(loss=f"{loss:.4f}", tok_s=f"{self.history[-1]['tokens_per_s']:,.0f}",
                               epoch=f"{self.history[-1]['epoch']:.2f}")
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
                print(f"reverie: interrupted while updating the weights; the last checkpoint in {self.out} is "
                      f"kept. Resume with: {self.resume_command()}", file=sys.stderr)
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
            print(f"reverie: stopped at step {self.step} (epoch {self.epoch}); saved {self.out}. "
                  f"Resume with: {self.resume_command()}", file=sys.stderr)
        if self.last_eval_step != self.step:
            self.report(None)
        train_loss = next((r["train_loss"] for r in reversed(self.history) if r.get("train_loss") is not None),
                          None)
        return TrainResult(self.out, self.step, self.step / self.steps_per_epoch, train_loss, self.last_val_loss,
                           self.best_val_loss, reason, self.resume_command())

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
            self.history.append({"step": self.step, "epoch": self.step / self.steps_per_epoch, "val_loss": val_loss,
                                 "val_bits": val_loss / math.log(2), "elapsed_s": self.elapsed})
            message = (f"step {self.step} (epoch {self.step / self.steps_per_epoch:.2f}): validation loss "
                       f"{val_loss:.4f} nats/token, {val_loss / math.log(2):.4f} bits/token"
                       f"{' (best)' if is_best else ''}")
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
        blocks = [f"=== step {self.step}, epoch {self.step / self.steps_per_epoch:.2f}, "
                  f"seed: {seed_text!r}"]
        for index, temperature in enumerate(options.sample_temperatures):
            seed = int(np.random.default_rng([options.seed, self.step, index]).integers(2**31))
            pieces = writer.stream_ids(prompt_ids, options.sample_length, SamplingOptions(temperature=temperature),
                                       seed=seed)
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
            "corpus": {"sources": self.corpus.sources, "fingerprint": self.corpus.fingerprint,
                       "tokens": int(len(self.corpus.ids)), "train_tokens": int(len(self.train_ids)),
                       "val_tokens": int(len(self.val_ids))},
            "options": dataclasses.asdict(self.options),
            "state": {
                "step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "steps_per_epoch": self.steps_per_epoch, "elapsed_s": self.elapsed,
                "best_val_loss": self.best_val_loss, "best_step": self.best_step,
                "last_val_loss": self.last_val_loss, "last_eval_step": self.last_eval_step,
                "dtype": str(self.dtype).removeprefix("torch."),
                "optimizer": optimizer_json, "rng": rng_json, "carry": carry_json,
            },
            "files": self.files,
        }
        rundir.save_checkpoint(self.out, config, groups)
        self.files = config["files"]
        rundir.write_metrics(self.out / rundir.METRICS, self.history)
        plot_losses(self.history, self.out / rundir.PLOT, title=f"{self.out.name}: {self.model_config.kind} "
                    f"{self.model_config.layers}x{self.model_config.hidden}, {self.corpus.tokenizer.level} level")

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
            print("\nreverie: Ctrl-C: stopping after this step and saving (Ctrl-C again quits at once)",
                  file=sys.stderr)

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
    corpus: str | Path | Sequence[str | Path], out: str | Path,
    on_step: Callable[[int, float], None] | None = None, **options: Any,
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
        raise ReverieError(f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                           "or choose another --out")
    resolved = resolve_options(options, saved["options"] if saved else None)
    if saved is None:
        tokens = load_corpus(sources, resolved.level, resolved.lower, resolved.max_vocab, resolved.encoding,
                             resolved.errors)
    else:
        from reverie.text.tokenizer import Tokenizer

        tokens = load_corpus(sources, encoding=resolved.encoding, errors=resolved.errors,
                             tokenizer=Tokenizer.from_json(saved["tokenizer"]))
        trained_on = saved.get("corpus", {}).get("fingerprint")
        require(tokens.fingerprint == trained_on,
                f"--resume with a different corpus: {' '.join(sources)} is not the text the run in {out} was "
                "trained on; pass the same corpus, or train a new run into another --out")
    trainer = Trainer(tokens, out, resolved, saved, on_step)
    if saved is not None:
        finished = trainer.stop_reason()
        require(finished is None,
                f"the run in {out} already reached its budget ({finished}); pass a larger --epochs, --steps or "
                "--minutes with --resume to train on")
    elif resolved.overwrite:
        for name in rundir.RUN_FILES:
            (out / name).unlink(missing_ok=True)
    return trainer.run()


__all__ = ["TrainOptions", "TrainResult", "PRESETS", "train", "resolve_options", "evaluate", "KerasRMSprop",
           "StreamBatches", "WindowBatches", "learning_rate", "training_dtype"]
