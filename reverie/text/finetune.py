"""Fine-tuning: a run that starts from a shipped model or another run's best weights (`--from`).

    reverie train my_poems.txt --from english --out runs/poems --minutes 2
    reverie train more.txt --from runs/shakespeare --out runs/more --steps 300

    import reverie
    reverie.train("my_poems.txt", "runs/poems", base="english", minutes=2)

The base's tokenizer and model are kept: the run's `options.model` is the base's ModelConfig, and
a model option given that makes it another (`!=`; only --dropout may change) or a tokenizer option
that differs is refused in one line; a shipped model is byte level, so any text fits, while a
char-level run refuses characters it has never seen. Its batching settings are the defaults, under
fine-tuning's own (reverie.text.options.FINETUNE_DEFAULTS: a lower learning rate, a short warmup,
early stopping after a few evaluations without a better validation loss) and the options given.
The run evaluates the base on the validation tail before the first step, so "best" is never worse
than where it started. Everything else is an ordinary run: the same run directory, samples,
metrics and --resume (which needs only the run, not the base).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reverie.errors import ReverieError
from reverie.options import flag_of, keywords_of, options_of, replaced
from reverie.text import rundir
from reverie.text.options import FINETUNE_DEFAULTS, TrainOptions, keep_model
from reverie.text.pretrained import locate

INHERITED = ("batching", "seq_len", "window_step", "batch_size")  # the base's, unless given


@dataclass
class Base:
    """What a fine-tuning run starts from: where it is, its config, and its best weights (float32)."""

    name: str
    folder: Path
    config: rundir.RunConfig
    weights: dict[str, torch.Tensor]


def load_base(target: str) -> Base:
    """The base that `--from target` names: a run directory, or a shipped model (files checked)."""
    folder = locate(target, flag="--from")
    try:  # with its options, for the defaults
        config, _, tensors = rundir.RunConfig.load_checkpoint(folder, rundir.BEST, training=True)
    except ReverieError:  # an older run's options: only its model and tokenizer
        config, _, tensors = rundir.RunConfig.load_checkpoint(folder, rundir.BEST)
    weights = {key: value.float() if value.is_floating_point() else value for key, value in tensors.items()}
    return Base(str(target), folder, config, weights)


def finetune_options(base: Base, explicit: dict[str, Any]) -> dict[str, Any]:
    """The options a fine-tuning run resolves (reverie.options.resolve of TrainOptions): the base's
    model and tokenizer, its batching settings, FINETUNE_DEFAULTS, then `explicit`, which may not
    change the model (its dropout aside: a fine-tuning run may regularize otherwise) or the tokenizer."""
    given = {name: value for name, value in explicit.items() if value is not None}
    kept = dataclasses.replace(base.config.model, vocab_size=None)  # a run's options leave it to the corpus
    known = options_of(TrainOptions)  # an unknown name is refused by resolve, in one line
    asked = replaced(
        TrainOptions(model=kept), {name: value for name, value in given.items() if name in known}
    )
    same = dataclasses.replace(asked.model, dropout=kept.dropout)
    keep_model(kept, same, f"--from {base.name} keeps the base's shape", "it has", "leave those options out")
    tokenizer = base.config.tokenizer
    tokenizing = {"level": tokenizer.level, "lower": tokenizer.lower}
    for name, value in tokenizing.items():
        if given.get(name, value) != value:
            raise ReverieError(
                f"--from {base.name} keeps the base's tokenizer: {flag_of(TrainOptions, name)} {given[name]} "
                f"but it has {value}; leave {flag_of(TrainOptions, name)} out"
            )
    if "max_vocab" in given:
        raise ReverieError(f"--from {base.name} keeps the base's vocabulary; leave --max-vocab out")
    inherited: dict[str, Any] = {}
    if base.config.options is not None:
        inherited = {name: getattr(base.config.options, name) for name in INHERITED}
        if tokenizer.level == "word":
            inherited["max_vocab"] = base.config.options.max_vocab
    if kept.kind == "transformer":
        inherited.pop("seq_len", None)  # a transformer's windows are its --context
    return {**inherited, **FINETUNE_DEFAULTS, **given, **keywords_of(asked, within="model"), **tokenizing}


__all__ = ["FINETUNE_DEFAULTS", "Base", "finetune_options", "load_base"]
