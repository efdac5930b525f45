"""Training options: one dataclass of every setting, the presets, and how they combine.

    from reverie.text.options import resolve_options
    options = resolve_options({"preset": "book", "minutes": 5})   # the book's run, 5 minutes

Each TrainOptions field carries its command-line help, and `reverie train`'s flags are generated
from the fields. Options combine as: defaults, then the preset, then what the user gave; resuming a
run starts from the run's own options, of which only the budget, device, dtype and sampling may
change (a different model shape or setting is refused in one line).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from reverie.device import DEVICES, DTYPE_CHOICES
from reverie.distributed import DEFAULT_TIMEOUT_S
from reverie.errors import ReverieError, require
from reverie.text.corpus import check_encoding
from reverie.text.models import INITS, KINDS, ModelConfig
from reverie.text.tokenizer import LEVELS

DEFAULT_EPOCHS = 10  # when no --epochs, --steps or --minutes is given
WORD_MAX_VOCAB = 10_000  # word level's default --max-vocab
BATCHINGS = ("stream", "windows")
OPTIMIZERS = ("adamw", "rmsprop")
SCHEDULES = ("cosine", "constant")
BUDGETS = ("epochs", "steps", "minutes")


def _option(default: Any, help: str, **cli: Any) -> Any:
    """A TrainOptions field with its command-line help (command.py builds the parser from these)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainOptions:
    """Every training setting; `reverie train --help` lists them with the same names.

    The defaults are the best of 5-minute runs on tiny-shakespeare (last 10% held out) on a 2-core
    CPU, validation loss in nats/char: a 2-layer LSTM of 448 units, no dropout, lr 4e-3 reached
    1.429; lr 3e-3 1.435 (1.446 decaying to 0), lr 5e-3 1.440; 384 and 512 units 1.444; 256
    units with dropout 0.1 1.456; 64-token sequences 1.457-1.470. On a CPU many small steps beat
    few large ones (batches of 32 x 32 tokens), and a budget of a few epochs leaves nothing for
    dropout to prevent: for runs of many epochs, add --dropout 0.2 once the validation loss stops
    following the training loss down.
    """

    preset: str | None = _option(
        None, "start from a named set of options; explicit options override it", choices=("book",)
    )
    # corpus
    level: str = _option("char", "tokens are characters or words (words and punctuation)", choices=LEVELS)
    lower: bool = _option(False, "lowercase the text")
    max_vocab: int | None = _option(
        None, f"word level: keep this many tokens, the rest become <unk> (default {WORD_MAX_VOCAB})", type=int
    )
    encoding: str = _option("utf-8", "text encoding of the corpus files")
    errors: str = _option("strict", "what to do with undecodable bytes: strict, replace or ignore")
    val_fraction: float = _option(
        0.1, "hold out this tail fraction of the corpus for validation (0: none)", type=float
    )
    # model
    model: str = _option("lstm", "model kind", choices=KINDS)
    layers: int = _option(2, "layers", type=int)
    hidden: int = _option(448, "hidden units (conv: channels)", type=int)
    embed: int = _option(64, "token embedding size; 0 feeds one-hot vectors as the book does", type=int)
    dropout: float = _option(0.0, "dropout between layers and before the output", type=float)
    kernel_size: int = _option(3, "conv model: kernel size (layer i has dilation 2**i)", type=int)
    init: str = _option("torch", "weight initialization: PyTorch's or Keras' defaults", choices=INITS)
    # batches
    batching: str = _option(
        "stream",
        "stream: contiguous streams with the state carried (every token a "
        "target); windows: the book's independent windows",
        choices=BATCHINGS,
    )
    seq_len: int = _option(32, "tokens per training sequence (backprop length, or window length)", type=int)
    window_step: int = _option(3, "windows batching: one window every this many tokens", type=int)
    batch_size: int = _option(32, "sequences per batch", type=int)
    # optimization
    optimizer: str = _option("adamw", "adamw, or rmsprop as Keras does it (the book's)", choices=OPTIMIZERS)
    lr: float = _option(4e-3, "peak learning rate", type=float)
    weight_decay: float = _option(0.01, "AdamW weight decay (matrices only)", type=float)
    schedule: str = _option(
        "cosine",
        "learning rate after warmup: cosine decay to 10%% over the budget, or constant",
        choices=SCHEDULES,
    )
    warmup_steps: int = _option(50, "steps of linear learning-rate warmup", type=int)
    grad_clip: float = _option(1.0, "clip the gradient norm to this (0: no clipping)", type=float)
    # budget (totals for the run, --resume included); training stops at the first one reached
    epochs: int | None = _option(
        None, f"passes over the training text (default {DEFAULT_EPOCHS} when no budget is given)", type=int
    )
    steps: int | None = _option(None, "optimizer steps", type=int)
    minutes: float | None = _option(None, "wall-clock minutes", type=float)
    # machine
    seed: int = _option(0, "random seed (weights, batch order, dropout, samples)", type=int)
    device: str = _option("auto", "where to train", choices=DEVICES)
    dtype: str = _option(
        "auto",
        "bfloat16 autocast, or float32; auto is bfloat16 where the hardware has it (CUDA GPUs, "
        "CPUs with AMX) and float32 elsewhere",
        choices=DTYPE_CHOICES,
    )
    dist_timeout: float = _option(
        DEFAULT_TIMEOUT_S,
        "under torchrun: seconds a process waits for the others (rank 0 evaluating, a slow start) "
        "before it stops with an error",
        type=float,
    )
    # reporting
    sample_every: int | None = _option(
        None, "evaluate, sample and save every this many steps (default: each epoch end)", type=int
    )
    sample_temperatures: tuple[float, ...] = _option(
        (0.2, 0.5, 1.0, 1.2), "temperatures of the samples written while training", type=float, nargs="*"
    )
    sample_length: int = _option(400, "tokens per sample written while training", type=int)
    progress: bool = _option(
        True, "show a progress bar (samples and validation losses are printed either way)"
    )
    # run directory
    resume: bool = _option(False, "continue the run saved in --out")
    overwrite: bool = _option(False, "replace a run already saved in --out")


