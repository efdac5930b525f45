"""Speculative decoding with lookup drafts (reverie.text.speculative): greedy output identical to
plain decoding for every model kind, one stream or a batch, and with streams taking different counts
of their drafts in one pass; the sampled distribution of the next tokens equal to plain sampling's by
a chi-square test with the processors on, for lookup and heads drafts, one stream and a batch of
streams (and a wrong acceptance rule caught by the same test); and each stream's state after a pass
the state plain steps reach over the tokens it kept. Heads drafts on trained models: test_predict.py."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch

from reverie.text import speculative
from reverie.text.language_model import ModelConfig, state_tensors
from reverie.text.models import build_model
from reverie.text.sampling import SamplingOptions, generate_tokens
from reverie.text.speculative import LookupDraft, drafts_of

VOCAB = 12
KINDS = ("lstm", "gru", "conv", "transformer")
PROMPT = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3]  # repeats itself: lookup finds drafts at once


def tiny(
    kind: str, seed: int = 0, vocab: int = VOCAB, context: int = 64, predict: int = 1
) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = ModelConfig(
        kind=kind,
        vocab_size=vocab,
        embed=8,
        hidden=16,
        layers=2,
        heads=2,
        context=context,
        predict=predict,
        dropout=0.0,
    )
    model = build_model(config).eval()
    with torch.no_grad():  # heads of their own (they start as copies of the first: zero)
        for layer in model.ahead:
            torch.nn.init.normal_(layer.weight, std=0.5)
    return model


def steps_of(tokens) -> list[list[int]]:
    """A token iterator's steps, each a list of one token per stream."""
    return [step.tolist() for step in tokens]


def generate_tokens_spec(model, prompt, **options):
    return speculative.generate_tokens(model, prompt, SamplingOptions.of(**options))


def test_a_draft_is_what_followed_the_last_ngram_the_last_time():
    draft = LookupDraft([7, 1, 2, 3, 4, 9, 1, 2, 3], ngram=3, size=4)
    assert draft.propose(100) == [4, 9, 1, 2]  # after the earlier 1 2 3
    assert draft.propose(2) == [4, 9]
    draft.extend([5, 1, 2, 3])  # 1 2 3 now occurred last before "5"
    assert draft.propose(100) == [5, 1, 2, 3]
    assert LookupDraft([1, 2, 3, 4], ngram=3).propose(10) == []  # 2 3 4 never occurred before


def count_passes(monkeypatch) -> Counter:
    """Counts the verifiers' passes, and records the counts each keeps (under "kept": a list)."""
    passes: Counter = Counter()
    for name in ("Verifier", "RecurrentVerifier", "TransformerVerifier"):
        kind = getattr(speculative, name)

        def counted(self, tokens, verify=kind.verify):
            passes["passes"] += 1
            return verify(self, tokens)

        def kept(self, counts, keep=kind.keep):
            passes.setdefault("kept", []).append(list(counts))
            return keep(self, counts)

        monkeypatch.setattr(kind, "verify", counted)
        monkeypatch.setattr(kind, "keep", kept)
    return passes


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streams", [1, 3])
def test_greedy_speculative_output_is_plain_greedy_token_for_token(kind, streams, monkeypatch):
    """For lookup drafts, and heads drafts from random extra heads (the kinds that have them)."""
    model = tiny(kind, context=24, predict=1 if kind == "conv" else 3)  # a short context: windows re-read
    passes = count_passes(monkeypatch)
    for drafts, extra in itertools.product(("lookup", "heads"), ({}, {"repetition_penalty": 1.3})):
        if drafts == "heads" and kind == "conv":
            continue
        options = {"temperature": 0, "length": 150, "num_samples": streams, **extra}
        plain = steps_of(generate_tokens(model, PROMPT, SamplingOptions.of(**options)))
        passes.clear()
        assert steps_of(generate_tokens_spec(model, PROMPT, speculative=drafts, **options)) == plain
        assert passes["passes"] < 150  # several tokens per pass


class Oracle:
    """Drafts that are right for a while, then wrong: stream b's draft in its p-th pass is the
    text's continuation `truth` with its ((b + p) % 5)-th token changed, so that in greedy
    decoding stream b takes (b + p) % 5 of them (all, where the draft is shorter) and the streams
    of one pass take different counts."""

    def __init__(self, truth: list[int], streams: int) -> None:
        self.truth, self.made = truth, [0] * streams
        self.passes = [-1] * streams  # the first extend: the first token, drawn before any pass

    def extend(self, taken) -> None:
        for b, tokens in enumerate(taken):
            self.made[b] += len(tokens)
            self.passes[b] += bool(tokens)

    def propose(self, limits) -> list[list[int]]:
        drafts = []
        for b, limit in enumerate(limits):
            draft = list(self.truth[self.made[b] : self.made[b] + min(limit, 6)])
            wrong = (b + self.passes[b]) % 5
            if wrong < len(draft):
                draft[wrong] = (draft[wrong] + 1) % VOCAB
            drafts.append(draft)
        return drafts


