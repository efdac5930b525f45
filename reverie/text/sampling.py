"""Sampling next tokens from a language model: logits processors and stateful generation.

The rules follow Hugging Face `generate()` in meaning and order: repetition_penalty, then
temperature, top_k, top_p, min_p. Each rule is one small processor `(history, logits) -> logits`
and is left out when it would change nothing. Temperature 0 means greedy (argmax).

    from reverie.text.sampling import SamplingOptions, generate_tokens
    for ids in generate_tokens(model, prompt_ids, 400, SamplingOptions(temperature=0.5), seed=1):
        print(ids.tolist())   # one id per stream, as soon as it is made

Generation is stateful: the prompt runs through the model once, then every new token costs one
model step (the RNN state, or the conv model's cached receptive field). An empty prompt starts
each stream from a first token drawn uniformly from the vocabulary with the seeded generator;
that token is the first one yielded. `generate_tokens_rerun_window` is the book's way (re-run
the last `window` tokens from scratch for every token), kept only as the benchmark's baseline.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reverie.errors import ReverieError, require, require_positive

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SamplingOptions:
    """How to turn logits into the next token; None (or 1.0 / 0.0 where neutral) disables a rule."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None

    def validate(self) -> None:
        """Refuse an out-of-range option with one line that says the allowed range."""
        require(
            math.isfinite(self.temperature) and self.temperature >= 0,
            f"temperature must be 0 (greedy) or positive, got {self.temperature}",
        )
        if self.top_k is not None:
            require(
                isinstance(self.top_k, int) and not isinstance(self.top_k, bool) and self.top_k >= 1,
                f"top_k must be a whole number of at least 1, got {self.top_k}",
            )
        if self.top_p is not None:
            require(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None:
            require(0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}")
        if self.repetition_penalty is not None:
            require(
                math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
                f"repetition_penalty must be positive (1 = none), got {self.repetition_penalty}",
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# ---- processors: (history (B, t), logits (B, V)) -> logits -----------------------------------


def apply_repetition_penalty(history: torch.Tensor, logits: torch.Tensor, *, penalty: float) -> torch.Tensor:
    """Make tokens already in `history` less likely: positive logits / penalty, negative * penalty."""
    if history.shape[1] == 0:
        return logits
    seen = logits.gather(1, history)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, history, seen)


def apply_temperature(history: torch.Tensor, logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Divide logits by the temperature: the book's reweighting, softmax(log p / T)."""
    return logits / temperature


def apply_top_k(history: torch.Tensor, logits: torch.Tensor, *, k: int) -> torch.Tensor:
    """Keep the k largest logits (and any tied with the k-th); the rest become -inf."""
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, -math.inf)


def apply_top_p(history: torch.Tensor, logits: torch.Tensor, *, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probabilities sum to at least p."""
    sorted_logits, order = logits.sort(dim=-1)  # ascending
    tail_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = tail_mass <= 1 - p
    drop_sorted[..., -1] = False  # the most likely token always stays
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, -math.inf)


def apply_min_p(history: torch.Tensor, logits: torch.Tensor, *, p: float) -> torch.Tensor:
    """Drop tokens whose probability is below p times the most likely token's probability."""
    probs = logits.softmax(dim=-1)
    threshold = p * probs.amax(dim=-1, keepdim=True)
    return logits.masked_fill(probs < threshold, -math.inf)


def build_processors(options: SamplingOptions) -> list[Processor]:
    """The processors that `options` asks for, in Hugging Face's order, without no-ops.

    Greedy decoding keeps only the repetition penalty: the other rules never change the argmax.
    """
    processors: list[Processor] = []
    if options.repetition_penalty is not None and options.repetition_penalty != 1.0:
        processors.append(functools.partial(apply_repetition_penalty, penalty=options.repetition_penalty))
    if options.greedy:
        return processors
    if options.temperature != 1.0:
        processors.append(functools.partial(apply_temperature, temperature=options.temperature))
    if options.top_k is not None:
        processors.append(functools.partial(apply_top_k, k=options.top_k))
    if options.top_p is not None and options.top_p < 1.0:
        processors.append(functools.partial(apply_top_p, p=options.top_p))
    if options.min_p is not None and options.min_p > 0.0:
        processors.append(functools.partial(apply_min_p, p=options.min_p))
    return processors


def reweight_distribution(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The book's formula: p' = exp(log(p) / T) / sum(exp(log(p) / T)). Reference only."""
    reweighted = np.exp(np.log(probs) / temperature)
    return reweighted / np.sum(reweighted)


def sample_next(
    logits: torch.Tensor,
    history: torch.Tensor,
    options: SamplingOptions,
    generator: torch.Generator,
    processors: Sequence[Processor] | None = None,
) -> torch.Tensor:
    """One next token per row of `logits` (B, V): argmax when greedy, else a seeded draw.

    The draw happens on the CPU with `generator` (a CPU generator), so a seed gives the same
    tokens on any device. Pass `processors` (from `build_processors`) to skip rebuilding them.
    """
    if processors is None:
        processors = build_processors(options)
    logits = logits.float()
    for processor in processors:
        logits = processor(history, logits)
    if options.greedy:
        return logits.argmax(dim=-1)
    return draw(logits, generator)


def draw(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row of `logits` (B, V), drawn with probability softmax(logits), on the CPU.

    Inverse-CDF sampling: one uniform number u per row, and the first token whose cumulative
    probability exceeds u. A token of probability 0 (logit -inf) is never drawn. Less than half
    the cost of torch.multinomial for one draw, which matters at one call per generated token.
    """
    cdf = logits.cpu().softmax(dim=-1).cumsum_(dim=-1)
    total = cdf[:, -1:].contiguous()
    token = torch.searchsorted(cdf, torch.rand(cdf.shape[0], 1, generator=generator).mul_(total), right=True)
    # u * total can round up to the total: then the last token whose probability is not 0
    token = torch.minimum(token, torch.searchsorted(cdf, total))
    return token.squeeze_(1).to(logits.device)


# ---- generation ------------------------------------------------------------------------------


def _make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _start_history(
    model: nn.Module,
    prompt_ids: Sequence[int],
    length: int,
    num_samples: int,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, int]:
    """A (num_samples, len(prompt) + length) buffer holding the prompt, and the prompt's length.

    An empty prompt gets one first token per stream, drawn uniformly with the generator; it is
    stored in the buffer after the (empty) prompt, so it counts as generated.
    """
    require_positive("length", length)
    require_positive("num_samples", num_samples)
    vocab_size = model.config.vocab_size
    prompt = torch.as_tensor(list(prompt_ids), dtype=torch.long)
    bad = prompt[(prompt < 0) | (prompt >= vocab_size)]
    if bad.numel():
        raise ReverieError(f"prompt ids {bad.tolist()[:5]} are outside the vocabulary of {vocab_size} tokens")
    history = torch.zeros(num_samples, len(prompt) + length, dtype=torch.long)
    history[:, : len(prompt)] = prompt
    if len(prompt) == 0:
        history[:, 0] = torch.randint(vocab_size, (num_samples,), generator=generator)
    return history.to(device), len(prompt)


class _EvalMode:
    """Put a model in eval mode for a while, then restore its training flag."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def _setup(
    model: nn.Module,
    prompt_ids: Sequence[int],
    length: int,
    options: SamplingOptions,
    num_samples: int,
    seed: int | None,
    device: str | torch.device | None,
) -> tuple[torch.Generator, torch.Tensor, int, list]:
    """What both generators start from: the seeded generator, the token history holding the prompt
    (or a uniform first token), the prompt length, and the processors for `options`."""
    options.validate()
    device = torch.device(device) if device is not None else _model_device(model)
    generator = _make_generator(seed)
    history, start = _start_history(model, prompt_ids, length, num_samples, generator, device)
    return generator, history, start, build_processors(options)


def generate_tokens(
    model: nn.Module,
    prompt_ids: Sequence[int],
    length: int,
    options: SamplingOptions,
    num_samples: int = 1,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """Yield `length` new tokens, each a LongTensor (num_samples,), one model step per token.

    The prompt runs through the model once; then `model.stepper` makes each token (it reads the
    weights when the first token is made). The streams run as one batch. The model runs in eval
    mode under inference_mode; its training flag is restored when the iterator ends or is closed.
    `device` defaults to the model's.
    """
    generator, history, start, processors = _setup(model, prompt_ids, length, options, num_samples, seed, device)
    with _EvalMode(model):
        if start == 0:  # empty prompt: the uniform first token is the first output
            yield history[:, 0].cpu().clone()
            start, length = 1, length - 1
        step = None
        for position in range(start, start + length):
            with torch.inference_mode():
                if step is None:  # the prompt, in one call
                    logits, state = model(history[:, :start])
                    logits, step = logits[:, -1], model.stepper(state)
                else:
                    logits = step(history[:, position - 1])
                token = sample_next(logits, history[:, :position], options, generator, processors)
                history[:, position] = token
            yield token.cpu().clone()


def generate_tokens_rerun_window(
    model: nn.Module,
    prompt_ids: Sequence[int],
    length: int,
    options: SamplingOptions,
    window: int = 60,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """The book's way, for the benchmark: re-run the last `window` tokens from scratch per token.

    Yields LongTensor (1,) per token, like `generate_tokens` with one stream.
    """
    require_positive("window", window)
    generator, history, start, processors = _setup(model, prompt_ids, length, options, 1, seed, device)
    with _EvalMode(model):
        if start == 0:
            yield history[:, 0].cpu().clone()
            start, length = 1, length - 1
        for position in range(start, start + length):
            with torch.inference_mode():
                logits, _ = model(history[:, max(0, position - window) : position])
                token = sample_next(logits[:, -1], history[:, :position], options, generator, processors)
                history[:, position] = token
            yield token.cpu().clone()