PRESETS: dict[str, dict[str, Any]] = {
    # Deep Learning with Python, 8.1: lowercased characters, 60-char windows every 3, one-hot input
    # to LSTM(128), softmax output, RMSprop(lr=0.01), batch 128, 60 epochs, no clipping.
    "book": {
        "level": "char",
        "lower": True,
        "model": "lstm",
        "layers": 1,
        "hidden": 128,
        "embed": 0,
        "dropout": 0.0,
        "init": "keras",
        "batching": "windows",
        "seq_len": 60,
        "window_step": 3,
        "batch_size": 128,
        "optimizer": "rmsprop",
        "lr": 0.01,
        "weight_decay": 0.0,
        "schedule": "constant",
        "warmup_steps": 0,
        "grad_clip": 0.0,
        "epochs": 60,
        "dtype": "float32",
        "sample_temperatures": (0.2, 0.5, 1.0, 1.2),
        "sample_length": 400,
    },
}

# What a resumed run may change; any other option given with resume must equal the run's.
RESUME_OVERRIDABLE = frozenset(
    {
        *BUDGETS,
        "device",
        "dtype",
        "dist_timeout",
        "sample_every",
        "sample_temperatures",
        "sample_length",
        "progress",
        "resume",
    }
)
# Options that decide the model's shape, named in the refusal message.
SHAPE_OPTIONS = frozenset(
    {"model", "layers", "hidden", "embed", "kernel_size", "level", "max_vocab", "lower"}
)

OPTION_NAMES = tuple(f.name for f in dataclasses.fields(TrainOptions))


def flag(name: str) -> str:
    """The command-line spelling of an option name."""
    return "--" + name.replace("_", "-")


# ---- combining and checking


def resolve_options(explicit: dict[str, Any], saved: dict[str, Any] | None = None) -> TrainOptions:
    """Defaults, then the preset, then the explicit options; with `saved` (resuming), the run's
    options, of which only budgets, device, dtype and sampling may change."""
    unknown = sorted(set(explicit) - set(OPTION_NAMES))
    require(
        not unknown,
        f"unknown training option {', '.join(map(repr, unknown))}; "
        f"see `reverie train --help` for the options",
    )
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
        require(
            preset is None or preset in PRESETS,
            f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}",
        )
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
    for name in (
        "layers",
        "hidden",
        "seq_len",
        "window_step",
        "batch_size",
        "sample_length",
        "epochs",
        "steps",
        "sample_every",
    ):
        value = getattr(options, name)
        if value is not None:
            require(
                isinstance(value, int) and not isinstance(value, bool) and value > 0,
                f"{flag(name)} must be a positive integer, got {value}",
            )
    for name in ("lr", "minutes", "dist_timeout"):
        value = getattr(options, name)
        if value is not None:
            require(value > 0 and math.isfinite(value), f"{flag(name)} must be positive, got {value}")
    for name in ("weight_decay", "grad_clip", "warmup_steps", "embed"):
        value = getattr(options, name)
        require(value >= 0, f"{flag(name)} must be zero or positive, got {value}")
    require(0.0 <= options.dropout < 1.0, f"--dropout must be in [0, 1), got {options.dropout}")
    require(
        0.0 <= options.val_fraction < 1.0, f"--val-fraction must be in [0, 1), got {options.val_fraction}"
    )
    for temperature in options.sample_temperatures:
        require(
            temperature >= 0, f"--sample-temperatures must be zero (greedy) or positive, got {temperature}"
        )
    if options.max_vocab is not None:
        require(options.max_vocab >= 2, f"--max-vocab must be at least 2, got {options.max_vocab}")
    for name, choices in (
        ("level", LEVELS),
        ("batching", BATCHINGS),
        ("optimizer", OPTIMIZERS),
        ("schedule", SCHEDULES),
        ("dtype", DTYPE_CHOICES),
        ("device", DEVICES),
    ):
        value = getattr(options, name)
        require(value in choices, f"unknown {flag(name)} {value!r}; choose one of {', '.join(choices)}")
    check_encoding(options.encoding, options.errors)
    model_config(options, vocab_size=1).validate()


def model_config(options: TrainOptions, vocab_size: int) -> ModelConfig:
    return ModelConfig(
        kind=options.model,
        vocab_size=vocab_size,
        embed=options.embed,
        hidden=options.hidden,
        layers=options.layers,
        dropout=options.dropout,
        kernel_size=options.kernel_size,
        init=options.init,
    )