@pytest.mark.parametrize("kind", KINDS)
def test_streams_taking_different_counts_in_one_pass_each_go_on_as_plain_greedy(kind, monkeypatch):
    """Five streams, each refusing its draft at its own token in every pass, go on from the state
    after the tokens each took (past the transformer's short context, where each stream's window is
    re-read at its own pass): every stream's text is plain greedy's, token for token."""
    model = tiny(kind, context=24)
    options = {"temperature": 0, "length": 120, "num_samples": 5}
    plain = steps_of(generate_tokens(model, PROMPT, SamplingOptions.of(**options)))
    truth = [step[0] for step in plain]
    monkeypatch.setattr(speculative, "LookupDrafts", lambda prompt, streams: Oracle(truth, streams))
    passes, tally = count_passes(monkeypatch), speculative.Tally()
    options = SamplingOptions.of(speculative="lookup", **options)
    assert steps_of(speculative.generate_tokens(model, PROMPT, options, tally)) == plain
    first = passes["kept"][0]  # pass 1 (after the first token): stream b takes b % 5 drafted tokens
    assert first == [1 + b for b in range(5)]  # its last token taken before, then those
    assert all(len(set(counts)) >= 3 for counts in passes["kept"][:10])
    assert tally.accepted < tally.drafted and tally.tokens_per_pass > 2


def test_auto_does_not_speculate_and_a_named_way_does_for_one_stream_or_several():
    options = SamplingOptions.of()
    assert options.speculative == "auto"  # off: no way measured faster than plain sampling yet
    assert drafts_of(options) == "off"  # for every model kind: the choice depends on the options only
    assert drafts_of(SamplingOptions.of(speculative="lookup")) == "lookup"
    assert drafts_of(SamplingOptions.of(speculative="heads")) == "heads"
    assert drafts_of(SamplingOptions.of(speculative="lookup", num_samples=32)) == "lookup"
    assert drafts_of(SamplingOptions.of(num_samples=32)) == "off"
    assert drafts_of(SamplingOptions.of(speculative="off")) == "off"


@pytest.mark.parametrize("kind", KINDS)
def test_after_a_pass_each_stream_s_state_is_plain_steps_over_the_tokens_it_kept(kind):
    """Four streams read different tokens in one pass and keep 0, 2, 4 and 5 of them; each then reads
    one more token: its logits are those plain steps give over the prompt, what it kept and that
    token, and the LSTM's, GRU's and conv model's state is that of a plain run over the same text.
    With a transformer's context of 18, the 13-token prompt's window is full for the stream that
    kept 5: the next pass re-reads it first, as the stepper does."""
    model = tiny(kind, context=18)
    rows = torch.tensor([[4, 5, 6, 7, 8], [8, 7, 6, 5, 4], [1, 1, 2, 2, 3], [9, 0, 9, 0, 9]])
    kept = [0, 2, 4, 5]
    with torch.inference_mode():
        hidden, state = model.read(torch.tensor([PROMPT]))
        verifier = speculative._verifier(model, model.repeat_state(state, 4), hidden.expand(4, -1))
        if kind == "transformer":
            assert verifier.room() == [5] * 4  # tokens each window takes before it is full
        logits = verifier.verify(rows)
        verifier.keep(kept)
        for b, count in enumerate(kept):  # the hidden layer the heads draft from: at the last token kept
            want = logits[b, count - 1] if count else model.logits(hidden[0])
            torch.testing.assert_close(model.logits(verifier.hidden[b]), want)
        after_pass = verifier.verify(torch.tensor([[9]] * 4))[:, 0]
        verifier.keep([1] * 4)
        for b, count in enumerate(kept):
            text = [*rows[b, :count].tolist(), 9]
            step = model.stepper(state)
            for token in text:
                after_steps = step(torch.tensor([token]))[0]
            torch.testing.assert_close(after_pass[b], after_steps, atol=1e-5, rtol=1e-4)
            if kind != "transformer":
                _, plain = model.features(torch.tensor([PROMPT + text]))
                dim = model.state_batch_dim
                for ours, theirs in zip(state_tensors(verifier.state), state_tensors(plain)):
                    torch.testing.assert_close(
                        ours.select(dim, b), theirs.select(dim, 0), atol=1e-5, rtol=1e-4
                    )
    if kind == "transformer":
        assert verifier.lengths.tolist() == [14, 16, 18, 10]  # 18 full: re-read from its last 9


# ---- the distribution --------------------------------------------------------------------------

SMALL_VOCAB = 4
DRAWS = 3000
NEXT = 3
RULES = {"temperature": 0.8, "top_k": 3, "repetition_penalty": 1.3, "min_p": 0.05}
SHORT_PROMPT = [0, 1, 2, 0, 1, 2, 0, 1]


