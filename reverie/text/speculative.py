"""Speculative decoding with drafts looked up in the text so far, or guessed by the model's extra
heads: several tokens per model pass, and exactly the distribution of plain sampling, for one
stream or a batch of them.

    from reverie.text.speculative import generate_tokens
    options = SamplingOptions.of(temperature=0.7, speculative="lookup", num_samples=32, seed=0)
    for ids in generate_tokens(model, prompt_ids, options):   # as reverie.text.sampling's
        ...

A draft is what followed the last time the text's last LOOKUP_NGRAM tokens occurred in it (the
prompt and what the stream has written; Hugging Face's prompt lookup). One model pass over every
stream's last token and its draft (B streams, padded to the longest) gives the next-token logits
after each token; the processors (temperature, top-k, top-p, min-p, repetition penalty, the
user's) turn each into the distribution p that plain sampling would draw from there, each with its
own stream's history, and a stream's draft tokens are taken in order while a uniform u < p(token)
(speculative sampling with a draft that is certain of its token, exact for any draft made without
a random draw of this pass: Leviathan et al. 2023, Chen et al. 2023). The first refused token is
replaced by a draw from p without it, renormalized; a draft taken whole earns one more token from
the logits after it. So each token is drawn with probability p, as in plain sampling, and each
stream takes its own count; greedy decoding takes a token while it is the argmax, so greedy output
is the same token for token. Each stream's state then moves to its own last token taken: the
transformer keeps each stream's window at its own length (`TransformerVerifier`), the LSTM and GRU
step over the pass's tokens keeping the state after each (`RecurrentVerifier`), the conv model runs
each stream's taken tokens again from the state before the pass (`Verifier`). The first token after
the prompt is drawn before any draft, as plain sampling draws it.

A heads draft (a model trained with `--predict N`, reverie.text.language_model) is the argmax of
each extra head at the last token a stream's state has read: the N - 1 tokens after the token taken
last (which the pass reads first), made without a random draw, so the rule above stays exact.

A stream's draft is at most its draft size long: DRAFT_TOKENS (heads: N - 1) at first, 2 more after
a draft taken whole, 1 less after a refusal, at least 1 (Hugging Face's rule for assistant models),
so that a pass, as wide as its longest draft, reads few tokens that no stream takes. The size
depends on past passes only, so the rule above stays exact.

The streams run until each has made `length` tokens (one that has stops taking part in the passes);
the tokens come out as plain sampling's do, one (B,) tensor a step, a step as soon as every stream
has made it. Stop strings are text, as in plain sampling (reverie.text.generator).

`speculative`: "lookup", "heads", "off", or "auto" (the default), which is off for now: on the
CPUs measured a pass over a draft costs more than the drafted tokens it keeps gain, for one stream
and for 32 (docs/benchmarks.md, "Text: generation speed" and "Batched streams speculating").
"heads" on a model without extra heads is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reverie.errors import require
from reverie.text import sampling
from reverie.text.language_model import LanguageModel, State, map_state, state_tensors
from reverie.text.models import RecurrentLM
from reverie.text.sampling import EvalMode, LogitsProcessor, SamplingOptions
from reverie.text.transformer import TransformerLM, Window

LOOKUP_NGRAM = 3  # tokens of the text's end that a draft's match must repeat
DRAFT_TOKENS = 8  # tokens a draft proposes at most
# the rules that never read the history, and the one that reads it as a set of tokens (so a history
# padded with one of its own tokens gives the same logits): applied to all the pass's rows at once
HISTORY_FREE = (sampling.Temperature, sampling.TopK, sampling.TopP, sampling.MinP)
SET_OF_TOKENS = (sampling.RepetitionPenalty,)


def drafts_of(options: SamplingOptions) -> str:
    """The drafts generation with `options` speculates with: "lookup", "heads" or "off"."""
    if options.speculative in ("auto", "off"):
        return "off"  # auto: no way measured faster than plain sampling yet (the module's doc)
    return options.speculative


@dataclass
class Tally:
    """What speculation did: model passes, the streams they read (a pass over 32 streams reads 32),
    tokens drafted, drafted tokens taken, tokens made (every stream's)."""

    passes: int = 0
    reads: int = 0
    drafted: int = 0
    accepted: int = 0
    tokens: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_pass(self) -> float:
        """Tokens a stream made per pass that read it (the first token, drawn before any pass, counts)."""
        return self.tokens / self.reads if self.reads else 0.0


def generate_tokens(
    model: nn.Module, prompt_ids: Sequence[int], options: SamplingOptions, tally: Tally | None = None
) -> Iterator[torch.Tensor]:
    """reverie.text.sampling.generate_tokens, speculating where `drafts_of` says so: the same
    tokens one step at a time (LongTensor (num_samples,)), from the same distribution; `tally`
    counts the passes."""
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


# ---- drafts ---------------------------------------------------------------------------------------


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

    def copy(self) -> LookupDraft:
        twin = LookupDraft([], self.ngram, self.size)
        twin.tokens, twin._last = list(self.tokens), dict(self._last)
        return twin


class LookupDrafts:
    """Each stream's LookupDraft over the prompt and what that stream has written."""

    def __init__(self, prompt: Sequence[int], streams: int) -> None:
        first = LookupDraft(prompt)
        self.streams = [first] + [first.copy() for _ in range(streams - 1)]

    def extend(self, taken: Sequence[Sequence[int]]) -> None:
        for draft, tokens in zip(self.streams, taken):
            draft.extend(tokens)

    def propose(self, limits: Sequence[int]) -> list[list[int]]:
        return [draft.propose(limit) for draft, limit in zip(self.streams, limits)]


class HeadsDrafts:
    """Drafts from the model's extra heads: for each stream, their argmax at the last token the
    verifier's state has read (`verifier.hidden`), the tokens after the one taken last."""

    def __init__(self, model: LanguageModel, verifier: Verifier) -> None:
        self.model, self.verifier = model, verifier

    def extend(self, taken: Sequence[Sequence[int]]) -> None:
        pass  # the heads read the verifier's hidden layer, which the pass keeps up

    def propose(self, limits: Sequence[int]) -> list[list[int]]:
        heads = max(limits, default=0)
        if heads <= 0:
            return [[] for _ in limits]
        with torch.inference_mode():
            guesses = self.model.ahead_logits(self.verifier.hidden, heads)
        tokens = torch.stack([logits.argmax(dim=-1) for logits in guesses], dim=1).tolist()  # (B, heads)
        return [row[: max(limit, 0)] for row, limit in zip(tokens, limits)]


# ---- the model's state over a pass ------------------------------------------------------------------


class Verifier:
    """B streams' state and one pass over several tokens each: `verify(rows)` reads rows (B, T)
    (each stream's tokens, padded at the end) after the state and returns the next-token logits
    after each (B, T, vocab); `keep(counts)` then moves each stream's state to after its first
    counts[b] tokens of the pass. `hidden` is the last hidden layer (B, H) at the last token each
    stream's state has read (given with the state, then kept up); `room()` the tokens each stream's
    next pass may read.

    This one (the conv model's): the pass's state is that after all T tokens, so a stream that
    keeps fewer runs them again from the state before the pass, the streams keeping the same
    count together: a pass costs one call over (B, T) and one over (streams, count) per count kept
    other than 0 and T."""

    def __init__(self, model: LanguageModel, state: State, hidden: torch.Tensor) -> None:
        self.model, self.state, self.hidden = model, state, hidden
        self._before: State = None
        self._rows = hidden.new_zeros(0, dtype=torch.long)
        self._pass = hidden

    def room(self) -> list[int]:
        return [sys.maxsize] * self.hidden.shape[0]

    def verify(self, rows: torch.Tensor) -> torch.Tensor:
        self._before, self._rows = self.state, rows
        hidden, self.state = self.model.features(rows, self.state)
        self._pass = hidden
        return self.model.logits(hidden)

    def keep(self, counts: Sequence[int]) -> None:
        self._keep_hidden(counts)
        width = self._rows.shape[1]
        if all(count == width for count in counts):
            return
        dim, device = self.model.state_batch_dim, self._rows.device
        state = map_state(self._before, torch.clone)
        for count in sorted(set(counts) - {0}):
            index = torch.tensor([b for b, c in enumerate(counts) if c == count], device=device)
            if count == width:
                source = _select(self.state, index, dim)
            else:
                _, source = self.model.features(self._rows[index, :count], _select(self._before, index, dim))
            for target, part in zip(state_tensors(state), state_tensors(source)):
                target.index_copy_(dim, index, part)
        self.state = state

    def _keep_hidden(self, counts: Sequence[int]) -> None:
        """Each stream's hidden layer at its last token kept (that before the pass for 0)."""
        every = torch.cat([self.hidden[:, None], self._pass], dim=1)  # (B, 1 + T, H)
        counts_tensor = torch.as_tensor(list(counts), device=every.device)
        self.hidden = every[torch.arange(len(counts), device=every.device), counts_tensor]


class RecurrentVerifier(Verifier):
    """The LSTM's and GRU's: a pass runs plain decoding's own one-token step (`model.stepper`, the
    LSTM's fused one) over the T tokens, all streams at once, keeping the state after each; `keep`
    gives each stream the state after its own count. T steps a pass, what plain decoding pays for T
    tokens, and nothing run again. (One nn.LSTM call over the T tokens, then again over those
    kept, cost more on the CPUs measured: oneDNN's per-call cost alone is that of several fused
    steps for one stream, and 32 streams are bound by arithmetic either way.)"""

    model: RecurrentLM

    def __init__(self, model: LanguageModel, state: State, hidden: torch.Tensor) -> None:
        super().__init__(model, state, hidden)
        self.step = model.stepper(state)
        self._states: list[State] = []

    def verify(self, rows: torch.Tensor) -> torch.Tensor:
        self._states, logits = [self.step.state], []
        for tokens in rows.unbind(dim=1):
            logits.append(self.step(tokens))
            self._states.append(self.step.state)
        self._rows = rows
        return torch.stack(logits, dim=1)

    def keep(self, counts: Sequence[int]) -> None:
        every = torch.arange(len(counts), device=self._rows.device)
        after = torch.as_tensor(list(counts), device=self._rows.device)
        # each tensor of the states (layers, B, hidden), stacked by position: stream b's after counts[b]
        picked = iter(
            torch.stack(parts)[after, :, every].transpose(0, 1).contiguous()
            for parts in zip(*(state_tensors(state) for state in self._states))
        )
        self.state = self.step.state = map_state(self._states[0], lambda _: next(picked))
        self.hidden = state_tensors(self.state)[0][-1]  # the top layer's h: the last hidden layer


class TransformerVerifier(Verifier):
    """The transformer's: each stream's window at its own length, `lengths` (B,), in tensors padded to
    the longest (tokens (B, L), every layer's keys and values (B, heads, L, d)). A pass puts
    each stream's tokens at its own positions, attending to its own window only (a mask);
    keeping counts[b] tokens moves the pass's new keys and values of each stream to right after
    its window, in the tensors the pass made (their cat of the caches and the new ones: one copy
    of the caches a pass, as the stepper makes one a token), a view of the longest length kept.
    A window that is full (`context` tokens) is re-read from its last context / 2 tokens before
    the pass reads on, as the stepper does, and `room()` keeps a pass from reading past a full
    window, so that every token sees what it sees in plain decoding."""

    model: TransformerLM
    state: Window

    def __init__(self, model: LanguageModel, state: Window, hidden: torch.Tensor) -> None:
        super().__init__(model, state, hidden)
        self.lengths = torch.full((hidden.shape[0],), state.tokens.shape[1], device=hidden.device)
        self._caches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def room(self) -> list[int]:
        context = self.model.config.context
        return [context - n if n < context else context - context // 2 for n in self.lengths.tolist()]

    def verify(self, rows: torch.Tensor) -> torch.Tensor:
        context = self.model.config.context
        full = (self.lengths >= context).nonzero()[:, 0]
        if len(full):  # as the stepper does: re-read the end
            self._reread(full, context // 2)
        window, lengths, width = self.state, self.lengths, rows.shape[1]
        past = window.tokens.shape[1]
        steps = torch.arange(width, device=rows.device)
        before = torch.arange(past, device=rows.device)[None, None] < lengths[:, None, None]  # (B, 1, L)
        mask = torch.cat(
            [
                before.expand(-1, width, -1),
                torch.ones(width, width, dtype=torch.bool, device=rows.device)
                .tril()
                .expand(len(rows), -1, -1),
            ],
            dim=2,
        )
        # a padded row may run past the last position (learned positions stop there); it is never kept
        positions = (lengths[:, None] + steps).clamp(max=context - 1)
        hidden, self._caches = self.model._run(rows, positions, window.caches, mask[:, None])
        self._rows, self._pass = rows, hidden
        return self.model.logits(hidden)

    def _reread(self, streams: torch.Tensor, keep: int) -> None:
        """Streams `streams`' windows, each full, re-read from their last `keep` tokens."""
        tokens = self.state.tokens.clone()
        kept = tokens[streams, -keep:]
        _, caches = self.model._run(kept, 0)
        tokens[streams, :keep] = kept
        merged = []
        for (k, v), (new_k, new_v) in zip(self.state.caches, caches):
            k, v = k.clone(), v.clone()
            k[streams, :, :keep], v[streams, :, :keep] = new_k, new_v
            merged.append((k, v))
        self.state = Window(tokens, merged)
        self.lengths = self.lengths.index_fill(0, streams, keep)

    def keep(self, counts: Sequence[int]) -> None:
        self._keep_hidden(counts)
        past, width = self.state.tokens.shape[1], self._rows.shape[1]
        kept = self.lengths + torch.as_tensor(list(counts), device=self.lengths.device)
        end = int(kept.max())
        # each stream's pass tokens moved to right after its window (past its count: never read)
        slots = self.lengths[:, None] + torch.arange(width, device=kept.device)
        tokens = torch.cat([self.state.tokens, self._rows], dim=1).scatter_(1, slots, self._rows)
        caches = []
        for k, v in self._caches:  # (B, heads, past + width, d): the pass's own tensors
            spread = slots[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            k.scatter_(2, spread, k[:, :, past:].clone())
            v.scatter_(2, spread, v[:, :, past:].clone())
            caches.append((k[:, :, :end], v[:, :, :end]))
        self.state, self.lengths = Window(tokens[:, :end], caches), kept


def _select(state: State, streams: torch.Tensor, dim: int) -> State:
    """The state of streams `streams` only (their index along the state's batch dimension `dim`)."""
    return map_state(state, lambda t: t.index_select(dim, streams))


def _verifier(model: LanguageModel, state: State, hidden: torch.Tensor) -> Verifier:
    """The verifier of B streams at `state`, `hidden` (B, H) their last hidden layer."""
    kind = (
        TransformerVerifier
        if isinstance(model, TransformerLM)
        else RecurrentVerifier
        if isinstance(model, RecurrentLM)
        else Verifier
    )
    return kind(model, state, hidden)


# ---- generation -----------------------------------------------------------------------------------


class Histories:
    """Every stream's tokens so far, prompt included, each of its own length: a buffer (B, room)
    that doubles when a pass could overflow it, and `lengths` (B,)."""

    def __init__(self, prompt: torch.Tensor, streams: int, room: int) -> None:
        self.buffer = prompt.new_zeros(streams, len(prompt) + room)
        self.buffer[:, : len(prompt)] = prompt
        self.lengths = torch.full((streams,), len(prompt), device=prompt.device)
        self.pad = prompt[0]  # a token in every history

    def write(self, tokens: torch.Tensor, at: torch.Tensor) -> None:
        """tokens (B, T) written at each stream's position at (B,) on (no length changes)."""
        end = int(at.max()) + tokens.shape[1]
        while end > self.buffer.shape[1]:
            self.buffer = torch.cat([self.buffer, torch.zeros_like(self.buffer)], dim=1)
        positions = at[:, None] + torch.arange(tokens.shape[1], device=at.device)
        self.buffer.scatter_(1, positions, tokens)

    def extend(self, taken: list[list[int]]) -> None:
        """Each stream's history grows by its tokens `taken`."""
        width = max(len(tokens) for tokens in taken)
        rows = [tokens + [0] * (width - len(tokens)) for tokens in taken]
        self.write(torch.tensor(rows, device=self.buffer.device), self.lengths)
        self.lengths += torch.tensor([len(tokens) for tokens in taken], device=self.buffer.device)

    def padded(self, streams: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The first lengths[j] tokens of stream streams[j]'s buffer, each row padded with `pad`."""
        rows = self.buffer[streams, : int(lengths.max())]
        past = torch.arange(rows.shape[1], device=rows.device)[None] >= lengths[:, None]
        return rows.masked_fill(past, self.pad)


def _speculate(
    model: Any,
    prompt: list[int],
    options: SamplingOptions,
    processors: list[LogitsProcessor],
    generator: torch.Generator | None,
    tally: Tally,
) -> Iterator[torch.Tensor]:
    device = next(model.parameters()).device
    count, length = options.num_samples, options.length
    with EvalMode(model):
        ids = torch.as_tensor(prompt, device=device)
        histories = Histories(ids, count, room=min(length, sampling.HISTORY_ROOM) + DRAFT_TOKENS + 1)
        with torch.inference_mode():  # the prompt, once, for one stream; then its state for each
            hidden, state = model.read(ids[None])
            history = histories.buffer[:, : len(prompt)]
            logits = model.logits(hidden).expand(count, -1)  # one stream's, for each
            first = sampling.sample_next(logits, history, processors, generator)
        verifier = _verifier(model, model.repeat_state(state, count), hidden.expand(count, -1))
        heads = drafts_of(options) == "heads"
        drafts = HeadsDrafts(model, verifier) if heads else LookupDrafts(prompt, count)
        made = [[token] for token in first.tolist()]
        histories.extend(made)
        drafts.extend(made)
        # each stream's draft size (the module's doc): it depends on past passes only, so the
        # acceptance rule stays exact
        most = model.config.predict - 1 if heads else DRAFT_TOKENS
        sizes = [most] * count
        tally.tokens += count
        yield first.cpu().clone()
        done = 1  # the steps yielded
        while done < length:
            active = [len(tokens) < length for tokens in made]
            # a pass reads the last token taken and the draft, and makes at least one token
            rooms = zip(made, verifier.room(), sizes)
            limits = [min(length - len(tokens) - 1, room - 1, size) for tokens, room, size in rooms]
            draft = drafts.propose([limit if on else 0 for limit, on in zip(limits, active)])
            rows = [[tokens[-1], *extra] if on else [] for tokens, extra, on in zip(made, draft, active)]
            width = max(len(row) for row in rows)
            padded = torch.tensor([row + [0] * (width - len(row)) for row in rows], device=device)
            with torch.inference_mode():
                logits = verifier.verify(padded)
                taken = _accept(logits, padded, draft, active, histories, processors, generator)
                verifier.keep([len(tokens) for tokens in taken])  # the new last token stays unread
            tally.passes += 1
            tally.reads += sum(active)
            tally.drafted += sum(len(extra) for extra in draft)
            tally.accepted += sum(max(len(tokens) - 1, 0) for tokens in taken)
            tally.tokens += sum(len(tokens) for tokens in taken)
            for b, (tokens, new, extra) in enumerate(zip(made, taken, draft)):
                tokens.extend(new)
                if extra:
                    sizes[b] = min(sizes[b] + 2, most) if len(new) > len(extra) else max(sizes[b] - 1, 1)
            drafts.extend(taken)
            ready = min(len(tokens) for tokens in made)
            for step in range(done, ready):
                yield torch.tensor([tokens[step] for tokens in made])
            done = ready


def _accept(
    logits: torch.Tensor,
    rows: torch.Tensor,
    draft: list[list[int]],
    active: list[bool],
    histories: Histories,
    processors: list[LogitsProcessor],
    generator: torch.Generator | None,
) -> list[list[int]]:
    """The tokens each stream takes from one pass: logits (B, T, vocab) after each token of rows
    (B, T), a stream's last token taken and then its draft; each draft token is taken with the
    probability plain sampling gives it there (greedy: while it is the argmax), the first refused
    one replaced by a draw without it, and a whole draft followed by one drawn token ([] for a
    stream not `active`). The histories grow by what is taken."""
    device = logits.device
    # the rows that count: each active stream's, up to the one after its draft
    flat = [(b, i) for b, (extra, on) in enumerate(zip(draft, active)) if on for i in range(len(extra) + 1)]
    streams = torch.tensor([b for b, _ in flat], device=device)
    steps = torch.tensor([i for _, i in flat], device=device)
    histories.write(rows[:, 1:], histories.lengths)  # each row's history: the stream's, then its draft
    lengths = histories.lengths[streams] + steps
    processed = _processed(logits[streams, steps].float(), histories, streams, lengths, processors)
    proposed = torch.tensor([draft[b][i] if i < len(draft[b]) else -1 for b, i in flat], device=device)
    if generator is None:
        taken = (processed.argmax(dim=-1) == proposed).tolist()
    else:
        probability = processed.softmax(dim=-1).gather(1, proposed.clamp(min=0)[:, None])[:, 0].cpu()
        uniform = torch.rand(len(flat), generator=generator)
        taken = ((uniform < probability) & (proposed >= 0).cpu()).tolist()
    # each stream takes its drafted tokens up to the first refused: the row it draws its next token from
    result: list[list[int]] = []
    last_rows: list[int] = []
    row = 0
    for extra, on in zip(draft, active):
        count = 0
        while on and taken[row + count]:  # the row after the draft takes nothing
            count += 1
        result.append(extra[:count])
        if on:
            last_rows.append(row + count)
            row += len(extra) + 1
    at = torch.tensor(last_rows, device=device)
    final = _left_out(processed[at], proposed[at])  # -1 where the whole draft was taken
    following = iter(
        (final.argmax(dim=-1) if generator is None else sampling.draw(final, generator)).tolist()
    )
    for tokens, on in zip(result, active):
        if on:
            tokens.append(next(following))
    histories.extend(result)
    return result


def _left_out(logits: torch.Tensor, refused: torch.Tensor) -> torch.Tensor:
    """Each row's distribution with its refused draft token (refused[j], -1 for none) left out:
    what a stream draws from after a refusal (renormalized by the draw)."""
    rows = (refused >= 0).nonzero()[:, 0]
    if len(rows) == 0:
        return logits
    logits = logits.clone()
    logits[rows, refused[rows]] = -torch.inf
    return logits


def _processed(
    logits: torch.Tensor,
    histories: Histories,
    streams: torch.Tensor,
    lengths: torch.Tensor,
    processors: list[LogitsProcessor],
) -> torch.Tensor:
    """The processors on logits (N, vocab), row j after the first lengths[j] tokens of stream
    streams[j]'s history: the rules that read no history, or read it as a set, on all rows at
    once (over histories padded with a token each has); the user's processors row by row, each
    with its exact history (1, lengths[j])."""
    padded = None
    for processor in processors:
        if isinstance(processor, HISTORY_FREE):
            logits = processor(logits.new_zeros(len(logits), 0, dtype=torch.long), logits)
        elif isinstance(processor, SET_OF_TOKENS):
            padded = histories.padded(streams, lengths) if padded is None else padded
            logits = processor(padded, logits)
        else:
            rows = [
                processor(histories.buffer[b : b + 1, :n], logits[j : j + 1])
                for j, (b, n) in enumerate(zip(streams.tolist(), lengths.tolist()))
            ]
            logits = torch.cat(rows)
    return logits
