"""Speculative decoding with lookup drafts (reverie.text.speculative): greedy output identical to
plain decoding for every model kind, the sampled distribution of the next tokens equal to plain
sampling's by a chi-square test with the processors on, for lookup and heads drafts (and a wrong
acceptance rule caught by the same test), and the state after a pass the state plain steps reach
over the same tokens. Heads drafts on trained models: test_predict.py."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch

from reverie.text import speculative
from reverie.text.language_model import ModelConfig
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
        kind=kind, vocab_size=vocab, embed=8, hidden=16, layers=2, heads=2, context=context, predict=predict
    )
    return build_model(config).eval()


def tokens_of(model, prompt, **options) -> list[int]:
    return [int(t) for t in generate_tokens_spec(model, prompt, **options)]


def generate_tokens_spec(model, prompt, **options):
    return speculative.generate_tokens(model, prompt, SamplingOptions.of(**options))


def test_a_draft_is_what_followed_the_last_ngram_the_last_time():
    draft = LookupDraft([7, 1, 2, 3, 4, 9, 1, 2, 3], ngram=3, size=4)
    assert draft.propose(100) == [4, 9, 1, 2]  # after the earlier 1 2 3
    assert draft.propose(2) == [4, 9]
    draft.extend([5, 1, 2, 3])  # 1 2 3 now occurred last before "5"
    assert draft.propose(100) == [5, 1, 2, 3]
    assert LookupDraft([1, 2, 3, 4], ngram=3).propose(10) == []  # 2 3 4 never occurred before


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_speculative_output_is_plain_greedy_token_for_token(kind, monkeypatch):
    model = tiny(kind, context=24)  # a short context: the transformer's window is cut and re-read
    plain = [int(t) for t in generate_tokens(model, PROMPT, SamplingOptions.of(temperature=0, length=150))]
    passes = Counter()
    for name in ("Verifier", "TransformerVerifier"):
        verify = getattr(speculative, name).verify

        def counted(self, tokens, verify=verify):
            passes["passes"] += 1
            return verify(self, tokens)

        monkeypatch.setattr(getattr(speculative, name), "verify", counted)
    for extra in ({}, {"repetition_penalty": 1.3}):
        reference = (
            plain
            if not extra
            else [
                int(t)
                for t in generate_tokens(
                    model, PROMPT, SamplingOptions.of(temperature=0, length=150, **extra)
                )
            ]
        )
        passes.clear()
        assert tokens_of(model, PROMPT, temperature=0, length=150, speculative="lookup", **extra) == reference
        assert passes["passes"] < 150  # several tokens per pass


def test_auto_does_not_speculate_and_a_named_way_does_for_one_stream():
    options = SamplingOptions.of()
    assert options.speculative == "auto"  # off: no way measured faster than plain sampling yet
    assert drafts_of(options) == "off"  # for every model kind: the choice depends on the options only
    assert drafts_of(SamplingOptions.of(speculative="lookup")) == "lookup"
    assert drafts_of(SamplingOptions.of(speculative="heads")) == "heads"
    assert drafts_of(SamplingOptions.of(speculative="lookup", num_samples=2)) == "off"
    assert drafts_of(SamplingOptions.of(speculative="off")) == "off"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kept", [2, 4])
def test_after_a_pass_keeping_m_tokens_the_state_is_plain_steps_over_them(kind, kept):
    """With a transformer's context of 16, the 13-token prompt's window fills after 3 of the 5
    tokens read: the pass re-reads it there, as the stepper does (and keeping 4 keeps a token after)."""
    model = tiny(kind, context=16)
    read = [4, 5, 6, 7, 8]
    with torch.inference_mode():
        _, state = model.prefill(torch.tensor([PROMPT]))
        verifier = speculative._verifier(model, state)
        logits = verifier.verify(torch.tensor([read]))
        verifier.keep(kept)
        torch.testing.assert_close(model.logits(verifier.hidden), logits[kept - 1])  # the drafts' hidden
        after_pass = verifier.verify(torch.tensor([[9]]))[0]
        step = model.stepper(state)
        for token in [*read[:kept], 9]:
            after_steps = step(torch.tensor([token]))[0]
    torch.testing.assert_close(after_pass, after_steps, atol=1e-5, rtol=1e-4)


# ---- the distribution --------------------------------------------------------------------------

SMALL_VOCAB = 4
DRAWS = 3000
NEXT = 3
RULES = {"temperature": 0.8, "top_k": 3, "repetition_penalty": 1.3, "min_p": 0.05}
SHORT_PROMPT = [0, 1, 2, 0, 1, 2, 0, 1]


def exact_distribution(model, prompt: list[int]) -> dict[tuple[int, ...], float]:
    """The probability of each sequence of the next NEXT tokens under plain sampling with RULES,
    by enumerating them all."""
    processors = SamplingOptions.of(**RULES).rules()
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


def speculative_counts(model, drafts: str = "lookup") -> Counter:
    counts = Counter()
    for seed in range(DRAWS):
        options = {**RULES, "length": NEXT, "seed": seed, "speculative": drafts}
        counts[tuple(tokens_of(model, SHORT_PROMPT, **options))] += 1
    return counts


def wrong_accept(after, draft, history, processors, generator):
    """A wrong rule: a refused draft token is replaced by a draw from the whole distribution, which
    may give the refused token again (it should be left out)."""
    taken = []
    for index in range(len(draft) + 1):
        logits = after[index : index + 1].float()
        for processor in processors:
            logits = processor(history.tokens(), logits)
        proposed = draft[index] if index < len(draft) else None
        if (
            proposed is not None
            and torch.rand(1, generator=generator).item() < logits.softmax(-1)[0, proposed]
        ):
            token = proposed
        else:
            token = int(speculative.sampling.draw(logits, generator))
        taken.append(token)
        history.append(torch.tensor([token]))
        if proposed is None or token != proposed:
            break
    return taken


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


def test_speculative_sampling_draws_the_next_tokens_from_plain_sampling_s_distribution(small_model, drafts):
    expected = exact_distribution(small_model, SHORT_PROMPT)
    assert math.isclose(sum(expected.values()), 1.0, rel_tol=1e-4)
    plain = Counter()
    for seed in range(3):  # plain sampling, as batches of 1,000 streams
        options = SamplingOptions.of(**RULES, length=NEXT, num_samples=DRAWS // 3, seed=seed)
        for sequence in zip(*[step.tolist() for step in generate_tokens(small_model, SHORT_PROMPT, options)]):
            plain[tuple(sequence)] += 1
    assert chi_square_p_value(plain, expected, DRAWS) > 0.001  # the reference itself fits
    assert chi_square_p_value(speculative_counts(small_model, drafts), expected, DRAWS) > 0.001


def test_the_same_test_catches_a_wrong_acceptance_rule(small_model, drafts, monkeypatch):
    expected = exact_distribution(small_model, SHORT_PROMPT)
    monkeypatch.setattr(speculative, "_accept", wrong_accept)
    assert chi_square_p_value(speculative_counts(small_model, drafts), expected, DRAWS) < 1e-6
