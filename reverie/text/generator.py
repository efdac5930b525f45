"""A trained text model, loaded from its run directory, that writes text: `reverie.load()`.

    import reverie
    model = reverie.load("runs/shakespeare")            # best.safetensors (best validation loss)
    print(model.generate("ROMEO:", length=200, temperature=0.8, seed=0))
    for piece in model.stream("ROMEO:", length=200, top_p=0.9):
        print(piece, end="", flush=True)

`generate` and `stream` take Hugging Face `generate()` parameter names (temperature, top_k, top_p,
min_p, repetition_penalty, num_return_sequences is `num_samples`); temperature 0 is greedy. The
returned text is the continuation only, not the prompt. Generation is stateful: the prompt runs
through the model once, then each new token costs one step. With `num_samples` K > 1 the K streams
run as one batch and `stream` yields lists of K pieces.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from reverie.device import resolve_device
from reverie.errors import ReverieError, require
from reverie.text import rundir
from reverie.text.models import LanguageModel, ModelConfig, build_model
from reverie.text.sampling import SamplingOptions, generate_tokens
from reverie.text.tokenizer import Tokenizer

CHECKPOINTS = {"best": rundir.BEST, "latest": rundir.MODEL}
# Context given to the model when the prompt is empty: the first of these in the vocabulary.
_EMPTY_PROMPT_STARTS = ("\n", " ")


class TextModel:
    """A language model with its tokenizer: text in, text out."""

    def __init__(
        self,
        model: LanguageModel,
        tokenizer: Tokenizer,
        device: torch.device | str = "cpu",
        run_dir: Path | None = None,
    ) -> None:
        require(
            model.config.vocab_size == tokenizer.vocab_size,
            f"the model has {model.config.vocab_size} outputs but the tokenizer {tokenizer.vocab_size} "
            "tokens; the checkpoint is corrupted",
        )
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.run_dir = run_dir

    def __repr__(self) -> str:
        config = self.model.config
        return (
            f"TextModel({config.kind}, {config.layers}x{config.hidden}, {self.tokenizer.level} level, "
            f"vocab {self.tokenizer.vocab_size}, run_dir={str(self.run_dir)!r})"
        )

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of `prompt`, refusing tokens the model has never seen (word level included:
        a prompt word would otherwise silently become <unk>)."""
        unknown = self.tokenizer.unknown_tokens(prompt)
        if unknown:
            kind = "characters" if self.tokenizer.level == "char" else "words"
            shown = ", ".join(repr(token) for token in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise ReverieError(
                f"the prompt has {kind} not in the model's vocabulary: {shown}; remove or replace them"
            )
        return self.tokenizer.encode(prompt)

    def _start_ids(self, prompt_ids: Sequence[int]) -> tuple[list[int], int | None]:
        """(ids fed to the model first, id the continuation follows for detokenizing)."""
        if prompt_ids:
            return list(prompt_ids), int(prompt_ids[-1])
        for token in _EMPTY_PROMPT_STARTS:
            if token in self.tokenizer.vocab:
                return [self.tokenizer.vocab.index(token)], None
        return [0], None

    def stream_ids(
        self,
        prompt_ids: Sequence[int],
        length: int,
        options: SamplingOptions,
        num_samples: int = 1,
        seed: int | None = None,
    ) -> Iterator[list[str]]:
        """Text pieces (one per stream, one list per step) continuing `prompt_ids`."""
        require(isinstance(length, int) and length > 0, f"length must be a positive integer, got {length}")
        require(
            isinstance(num_samples, int) and num_samples > 0,
            f"num_samples must be a positive integer, got {num_samples}",
        )
        options.validate()
        start, previous = self._start_ids(prompt_ids)
        return self._pieces(start, previous, length, options, num_samples, seed)

    def _pieces(
        self,
        start: list[int],
        previous: int | None,
        length: int,
        options: SamplingOptions,
        num_samples: int,
        seed: int | None,
    ) -> Iterator[list[str]]:
        last: list[int | None] = [previous] * num_samples
        for tokens in generate_tokens(
            self.model, start, length, options, num_samples=num_samples, seed=seed, device=self.device
        ):
            ids = tokens.tolist()
            yield [self.tokenizer.decode([i], previous=p) for i, p in zip(ids, last)]
            last = ids

    def stream(
        self,
        prompt: str = "",
        length: int = 400,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        num_samples: int = 1,
        seed: int | None = None,
    ) -> Iterator[str] | Iterator[list[str]]:
        """Yield the continuation of `prompt` piece by piece as it is made (a list of pieces, one
        per sample, when num_samples > 1)."""
        options = SamplingOptions(
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
        )
        pieces = self.stream_ids(self.encode_prompt(prompt), length, options, num_samples, seed)
        if num_samples == 1:
            return (step[0] for step in pieces)
        return pieces

    def generate(
        self,
        prompt: str = "",
        length: int = 400,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        num_samples: int = 1,
        seed: int | None = None,
    ) -> str | list[str]:
        """The continuation of `prompt` (`length` new tokens); a list of texts when num_samples > 1."""
        steps = self.stream(
            prompt, length, temperature, top_k, top_p, min_p, repetition_penalty, num_samples, seed
        )
        if num_samples == 1:
            return "".join(steps)
        return ["".join(pieces) for pieces in zip(*steps)]


def load(run_dir: str | Path, checkpoint: str = "best", device: str = "auto") -> TextModel:
    """The model a run trained: `checkpoint="best"` (lowest validation loss; the latest weights when
    the run has no best.safetensors) or `"latest"` (where training stopped)."""
    require(checkpoint in CHECKPOINTS, f"unknown checkpoint {checkpoint!r}; choose best or latest")
    run_dir = Path(run_dir)
    config = rundir.read_config(run_dir)
    name = CHECKPOINTS[checkpoint]
    if name == rundir.BEST and name not in config["files"]:
        name = rundir.MODEL
    model = build_model(ModelConfig.from_json(config["model"]))
    restore_weights(model, rundir.load_checked(run_dir, config, name), run_dir / name)
    target = resolve_device(device)
    return TextModel(model.to(target).eval(), Tokenizer.from_json(config["tokenizer"]), target, run_dir)


def restore_weights(model: LanguageModel, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load `tensors` into `model`, refusing weights that do not fit its configuration."""
    try:
        model.load_state_dict(tensors)
    except RuntimeError:
        raise ReverieError(
            f"the weights in {source} do not fit the model described in config.json; the checkpoint is "
            "corrupted or from an incompatible version"
        ) from None


__all__ = ["TextModel", "load", "restore_weights"]