def exact_distribution(model, prompt: list[int], yours=()) -> dict[tuple[int, ...], float]:
    """The probability of each sequence of the next NEXT tokens under plain sampling with RULES
    (and your processors `yours`), by enumerating them all."""
    processors = SamplingOptions.of(**RULES, processors=yours).rules()
    probabilities = {}
    with torch.inference_mode():
        for sequence in itertools.product(range(SMALL_VOCAB), repeat=NEXT):
            total, history = 1.0, list(prompt)
            for token in sequence:
                logits = model(torch.tensor([history]))[0][:, -1].float()
                for processor in processors:
                    logits = processor(torch.tensor([history]), logits)
                total *= float(logits.softmax(-1)[0, token])
                history.append(token)
            probabilities[sequence] = total
    return probabilities


def chi_square_p_value(counts: Counter, expected: dict[tuple[int, ...], float], draws: int) -> float:
    """Pearson's test of `counts` against `expected` probabilities, bins under 5 expected draws merged."""
    observed, predicted, rest_observed, rest_predicted = [], [], 0, 0.0
    for sequence, probability in expected.items():
        if probability * draws >= 5:
            observed.append(counts[sequence])
            predicted.append(probability * draws)
        else:
            rest_observed += counts[sequence]
            rest_predicted += probability * draws
    if rest_predicted > 0:
        observed.append(rest_observed)
        predicted.append(rest_predicted)
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed, predicted))
    freedom = len(observed) - 1
    return float(torch.special.gammaincc(torch.tensor(freedom / 2), torch.tensor(statistic / 2)))


def speculative_counts(model, drafts: str, streams: int, processors=()) -> Counter:
    """How often each sequence of the next NEXT tokens came, over DRAWS streams: one at a time with
    seeds 0, 1, ..., or `streams` at a time."""
    counts = Counter()
    for seed in range(DRAWS // streams):
        options = {**RULES, "length": NEXT, "seed": seed, "speculative": drafts, "num_samples": streams}
        if processors:
            options["processors"] = processors
        for sequence in zip(*steps_of(generate_tokens_spec(model, SHORT_PROMPT, **options))):
            counts[sequence] += 1
    return counts


def wrong_left_out(logits, refused):
    """A wrong rule: a refused draft token is replaced by a draw from the whole distribution, which
    may give the refused token again (it should be left out)."""
    return logits


@pytest.fixture(scope="module", params=["lookup", "heads"])
def drafts(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def small_model(drafts):
    """For lookup, a model of one head; for heads, of two extra heads (the heads' drafts of the
    third token are taken about half the time)."""
    model = tiny("transformer", seed=3, vocab=SMALL_VOCAB, predict=3 if drafts == "heads" else 1)
    with torch.no_grad():  # sharper than random: a draft is taken often, refused sometimes
        for parameter in model.parameters():
            parameter.mul_(4)
    return model


@pytest.fixture(scope="module")
def expected(small_model):
    return exact_distribution(small_model, SHORT_PROMPT)


def test_speculative_sampling_draws_the_next_tokens_from_plain_sampling_s_distribution(
    small_model, drafts, expected
):
    assert math.isclose(sum(expected.values()), 1.0, rel_tol=1e-4)
    plain = Counter()
    for seed in range(3):  # plain sampling, as batches of 1,000 streams
        options = SamplingOptions.of(**RULES, length=NEXT, num_samples=DRAWS // 3, seed=seed)
        for sequence in zip(*steps_of(generate_tokens(small_model, SHORT_PROMPT, options))):
            plain[tuple(sequence)] += 1
    assert chi_square_p_value(plain, expected, DRAWS) > 0.001  # the reference itself fits
    assert chi_square_p_value(speculative_counts(small_model, drafts, 1), expected, DRAWS) > 0.001


def test_the_same_test_catches_a_wrong_acceptance_rule(small_model, drafts, expected, monkeypatch):
    monkeypatch.setattr(speculative, "_left_out", wrong_left_out)
    assert chi_square_p_value(speculative_counts(small_model, drafts, 1), expected, DRAWS) < 1e-6


def penalize_repeats(history: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """A user's processor (applied row by row with each row's exact history): the last token less likely."""
    return logits.scatter_add(1, history[:, -1:], torch.full_like(logits[:, :1], -0.5))


@pytest.mark.parametrize("processors", [(), (penalize_repeats,)], ids=["rules", "rules-and-yours"])
def test_a_batch_of_streams_draws_each_stream_s_next_tokens_from_plain_sampling_s_distribution(
    small_model, drafts, processors
):
    """1,000 streams at once, three times: each stream speculates on its own (lookup drafts where its
    first token repeats the prompt, heads drafts always), and the next tokens of all of them fit
    the distribution of plain sampling, with a user's processor too."""
    want = exact_distribution(small_model, SHORT_PROMPT, processors)
    counts = speculative_counts(small_model, drafts, DRAWS // 3, processors)
    assert chi_square_p_value(counts, want, DRAWS) > 0.001


def test_the_batched_test_catches_a_wrong_acceptance_rule(small_model, drafts, expected, monkeypatch):
    monkeypatch.setattr(speculative, "_left_out", wrong_left_out)
    assert chi_square_p_value(speculative_counts(small_model, drafts, DRAWS // 3), expected, DRAWS) < 1e-6
