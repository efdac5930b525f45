"""Speculative decoding with drafts looked up in the text so far, or guessed by the model's extra
heads: several tokens per model pass, and exactly the distribution of plain sampling.

    from reverie.text.speculative import generate_tokens
    options = SamplingOptions.of(temperature=0.7, speculative="lookup", seed=0)
    for ids in generate_tokens(model, prompt_ids, options):   # as reverie.text.sampling's
        ...

A draft is what followed the last time the text's last LOOKUP_NGRAM tokens occurred in it (the
prompt and what has been written; Hugging Face's prompt lookup), up to DRAFT_TOKENS tokens. One
model pass over the draft gives the next-token logits after each of its tokens; the processors
(temperature, top-k, top-p, min-p, repetition penalty, the user's) turn each into the distribution
p that plain sampling would draw from there, and the draft's tokens are taken in order while a
uniform u < p(token) (speculative sampling with a draft that is certain of its token, exact for any
draft made without a random draw: Leviathan et al. 2023, Chen et al. 2023). The first refused token
is replaced by a draw from p without it, renormalized; a draft taken whole earns one more token
from the logits after it. So each token is drawn with probability p, as in plain sampling; greedy
decoding takes a token while it is the argmax, so greedy output is the same token for token (a
transformer's pass re-reads its full window where its stepper would). The model's state then moves
to the last token taken: the transformer keeps that prefix of its key/value cache, the recurrent and conv
models run the taken tokens again from the state before the pass (when not all were taken).

A heads draft (a model trained with `--predict N`, reverie.text.language_model) is the argmax of
each extra head at the last token the state has read: the N - 1 tokens after the token taken last
(which the pass reads first), made without a random draw, so the rule above stays exact. The first
token after the prompt is drawn before any draft (no token is pending there).

`speculative`: "lookup", "heads", "off", or "auto" (the default), which is off for now: on the
CPUs measured a pass over a draft costs more than the drafted tokens it keeps gain (one transformer
stream: lookup 0.88x, heads 0.86x plain's speed; docs/benchmarks.md, "Text: generation speed").
"heads" on a model without extra heads is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reverie.errors import require
from reverie.text import sampling
from reverie.text.language_model import LanguageModel, State
from reverie.text.sampling import EvalMode, LogitsProcessor, SamplingOptions
from reverie.text.transformer import TransformerLM, Window

LOOKUP_NGRAM = 3  # tokens of the text's end that a draft's match must repeat
DRAFT_TOKENS = 8  # tokens a draft proposes at most


def drafts_of(options: SamplingOptions) -> str:
    """The drafts generation with `options` speculates with: "lookup", "heads" or "off"."""
    if options.speculative in ("auto", "off") or options.num_samples != 1:
        return "off"  # auto: no way measured faster than plain sampling yet (the module's doc)
    return options.speculative


@dataclass
class Tally:
    """What speculation did: model passes, tokens drafted, drafted tokens taken, tokens made."""

    passes: int = 0
    drafted: int = 0
    accepted: int = 0
    tokens: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_pass(self) -> float:
        return self.tokens / self.passes if self.passes else 0.0


def generate_tokens(
    model: nn.Module, prompt_ids: Sequence[int], options: SamplingOptions, tally: Tally | None = None
) -> Iterator[torch.Tensor]:
    """reverie.text.sampling.generate_tokens, speculating where `drafts_of` says so: the same
    tokens one at a time (LongTensor (1,)), from the same distribution; `tally` counts the passes."""
    require(
        options.speculative != "heads" or model.config.predict > 1,
        "--speculative heads drafts with a model's extra heads, and this one has none; train it with "
        "--predict N (N >= 2), or use --speculative lookup",
    )
    plain = sampling.generate_tokens(model, prompt_ids, options)  # checks everything now
    if drafts_of(options) == "off":
        return plain
    plain.close()
    generator = None if options.greedy else torch.Generator()
    if generator is not None and options.seed is not None:
        generator.manual_seed(options.seed)
    elif generator is not None:
        generator.seed()
    return _speculate(model, list(prompt_ids), options, options.rules(), generator, tally or Tally())


class LookupDraft:
    """Drafts from the text itself: where the last `ngram` tokens occurred before, the tokens that
    followed them then (the latest occurrence)."""

    def __init__(self, tokens: Sequence[int], ngram: int = LOOKUP_NGRAM, size: int = DRAFT_TOKENS) -> None:
        self.tokens: list[int] = []
        self.ngram, self.size = ngram, size
        self._last: dict[tuple[int, ...], int] = {}  # n-gram -> the position after its latest occurrence
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens)
            if end > self.ngram:  # the n-gram before the newest token is now followed by it
                self._last[tuple(self.tokens[end - self.ngram - 1 : end - 1])] = end - 1

    def propose(self, limit: int) -> list[int]:
        """At most min(size, limit) tokens that followed the text's last n-gram before ([] if it
        never occurred before)."""
        if len(self.tokens) < self.ngram or limit <= 0:
            return []
        start = self._last.get(tuple(self.tokens[-self.ngram :]))
        if start is None:
            return []
        return self.tokens[start : start + min(self.size, limit)]


class HeadsDraft:
    """Drafts from the model's extra heads: their argmax at the last token the verifier's state has
    read (`verifier.hidden`), the tokens after the one taken last."""

    def __init__(self, model: LanguageModel, verifier: Verifier) -> None:
        self.model, self.verifier = model, verifier
        self.pending = False  # whether a token was taken (none before the first)

    def extend(self, tokens: Sequence[int]) -> None:
        self.pending = self.pending or bool(tokens)

    def propose(self, limit: int) -> list[int]:
        if not self.pending or limit <= 0:
            return []
        with torch.inference_mode():
            guesses = self.model.ahead_logits(self.verifier.hidden, limit)
        return [int(logits.argmax()) for logits in guesses]


class Verifier:
    """A model's state and one pass over several tokens: `verify(tokens)` reads tokens (1, T) after
    the state and returns the next-token logits after each (T, vocab), moving the state after all
    of them; `keep(m)` then moves it back to after the first m of them. `hidden` is the last hidden
    layer (H,) at the last token the state has read (given with the state, then kept up)."""

    def __init__(self, model: LanguageModel, state: State, hidden: torch.Tensor | None = None) -> None:
        self.model, self.state, self.hidden = model, state, hidden
        self._before: State = None
        self._read: torch.Tensor | None = None

    def verify(self, tokens: torch.Tensor) -> torch.Tensor:
        self._before, self._read = self.state, tokens
        hidden, self.state = self.model.features(tokens, self.state)
        self._passed(hidden[0])
        return self.model.logits(hidden[0])

    def _passed(self, hidden: torch.Tensor) -> None:
        """Keep the pass's hidden layer (T, H) for `keep`; `hidden` moves to its last token."""
        self._hidden_before, self._pass, self.hidden = self.hidden, hidden, hidden[-1]

    def _kept(self, count: int) -> None:
        self.hidden = self._pass[count - 1] if count else self._hidden_before

    def keep(self, count: int) -> None:
        assert self._read is not None
        self._kept(count)
        if count == self._read.shape[1]:
            return
        self.state = self._before
        if count:
            _, self.state = self.model.features(self._read[:, :count], self._before)


