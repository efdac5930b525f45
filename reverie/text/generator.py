"""A trained text model, loaded from its run directory, that writes text: `reverie.load()`.

    import reverie
    model = reverie.load("runs/shakespeare")            # the weights with the best validation loss
    model = reverie.load("shakespeare")                 # a shipped model (reverie models lists them)
    print(model.generate("ROMEO:", length=200, temperature=0.8, seed=0))
    for piece in model.stream("ROMEO:", length=200, top_p=0.9, stop=["\\n\\n"]):
        print(piece, end="", flush=True)
    texts = model.generate_batch("JULIET:", num_samples=4, length=100, seed=1)   # a list of 4

The options are reverie.text.sampling.SamplingOptions: sampling rules with Hugging Face
`generate()` names (temperature, top_k, top_p, min_p, repetition_penalty; temperature 0 is greedy),
`length` (new tokens), `num_samples`, `stop` (a sample ends at the first occurrence of any of these
strings, which is left out), `seed`, and `processors` (the user's own rules). The
text returned is the continuation only, not the prompt. An empty prompt starts the text as after a
newline (or a space, where the vocabulary has no newline). Generation is stateful: the prompt runs
through the model once, then each new token costs one step; the samples of a batch run together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from reverie.device import compiled, resolve_device
from reverie.errors import ReverieError, require
from reverie.text import rundir
from reverie.text.language_model import LanguageModel, ModelConfig
from reverie.text.models import build_model
from reverie.text.pretrained import locate
from reverie.text.sampling import SamplingOptions
from reverie.text.speculative import generate_tokens
from reverie.text.stops import StopText
from reverie.text.tokenizer import StreamDecoder, Tokenizer

CHECKPOINTS = {"best": rundir.BEST, "latest": rundir.MODEL}
EMPTY_PROMPT_CONTEXT = ("\n", " ")  # what an empty prompt reads as: the first of these in the vocabulary


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
        """Token ids the model reads before writing: those of `prompt`, refusing tokens the model
        has never seen (word level included: a prompt word would otherwise silently become <unk>),
        or for an empty prompt the first of EMPTY_PROMPT_CONTEXT in the vocabulary."""
        if not prompt:
            for token in EMPTY_PROMPT_CONTEXT:
                if token in self.tokenizer.vocab:
                    return [self.tokenizer.vocab.index(token)]
            raise ReverieError("give a prompt: this model's vocabulary has no newline or space to start from")
        unknown = self.tokenizer.unknown_tokens(prompt)
        if unknown:
            kind = "characters" if self.tokenizer.level == "char" else "words"
            shown = ", ".join(repr(token) for token in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise ReverieError(
                f"the prompt has {kind} not in the model's vocabulary: {shown}; remove or replace them"
            )
        return self.tokenizer.encode(prompt)

    def stream_ids(
        self, prompt_ids: Sequence[int], options: SamplingOptions, follows: int | None = None
    ) -> Iterator[list[str]]:
        """Text pieces (one per sample, "" where a sample has nothing new) continuing `prompt_ids`,
        until `options.length` tokens or until every sample reached a stop string. `follows` is the
        id the text continues, for word-level spacing (None: the start of a text). Arguments are
        checked now, before any text is made."""
        tokens = generate_tokens(self.model, prompt_ids, options)
        stops = [StopText(options.stop) for _ in range(options.num_samples)]
        decoders = [self.tokenizer.stream_decoder(follows) for _ in range(options.num_samples)]
        return self._pieces(tokens, stops, decoders)

    def _pieces(
        self, tokens: Iterator[torch.Tensor], stops: list[StopText], decoders: list[StreamDecoder]
    ) -> Iterator[list[str]]:
        for step in tokens:
            yield [stop.feed(decoder.feed(i)) for stop, decoder, i in zip(stops, decoders, step.tolist())]
            if all(stop.done for stop in stops):
                tokens.close()  # type: ignore[attr-defined]
                return
        rest = [stop.feed(decoder.flush()) + stop.flush() for stop, decoder in zip(stops, decoders)]
        if any(rest):
            yield rest

    def stream_batch(self, prompt: str = "", **options: Any) -> Iterator[list[str]]:
        """`num_samples` continuations of `prompt`, made as one batch: a list of pieces (one per
        sample) as each step is made. Options (reverie.text.sampling.SamplingOptions): temperature,
        top_k, top_p, min_p, repetition_penalty, length (400), num_samples (1), stop, seed,
        processors. Bad values are refused now, in one line, before any text."""
        chosen = SamplingOptions.of(**options)
        ids = self.encode_prompt(prompt)
        return self.stream_ids(ids, chosen, follows=ids[-1] if prompt else None)

    def stream(self, prompt: str = "", **options: Any) -> Iterator[str]:
        """The continuation of `prompt`, piece by piece as it is made (options as `stream_batch`,
        one sample)."""
        require(
            options.get("num_samples", 1) == 1,
            "stream and generate make one sample; use stream_batch or generate_batch for several",
        )
        return (pieces[0] for pieces in self.stream_batch(prompt, **options) if pieces[0])

    def generate(self, prompt: str = "", **options: Any) -> str:
        """The continuation of `prompt`, at most `length` new tokens (options as `stream_batch`)."""
        return "".join(self.stream(prompt, **options))

    def generate_batch(self, prompt: str = "", **options: Any) -> list[str]:
        """`num_samples` continuations of `prompt`, made as one batch (options as `stream_batch`)."""
        return join_samples(self.stream_batch(prompt, **options))


def join_samples(steps: Iterator[list[str]]) -> list[str]:
    """The texts of a batch stream: each sample's pieces joined."""
    return ["".join(pieces) for pieces in zip(*steps)]


