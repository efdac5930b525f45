"""Sampling next tokens from a language model: one processor per rule, and stateful generation.

Each rule is a small class: it checks its argument when built and maps (history, logits) to new
logits. The rules follow Hugging Face `generate()` in meaning and order: repetition penalty, then
temperature, top-k, top-p, min-p; `SamplingOptions.processors()` builds the list (leaving out what
would change nothing), and a user's own processors (any callable of the same shape) run after them.
SamplingOptions is also the one definition of `reverie generate`'s flags and the page's defaults.
Temperature 0 means greedy (argmax).

    from reverie.text.sampling import SamplingOptions, generate_tokens
    options = SamplingOptions.of(temperature=0.5, top_p=0.9, length=400, seed=1)
    for ids in generate_tokens(model, prompt_ids, options):
        print(ids.tolist())   # one id per stream, as soon as it is made

Generation is stateful: the prompt runs through the model once, then every new token costs one
model step (the RNN state, or the conv model's cached receptive field).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from reverie.errors import ReverieError, require
from reverie.options import check, check_value, option, resolve
from reverie.rng import seed_option

MAX_PROMPT_TOKENS = 10_000_000
SPECULATIVE = ("auto", "lookup", "heads", "off")  # reverie.text.speculative's ways
HISTORY_ROOM = 4096  # tokens the history makes room for at first (it doubles when full)

# (history (B, t) of token ids so far, logits (B, V)) -> logits
LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Each rule's bounds, declared once: the processor checks its argument against them, and
# SamplingOptions' fields carry them (for the command line's errors and the page's widgets).
PENALTY: dict[str, Any] = {"low": 0, "low_open": True, "rule": "positive (1 = none)"}
TEMPERATURE: dict[str, Any] = {"low": 0, "low_open": True}
TOP_K: dict[str, Any] = {"kind": int, "low": 1}
TOP_P: dict[str, Any] = {"low": 0, "low_open": True, "high": 1}
MIN_P: dict[str, Any] = {"low": 0, "high": 1}


# ---- processors: one per rule -------------------------------------------------------------------


class RepetitionPenalty:
    """Make tokens already in the history less likely: positive logits / penalty, negative * penalty."""

    def __init__(self, penalty: float) -> None:
        check_value("--repetition-penalty", penalty, **PENALTY)
        self.penalty = float(penalty)

    def __call__(self, history: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if history.shape[1] == 0:
            return logits
        seen = logits.gather(1, history)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return logits.scatter(1, history, seen)


class Temperature:
    """Divide the logits by the temperature: the book's reweighting, softmax(log p / T)."""

    def __init__(self, temperature: float) -> None:
        check_value("--temperature", temperature, **TEMPERATURE)
        self.temperature = float(temperature)

    def __call__(self, history: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature


class TopK:
    """Keep the k largest logits (and any tied with the k-th); the rest become -inf."""

    def __init__(self, k: int) -> None:
        check_value("--top-k", k, **TOP_K)
        self.k = k

    def __call__(self, history: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        kth = logits.topk(min(self.k, logits.shape[-1]), dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, -math.inf)


class TopP:
    """Nucleus sampling: keep the smallest set of most likely tokens whose probabilities sum to at least p."""

    def __init__(self, p: float) -> None:
        check_value("--top-p", p, **TOP_P)
        self.p = float(p)

    def __call__(self, history: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        sorted_logits, order = logits.sort(dim=-1)  # ascending
        tail_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = tail_mass <= 1 - self.p
        drop_sorted[..., -1] = False  # the most likely token always stays
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, -math.inf)


class MinP:
    """Drop tokens whose probability is below p times the most likely token's probability."""

    def __init__(self, p: float) -> None:
        check_value("--min-p", p, **MIN_P)
        self.p = float(p)

    def __call__(self, history: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=-1)
        threshold = self.p * probs.amax(dim=-1, keepdim=True)
        return logits.masked_fill(probs < threshold, -math.inf)


@dataclass(frozen=True)
class SamplingOptions:
    """How to generate: the sampling rules (None, or the neutral 1.0 / 0.0, leaves a rule out), how
    many tokens and samples, where to stop, the seed, and the user's own processors."""

    temperature: float = option(
        1.0, "softmax temperature; 0 is greedy (argmax)", low=0, rule="0 (greedy) or positive"
    )
    top_k: int | None = option(None, "sample among the k most likely tokens", metavar="K", low=TOP_K["low"])
    top_p: float | None = option(
        None,
        "nucleus sampling: among the most likely tokens whose probabilities sum to p, 0 < p <= 1",
        metavar="P",
        **TOP_P,
    )
    min_p: float | None = option(
        None, "drop tokens less likely than p times the most likely", metavar="P", **MIN_P
    )
    repetition_penalty: float | None = option(
        None, "divide the logits of tokens already present by R (> 1 repeats less)", metavar="R", **PENALTY
    )
    length: int = option(400, "tokens to generate", low=1, high=10**9, metavar="N")
    num_samples: int = option(1, "independent samples, generated as one batch", low=1, high=1024, metavar="K")
    stop: tuple[str, ...] = option((), "end a sample at the first occurrence of this text (repeatable)")
    seed: int | None = seed_option(None, "random seed: the same seed gives the same text")
    speculative: str = option(
        "auto",
        "several tokens per model pass, the same text distribution: lookup drafts what followed the "
        "text's last tokens before, heads drafts with the extra heads of a model trained with --predict; "
        "auto is off until a way measures faster here (reverie.text.speculative)",
        choices=SPECULATIVE,
    )
    processors: tuple[LogitsProcessor, ...] = option(
        (), "your own processors (history, logits) -> logits, applied after the rules above", cli=False
    )

    KIND: ClassVar[str] = "generation"  # in reverie.options.resolve's refusal of an unknown name

    @classmethod
    def of(cls, **options: Any) -> SamplingOptions:
        """Options from keyword arguments (reverie.options.resolve), refusing unknown names and bad
        values in one line."""
        return resolve(cls, options)

    @staticmethod
    def combine(
        values: dict[str, Any], given: dict[str, Any], preset: str | None, resumed: bool
    ) -> dict[str, Any]:
        """One stop string or processor is a tuple of one (reverie.options.resolve calls this)."""
        for name in ("stop", "processors"):
            if name in given:
                value = given[name]
                given[name] = (value,) if isinstance(value, str) or callable(value) else tuple(value)
        return {**values, **given}

    def validate(self) -> None:
        """Every value checked (each rule is built once, so its own check runs too)."""
        self.rules()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def rules(self) -> list[LogitsProcessor]:
        """The processors these options ask for, in Hugging Face's order, without no-ops, then the
        user's own; each refuses an out-of-range argument in one line. Greedy decoding keeps only
        the repetition penalty: the other rules never change the argmax."""
        check(self)  # the types and bounds declared above (each rule checks its own again when built)
        # every rule is built, greedy or not, so that a bad value is refused either way
        penalty = RepetitionPenalty(self.repetition_penalty) if self.repetition_penalty is not None else None
        top_k = TopK(self.top_k) if self.top_k is not None else None
        top_p = TopP(self.top_p) if self.top_p is not None else None
        min_p = MinP(self.min_p) if self.min_p is not None else None
        require(
            all(callable(p) for p in self.processors),
            "processors must be callables (history, logits) -> logits",
        )
        chosen: list[LogitsProcessor] = [penalty] if penalty is not None and penalty.penalty != 1.0 else []
        if not self.greedy:
            if self.temperature != 1.0:
                chosen.append(Temperature(self.temperature))
            if top_k is not None:
                chosen.append(top_k)
            if top_p is not None and top_p.p < 1.0:
                chosen.append(top_p)
            if min_p is not None and min_p.p > 0.0:
                chosen.append(min_p)
        return [*chosen, *self.processors]


# ---- drawing a token --------------------------------------------------------------------------------


def sample_next(
    logits: torch.Tensor,
    history: torch.Tensor,
    processors: Sequence[LogitsProcessor],
    generator: torch.Generator | None,
) -> torch.Tensor:
    """One next token per row of `logits` (B, V): the processors in order, then a seeded draw, or
    the argmax when `generator` is None (greedy).

    The draw happens on the CPU with `generator` (a CPU generator), so a seed gives the same
    tokens on any device.
    """
    logits = logits.float()
    for processor in processors:
        logits = processor(history, logits)
    if generator is None:
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


class EvalMode:
    """Put a model in eval mode for a while, then restore its training flag."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def generate_tokens(
    model: nn.Module, prompt_ids: Sequence[int], options: SamplingOptions
) -> Iterator[torch.Tensor]:
    """`options.length` new tokens after `prompt_ids` (at least one token), each a LongTensor
    (options.num_samples,), one model step per token.

    Arguments are checked now, before the first token is asked for. The prompt is read once, in
    chunks (`model.prefill`: memory for one chunk, however long it is), for one sample; its state is
    then copied to every sample, and `model.stepper` makes each token, all samples as one batch. The
    token history (for the repetition penalty and your processors) grows as tokens are made. The
    model runs in eval mode under inference_mode; its training flag is restored when the iterator
    ends or is closed. (Stop sequences are text: see reverie.text.generator.)
    """
    processors = options.rules()
    vocab_size = model.config.vocab_size
    prompt = torch.as_tensor(list(prompt_ids), dtype=torch.long)
    if len(prompt) == 0:
        raise ReverieError("the prompt has no tokens; give at least one to start from")
    if len(prompt) > MAX_PROMPT_TOKENS:
        raise ReverieError(
            f"the prompt has {len(prompt):,} tokens, more than reverie's limit of {MAX_PROMPT_TOKENS:,}; "
            "give its end only"
        )
    bad = prompt[(prompt < 0) | (prompt >= vocab_size)]
    if bad.numel():
        raise ReverieError(f"prompt ids {bad.tolist()[:5]} are outside the vocabulary of {vocab_size} tokens")
    generator = None if options.greedy else torch.Generator()
    if generator is not None and options.seed is not None:
        generator.manual_seed(options.seed)
    elif generator is not None:
        generator.seed()
    device = next(model.parameters()).device
    return _tokens(model, prompt.to(device), options, processors, generator)


class History:
    """Every sample's tokens so far, prompt included: a buffer that doubles when it is full."""

    def __init__(self, prompt: torch.Tensor, samples: int, room: int) -> None:
        self.buffer = prompt.new_zeros(samples, len(prompt) + room)
        self.buffer[:, : len(prompt)] = prompt
        self.length = len(prompt)

    def tokens(self) -> torch.Tensor:
        """(samples, length) of the tokens so far (a view)."""
        return self.buffer[:, : self.length]

    def append(self, tokens: torch.Tensor) -> None:
        if self.length == self.buffer.shape[1]:
            self.buffer = torch.cat([self.buffer, torch.zeros_like(self.buffer)], dim=1)
        self.buffer[:, self.length] = tokens
        self.length += 1


def _tokens(
    model: nn.Module,
    prompt: torch.Tensor,
    options: SamplingOptions,
    processors: list[LogitsProcessor],
    generator: torch.Generator | None,
) -> Iterator[torch.Tensor]:
    samples = options.num_samples
    with EvalMode(model):
        history = History(prompt, samples, room=min(options.length, HISTORY_ROOM))
        step = None
        for _ in range(options.length):
            with torch.inference_mode():
                if step is None:  # the prompt, once, for one sample; then its state for each
                    logits, state = model.prefill(prompt[None])
                    logits, state = logits.expand(samples, -1), model.repeat_state(state, samples)
                    step = model.stepper(state)
                else:
                    logits = step(history.buffer[:, history.length - 1])
                token = sample_next(logits, history.tokens(), processors, generator)
                history.append(token)
            yield token.cpu().clone()