class TransformerVerifier(Verifier):
    """The transformer's: the pass extends the key/value cache, and keeping m tokens cuts it. A
    window that fills up is re-read from its last context / 2 tokens at the token where the stepper
    re-reads it (so the pass is then two passes), so that every token sees what it sees in plain
    decoding."""

    model: TransformerLM
    state: Window

    def verify(self, tokens: torch.Tensor) -> torch.Tensor:
        context, length = self.model.config.context, tokens.shape[1]
        window, hiddens, offset = self.state, [], 0
        self._before, self._parts = window, []  # (offset in tokens, the window's start, the window after)
        while offset < length:
            if window.tokens.shape[1] >= context:  # as the stepper does: re-read the end
                kept = window.tokens[:, -(context // 2) :]
                window = Window(kept, self.model._run(kept, 0)[1])
            start = window.tokens.shape[1]
            part = tokens[:, offset : offset + context - start]
            hidden, caches = self.model._run(part, start, window.caches)
            window = Window(torch.cat([window.tokens, part], dim=1), caches)
            self._parts.append((offset, start, window))
            hiddens.append(hidden[0])
            offset += part.shape[1]
        self.state = window
        hidden = torch.cat(hiddens)
        self._passed(hidden)
        return self.model.logits(hidden)

    def keep(self, count: int) -> None:
        self._kept(count)
        if count == 0:
            self.state = self._before
            return
        offset, start, window = next(part for part in reversed(self._parts) if part[0] < count)
        end = start + count - offset
        self.state = Window(
            window.tokens[:, :end], [(k[:, :, :end], v[:, :, :end]) for k, v in window.caches]
        )


def _verifier(model: LanguageModel, state: State, hidden: torch.Tensor | None = None) -> Verifier:
    kind = TransformerVerifier if isinstance(model, TransformerLM) else Verifier
    return kind(model, state, hidden)


def _speculate(
    model: Any,
    prompt: list[int],
    options: SamplingOptions,
    processors: list[LogitsProcessor],
    generator: torch.Generator | None,
    tally: Tally,
) -> Iterator[torch.Tensor]:
    device = next(model.parameters()).device
    with EvalMode(model):
        history = sampling.History(torch.as_tensor(prompt, device=device), 1, room=min(options.length, 4096))
        with torch.inference_mode():
            hidden, state = model.read(torch.as_tensor([prompt], device=device))
            known = model.logits(hidden)
        verifier = _verifier(model, state, hidden[0])
        drafts = HeadsDraft(model, verifier) if drafts_of(options) == "heads" else LookupDraft(prompt)
        pending: list[int] = []  # the last token taken, which the state has not read yet
        made = 0
        while made < options.length:
            draft = drafts.propose(options.length - made - 1)
            with torch.inference_mode():
                if pending or draft:
                    read = verifier.verify(torch.as_tensor([pending + draft], device=device))
                    # the logits before each draft token, and after the last
                    after = read if pending else torch.cat([known, read])
                else:
                    after = known
                taken = _accept(after, draft, history, processors, generator)
                if pending or draft:
                    verifier.keep(len(pending) + len(taken) - 1)  # the new last token stays unread
                    tally.passes += 1
            tally.drafted += len(draft)
            tally.accepted += len(taken) - 1 if len(taken) <= len(draft) else len(draft)
            tally.tokens += len(taken)
            pending = taken[-1:]
            drafts.extend(taken)
            for token in taken:
                made += 1
                yield torch.tensor([token])


def _accept(
    after: torch.Tensor,
    draft: list[int],
    history: sampling.History,
    processors: list[LogitsProcessor],
    generator: torch.Generator | None,
) -> list[int]:
    """The tokens taken from one pass: `after` (1 + len(draft), vocab) holds the logits before each
    draft token and after the last; each draft token is taken with the probability plain sampling
    gives it there (greedy: while it is the argmax), the first refused one replaced by a draw
    without it, and a whole draft followed by one drawn token. The history grows by what is taken."""
    taken: list[int] = []
    for index in range(len(draft) + 1):
        logits = after[index : index + 1].float()
        for processor in processors:
            logits = processor(history.tokens(), logits)
        proposed = draft[index] if index < len(draft) else None
        if generator is None:
            token = int(logits.argmax(dim=-1))
        elif proposed is not None:
            probability = logits.softmax(dim=-1)[0, proposed].item()
            if torch.rand(1, generator=generator).item() < probability:
                token = proposed
            else:
                logits = logits.clone()
                logits[0, proposed] = -torch.inf
                token = int(sampling.draw(logits, generator))
        else:
            token = int(sampling.draw(logits, generator))
        taken.append(token)
        history.append(torch.tensor([token], device=history.buffer.device))
        if token != proposed:
            break
    return taken