def load(
    run_dir: str | Path, checkpoint: str = "best", device: str = "auto", compile: bool = False
) -> TextModel:
    """The model a run trained, or a shipped model by name (reverie.text.pretrained; a path that exists
    comes first): `checkpoint="best"` (lowest validation loss; the latest weights when
    the run has no best ones) or `"latest"` (where training stopped). `compile`: torch.compile the
    transformer's one-token step (the LSTM's is one fused kernel per layer already)."""
    require(checkpoint in CHECKPOINTS, f"unknown checkpoint {checkpoint!r}; choose best or latest")
    run_dir = locate(run_dir)  # a path as it is, else a shipped model's folder (its files checked)
    target = resolve_device(device)
    config, role, tensors = rundir.RunConfig.load_checkpoint(run_dir, CHECKPOINTS[checkpoint])
    check_weights_fit(config.model, tensors, config.path_of(run_dir, role))
    model = build_model(config.model)
    restore_weights(model, tensors, config.path_of(run_dir, role))
    model = model.to(target).eval()
    if compile:
        require(config.model.kind == "transformer", "--compile applies to a transformer's one-token step")
        model._run = compiled(model._run, target, dynamic=True)
    return TextModel(model, config.tokenizer, target, run_dir)


def restore_weights(model: LanguageModel, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load `tensors` into `model`, refusing weights that do not fit its configuration."""
    try:
        model.load_state_dict(tensors)
    except RuntimeError:
        raise _misfit(source) from None


def check_weights_fit(config: ModelConfig, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Refuse `tensors` unless they have the keys and shapes of the model of `config`, told from a model
    on the meta device: a config.json that lies allocates nothing (up to MAX_PARAMETERS) before this."""
    with torch.device("meta"):
        expected = build_model(config).state_dict()
    if expected.keys() != tensors.keys() or any(expected[k].shape != tensors[k].shape for k in expected):
        raise _misfit(source)


def _misfit(source: Path) -> ReverieError:
    return ReverieError(
        f"the weights in {source} do not fit the model described in config.json; the checkpoint is "
        "corrupted or from an incompatible version"
    )


__all__ = ["TextModel", "join_samples", "load", "restore_weights"]
