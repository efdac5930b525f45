"""Training options: one dataclass of every setting, the presets, and how they combine.

    from reverie.options import resolve
    from reverie.text.options import TrainOptions
    options = resolve(TrainOptions, {"preset": "book", "minutes": 5})   # the book's run, 5 minutes

Each TrainOptions field is declared with `reverie.options.option` (its help, bounds and choices), and
`reverie train`'s flags are generated from the fields. The model is one field, `model`, a
ModelConfig (its vocab_size left to the corpus): its options (`--model` for its kind, `--layers`,
`--hidden`, ...) are declared once, in ModelConfig, and keywords and flags name them flat. Options
combine as: defaults, then the preset, then what the user gave; the budget's rule chooses a dropout
left unset when the run starts (reverie.text.fit). Resuming a run starts from the run's own options,
its model the checkpoint's, of which only the budget, device, dtype and sampling may change: a
different model (`!=`) or setting is refused in one line (`keep_model`, which fine-tuning uses too).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from reverie.device import device_option, dtype_option
from reverie.distributed import DEFAULT_TIMEOUT_S
from reverie.errors import ReverieError, require
from reverie.options import build, check, check_value, flag, flag_of, group, option, options_of, replaced
from reverie.rng import seed_option
from reverie.text.bpe import DEFAULT_VOCAB as BPE_VOCAB
from reverie.text.corpus import check_encoding
from reverie.text.language_model import MAX_VOCAB, ModelConfig, check_predict
from reverie.text.tokenizer import LEVELS

DEFAULT_EPOCHS = 10  # when no --epochs, --steps or --minutes is given
WORD_MAX_VOCAB = 10_000  # word level's default --max-vocab
BATCHINGS = ("stream", "windows", "random")
OPTIMIZERS = ("adamw", "rmsprop")
SCHEDULES = ("cosine", "constant")
OUTPUT_BIASES = ("unigram", "init")
BUDGETS = ("epochs", "steps", "minutes")
POSITIVE = {"low": 0, "low_open": True}  # a positive finite number


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
        "output_bias": "init",
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


# The defaults of a model kind whose best settings differ from the LSTM's (the options' defaults):
# applied for a new run of that kind, under any option given. How they were found: docs/benchmarks.md.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "transformer": {  # the best of `python benchmarks/sweep.py transformer` on a 2-core CPU
        "batching": "random",
        "layers": 4,
        "heads": 4,
        "hidden": 128,
        "dropout": 0.0,
        "lr": 5e-3,
        "warmup_steps": 100,
    },
}
# A fine-tuning run's own defaults (--from), under the options given (reverie.text.finetune).
# Without --sample-every, evaluations (each with its samples and a saved checkpoint, which cost a few
# steps of a small model) come at epoch ends, but no more often than this many steps: a 20 KB text's
# epoch is a few steps, and evaluating at each would spend most of a short budget saving.
MIN_EVAL_STEPS = 25
FINETUNE_DEFAULTS: dict[str, Any] = {"lr": 2e-3, "warmup_steps": 20, "patience": 3, "layer_lr": 0.5}


def _as_flags(values: dict[str, Any]) -> str:
    """Option values as a command line gives them, for a help text: `--lr 0.001 --warmup-steps 20`."""
    return " ".join(
        f"{flag(name)} {value if isinstance(value, str) else f'{value:g}'}" for name, value in values.items()
    )


KIND_HELP = f"model kind (a transformer's own defaults: {_as_flags(MODEL_DEFAULTS['transformer'])})"


@dataclass
class TrainOptions:
    """Every training setting; `reverie train --help` lists them with the same names. How the
    defaults were chosen: docs/benchmarks.md, "Choosing the text defaults"."""

    KIND: ClassVar[str] = "training"  # in reverie.options.resolve's refusal of an unknown name
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    combine: ClassVar[Callable[..., dict[str, Any]]]  # how given options combine, below

    preset: str | None = option(
        None, "start from a named set of options; explicit options override it", choices=tuple(PRESETS)
    )
    base: str | None = option(
        None,
        "fine-tune: start from a shipped model (see `reverie models`) or a run directory's best weights, "
        f"keeping its tokenizer and shape, with fine-tuning defaults ({_as_flags(FINETUNE_DEFAULTS)})",
        metavar="NAME_OR_RUN",
        spelled="--from",
    )
    # corpus
    level: str = option(
        "char", "tokens are characters, words (and punctuation), UTF-8 bytes or BPE subwords", choices=LEVELS
    )
    lower: bool = option(False, "lowercase the text")
    max_vocab: int | None = option(
        None,
        f"word level: keep this many tokens, the rest become <unk> (default {WORD_MAX_VOCAB}); bpe: the "
        f"vocabulary size, bytes included (default {BPE_VOCAB})",
        low=2,
        high=MAX_VOCAB,
    )
    encoding: str = option("utf-8", "text encoding of the corpus files")
    errors: str = option("strict", "what to do with undecodable bytes: strict, replace or ignore")
    val_fraction: float = option(
        0.1,
        "hold out this tail fraction of the corpus for validation (0: none)",
        low=0,
        high=1,
        high_open=True,
    )
    # model
    model: ModelConfig = group(
        ModelConfig,
        leave=("vocab_size",),  # the corpus's
        helps={"kind": KIND_HELP},
    )
    output_bias: str = option(
        "unigram",
        "the output layer's starting bias: the log of each token's frequency in the training text "
        "(unigram: the first steps go to context, not to learning which tokens occur), or what --init "
        "gives (LSTM, GRU, conv; a transformer's output is its embedding, with no bias)",
        choices=OUTPUT_BIASES,
    )
    compile: bool = option(
        False, "torch.compile the training step and the one-token step (where the platform can)"
    )
    # batches
    batching: str = option(
        "stream",
        "stream: contiguous streams with the state carried (every token a target); windows: the "
        "book's independent windows; random: windows of --context tokens at random starts (a "
        "transformer's, the default for one)",
        choices=BATCHINGS,
    )
    seq_len: int = option(
        32, "tokens per training sequence (backprop length, or window length)", low=1, high=1 << 16
    )
    window_step: int = option(3, "windows batching: one window every this many tokens", low=1)
    batch_size: int = option(32, "sequences per batch", low=1, high=1 << 16)
    # optimization
    optimizer: str = option("adamw", "adamw, or rmsprop as Keras does it (the book's)", choices=OPTIMIZERS)
    lr: float = option(4e-3, "peak learning rate", **POSITIVE)
    weight_decay: float = option(0.01, "AdamW weight decay (matrices only)", low=0)
    layer_lr: float = option(
        1.0,
        "each layer learns at this fraction of the rate of the layer above it, the output layer at "
        "--lr (discriminative fine-tuning; 1: all alike, 0: only the output layer learns)",
        low=0,
        high=1,
    )
    schedule: str = option(
        "cosine",
        "learning rate after warmup: cosine decay to 10%% over the budget, or constant",
        choices=SCHEDULES,
    )
    warmup_steps: int = option(50, "steps of linear learning-rate warmup", low=0)
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: no clipping)", low=0)
    # budget (totals for the run, --resume included); training stops at the first one reached
    epochs: int | None = option(
        None, f"passes over the training text (default {DEFAULT_EPOCHS} when no budget is given)", low=1
    )
    steps: int | None = option(None, "optimizer steps", low=1)
    minutes: float | None = option(None, "wall-clock minutes", **POSITIVE)
    patience: int | None = option(
        None,
        "stop early once this many evaluations in a row found no better validation loss (the best "
        f"weights are kept either way; default: never, {FINETUNE_DEFAULTS['patience']} with --from)",
        low=1,
    )
    # machine
    seed: int = seed_option(0, "random seed (weights, batch order, dropout, samples)")
    device: str = device_option("where to train")
    dtype: str = dtype_option()
    dist_timeout: float = option(
        DEFAULT_TIMEOUT_S,
        "under torchrun: seconds a process waits for the others (rank 0 evaluating, a slow start) "
        "before it stops with an error",
        **POSITIVE,
    )
    # reporting
    sample_every: int | None = option(
        None,
        "evaluate, sample and save every this many steps (default: each epoch end, or every few "
        f"epochs where an epoch is under {MIN_EVAL_STEPS} steps)",
        low=1,
    )
    sample_temperatures: tuple[float, ...] = option(
        (0.2, 0.5, 1.0, 1.2), "temperatures of the samples written while training"
    )
    sample_length: int = option(400, "tokens per sample written while training", low=1)
    save_every: int | None = option(
        None, "also save a checkpoint every this many steps (between evaluations)", low=1, metavar="STEPS"
    )
    save_every_minutes: float = option(
        10.0, "also save a checkpoint at least this often (0: only at evaluations)", low=0, metavar="MINUTES"
    )
    progress: bool = option(
        True, "show a progress bar (samples and validation losses are printed either way)"
    )
    # run directory
    resume: bool = option(False, "continue the run saved in --out", switch=True)
    overwrite: bool = option(False, "replace a run already saved in --out", switch=True)

    def validate(self) -> None:
        """Refuse an impossible setting in one line, before anything is read or written."""
        check(self)
        for temperature in self.sample_temperatures:
            check_value("--sample-temperatures", temperature, low=0, rule="zero (greedy) or positive")
        check_encoding(self.encoding, self.errors)
        predict = self.model.predict
        check_predict(self.model.kind, predict)
        require(
            predict == 1 or self.batching != "windows",
            f"--predict {predict} trains heads on the tokens after each target; --batching windows "
            "has one target a window: use --batching stream or random",
        )

    def epochs_per_evaluation(self, steps_per_epoch: int) -> int:
        """Without --sample-every: evaluate every this many epochs (1, or enough that evaluations
        are at least MIN_EVAL_STEPS steps apart)."""
        return max(1, math.ceil(MIN_EVAL_STEPS / max(steps_per_epoch, 1)))

    @property
    def window(self) -> int:
        """Tokens per training sequence: a transformer's --context, the others' --seq-len."""
        return self.model.context if self.model.kind == "transformer" else self.seq_len


# What a resumed run may change; any other option given with resume must equal the run's.
RESUME_OVERRIDABLE = frozenset(
    {
        *BUDGETS,
        "patience",
        "device",
        "dtype",
        "dist_timeout",
        "sample_every",
        "sample_temperatures",
        "sample_length",
        "save_every",
        "save_every_minutes",
        "progress",
        "compile",
        "resume",
    }
)


def keep_model(kept: ModelConfig, asked: ModelConfig, refusal: str, has: str, fix: str) -> None:
    """Refuse, in one line, a run that asks for a model other than the one it keeps (a resumed run
    its checkpoint's, a fine-tuning run its base's): `REFUSAL: --hidden 64 but HAS 448; FIX`."""
    if asked == kept:
        return
    changed = [found for found in options_of(ModelConfig).values() if found.value(asked) != found.value(kept)]
    said = ", ".join(f"{found.flag} {found.value(asked)} but {has} {found.value(kept)}" for found in changed)
    raise ReverieError(f"{refusal}: {said}; {fix}")


def _combine(
    values: dict[str, Any], explicit: dict[str, Any], preset: str | None, resumed: bool
) -> dict[str, Any]:
    """Training's rules of combination (reverie.options.resolve calls them): after the defaults and
    the preset, the model kind's own defaults; resuming (`resumed`: `values` are the run's own
    options), only budgets, device, dtype and sampling may change. A budget given replaces the
    preset's or the run's; with none at all, DEFAULT_EPOCHS."""
    if resumed:
        fix = "resume with the run's settings or train a new run into another --out"
        run = build(TrainOptions, values)  # its model the checkpoint's
        asked = replaced(run, explicit).model
        keep_model(run.model, asked, "--resume with a different model", "the run in progress has", fix)
        for name, value in explicit.items():
            if name not in RESUME_OVERRIDABLE and not _same(value, values.get(name)):
                raise ReverieError(
                    f"--resume with a different setting: {flag_of(TrainOptions, name)} {value} but the run "
                    f"in progress has {values.get(name)}; {fix}"
                )
    else:
        model = explicit.get("model", values["model"])
        if model == "transformer":
            require(
                "seq_len" not in explicit,
                "--seq-len is the recurrent and conv models'; a transformer trains on windows of "
                "--context tokens",
            )
        values.update(MODEL_DEFAULTS.get(model, {}))
    if any(explicit.get(name) is not None for name in BUDGETS):
        values.update({name: None for name in BUDGETS})
    values.update(explicit)
    if all(values.get(name) is None for name in BUDGETS):
        values["epochs"] = DEFAULT_EPOCHS
    if values["level"] == "word" and values.get("max_vocab") is None:
        values["max_vocab"] = WORD_MAX_VOCAB
    temperatures = values.get("sample_temperatures") or ()
    # numbers as floats; anything else is left for validate() to refuse in one line
    values["sample_temperatures"] = tuple(
        float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else t for t in temperatures
    )
    return values


TrainOptions.combine = staticmethod(_combine)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b
