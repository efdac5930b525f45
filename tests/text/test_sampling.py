"""Sampling: each processor against hand-computed cases, option checks, seeds, stateful generation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reverie.errors import ReverieError
from reverie.text.language_model import ModelConfig
from reverie.text.models import build_model
from reverie.text.sampling import (
    MinP,
    RepetitionPenalty,
    SamplingOptions,
    Temperature,
    TopK,
    TopP,
    draw,
    generate_tokens,
    sample_next,
)

INF = math.inf
VOCAB = 11
KINDS = ("lstm", "gru", "conv")
PROBS = [0.5, 0.3, 0.15, 0.05]
NO_HISTORY = torch.zeros(1, 0, dtype=torch.long)


def tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(kind=kind, vocab_size=VOCAB, embed=8, hidden=24, layers=2, dropout=0.3))


def log_probs() -> torch.Tensor:
    return torch.tensor([PROBS]).log()


def kept(logits: torch.Tensor) -> list[bool]:
    return torch.isfinite(logits[0]).tolist()


def reweight_distribution(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The book's formula, as chapter 8.1 writes it: p' = exp(log(p) / T) / sum(exp(log(p) / T))."""
    reweighted = np.exp(np.log(probs) / temperature)
    return reweighted / np.sum(reweighted)


def options(**given) -> SamplingOptions:
    return SamplingOptions.of(**given)


def test_book_formula_on_a_hand_made_distribution():
    # T = 0.5 squares the probabilities: [0.25, 0.09, 0.0225, 0.0025] / 0.365
    expected = np.array([0.25, 0.09, 0.0225, 0.0025]) / 0.365
    np.testing.assert_allclose(reweight_distribution(np.array(PROBS), 0.5), expected, rtol=1e-12)
    np.testing.assert_allclose(reweight_distribution(np.array(PROBS), 1.0), PROBS, rtol=1e-12)


@pytest.mark.parametrize("temperature", [0.2, 0.5, 1.0, 1.2])
def test_temperature_processor_equals_book_formula(temperature):
    ours = Temperature(temperature)(NO_HISTORY, log_probs()).softmax(-1)[0].double().numpy()
    np.testing.assert_allclose(ours, reweight_distribution(np.array(PROBS), temperature), rtol=1e-5)


def test_temperature_zero_is_argmax_whatever_the_seed():
    logits = torch.randn(6, VOCAB, generator=torch.Generator().manual_seed(0))
    token = sample_next(logits, NO_HISTORY.expand(6, 0), options(temperature=0).rules(), None)
    assert torch.equal(token, logits.argmax(-1))
    model = tiny("lstm")
    runs = [
        take(generate_tokens(model, [1, 2], options(temperature=0, length=9, seed=seed))) for seed in range(3)
    ]
    assert runs[0] == runs[1] == runs[2]


def test_draw_follows_the_distribution_and_never_draws_masked_tokens():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05, 0.0])
    logits = probs.log().expand(40_000, -1)  # log(0) = -inf: masked
    tokens = draw(logits, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(tokens, minlength=len(probs)).double() / len(tokens)
    torch.testing.assert_close(frequencies, probs.double(), atol=0.01, rtol=0)
    assert frequencies[1] == 0 and frequencies[5] == 0


def test_draw_at_the_top_of_the_range_takes_the_last_possible_token(monkeypatch):
    # u * total rounding up to the total must not pick the masked tokens after the last possible one
    monkeypatch.setattr(torch, "rand", lambda *shape, generator=None: torch.ones(*shape))
    logits = torch.tensor([[0.0, 1.0, -INF, 2.0, -INF, -INF]])
    assert draw(logits, torch.Generator()).tolist() == [3]


def test_top_k_hand_computed():
    logits = torch.tensor([[1.0, 3.0, 2.0, 3.0, 0.5]])
    assert TopK(1)(NO_HISTORY, logits).tolist() == [[-INF, 3.0, -INF, 3.0, -INF]]  # ties stay
    assert TopK(3)(NO_HISTORY, logits).tolist() == [[-INF, 3.0, 2.0, 3.0, -INF]]
    assert TopK(99)(NO_HISTORY, logits).tolist() == logits.tolist()


@pytest.mark.parametrize(
    "top_p, expected",
    [
        (0.75, [True, True, False, False]),  # 0.5 + 0.3 >= 0.75
        (0.85, [True, True, True, False]),  # 0.5 + 0.3 + 0.15 >= 0.85
        (0.4, [True, False, False, False]),  # the top token alone
        (0.01, [True, False, False, False]),  # the top token always stays
        (1.0, [True, True, True, True]),
    ],
)
def test_top_p_hand_computed(top_p, expected):
    filtered = TopP(top_p)(NO_HISTORY, log_probs())
    assert kept(filtered) == expected
    mask = torch.tensor(expected)
    torch.testing.assert_close(filtered[0, mask], log_probs()[0, mask])  # kept logits unchanged


@pytest.mark.parametrize(
    "min_p, expected",
    [
        (0.2, [True, True, True, False]),  # threshold 0.2 * 0.5 = 0.1
        (0.5, [True, True, False, False]),  # threshold 0.25
        (1.0, [True, False, False, False]),
        (0.0, [True, True, True, True]),
    ],
)
def test_min_p_hand_computed(min_p, expected):
    assert kept(MinP(min_p)(NO_HISTORY, log_probs())) == expected


def test_repetition_penalty_hand_computed():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [2.0, -1.0, 0.5, 3.0]])
    history = torch.tensor([[1, 3, 1], [0, 0, 0]])
    penalized = RepetitionPenalty(2.0)(history, logits)
    # seen positive logits are divided by 2, seen negative ones multiplied by 2, once however often seen
    assert penalized.tolist() == [[2.0, -2.0, 0.5, 1.5], [1.0, -1.0, 0.5, 3.0]]
    assert RepetitionPenalty(2.0)(history[:, :0], logits).tolist() == logits.tolist()


def test_processors_in_hugging_face_order_and_no_ops_skipped():
    full = options(temperature=0.7, top_k=5, top_p=0.9, min_p=0.05, repetition_penalty=1.3)
    names = [type(p).__name__ for p in full.rules()]
    assert names == ["RepetitionPenalty", "Temperature", "TopK", "TopP", "MinP"]
    neutral = options(temperature=1.0, top_p=1.0, min_p=0.0, repetition_penalty=1.0)
    assert neutral.rules() == []
    greedy = options(temperature=0, top_k=3, repetition_penalty=1.3)
    assert [type(p).__name__ for p in greedy.rules()] == ["RepetitionPenalty"]
    assert [type(p).__name__ for p in options(top_k=1).rules()] == ["TopK"]  # k = 1 is a rule, not a no-op


def test_user_processors_run_after_the_rules():
    seen = []

    def only_token_3(history, logits):
        seen.append(logits.clone())
        return torch.full_like(logits, -INF).index_fill(1, torch.tensor([3]), 0.0)

    chosen = options(temperature=0.5, processors=[only_token_3])
    assert [type(p).__name__ for p in chosen.rules()] == ["Temperature", "function"]
    tokens = take(
        generate_tokens(
            tiny("gru"), [1], options(temperature=0.5, length=6, seed=0, processors=[only_token_3])
        )
    )
    assert tokens == [[3] * 6]
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    sample_next(logits, NO_HISTORY, chosen.rules(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen[-1], logits / 0.5)  # it saw the logits after the temperature


@pytest.mark.parametrize(
    "given, message",
    [
        ({"colour": 1}, "unknown generation option 'colour'"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "--top-p"),
        ({"top_p": 1.5}, "--top-p"),
        ({"top_k": 0}, "--top-k"),
        ({"top_k": 2.5}, "--top-k"),
        ({"min_p": -0.1}, "--min-p"),
        ({"min_p": 1.1}, "--min-p"),
        ({"repetition_penalty": 0.0}, "--repetition-penalty"),
        ({"repetition_penalty": -1.0}, "--repetition-penalty"),
    ],
)
def test_validate_refuses_out_of_range(given, message):
    with pytest.raises(ReverieError, match=message):
        SamplingOptions.of(**given)


@pytest.mark.parametrize(
    "rule, value, message",
    [
        (Temperature, 0.0, "--temperature must be positive"),
        (TopK, 0, "--top-k must be a positive integer"),
        (TopP, 1.5, r"--top-p must be in \(0, 1\]"),
        (MinP, -0.1, r"--min-p must be in \[0, 1\]"),
        (RepetitionPenalty, 0.0, r"--repetition-penalty must be positive \(1 = none\)"),
    ],
)
def test_each_rule_checks_its_argument_when_built(rule, value, message):
    with pytest.raises(ReverieError, match=message):
        rule(value)


def test_validate_accepts_edges():
    options(temperature=0, top_k=1, top_p=1.0, min_p=0.0, repetition_penalty=1.0)
    options(min_p=1.0, top_p=1e-6)


def take(iterator) -> list[list[int]]:
    return torch.stack(list(iterator), dim=1).tolist()  # (num_samples, length)


def test_seed_reproduces_and_differs():
    model = tiny("lstm")
    first = take(generate_tokens(model, [1, 2, 3], options(top_k=8, length=40, seed=7)))
    assert first == take(generate_tokens(model, [1, 2, 3], options(top_k=8, length=40, seed=7)))
    assert first != take(generate_tokens(model, [1, 2, 3], options(top_k=8, length=40, seed=8)))
    assert len(first[0]) == 40


class Recorder(torch.nn.Module):
    """Wraps a model and keeps the last-position logits of every call and of every step."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.config, self.calls = model, model.config, []

    def prefill(self, tokens, state=None):
        logits, state = self.model.prefill(tokens, state)
        self.calls.append((tokens.shape[1], logits.clone()))
        return logits, state

    def repeat_state(self, state, times):
        return self.model.repeat_state(state, times)

    def stepper(self, state):
        step = self.model.stepper(state)

        def recorded(tokens):
            logits = step(tokens)
            self.calls.append((1, logits.clone()))
            return logits

        return recorded


@pytest.mark.parametrize("kind", KINDS)
def test_stateful_generation_matches_full_recompute_for_each_stream(kind):
    model = tiny(kind)
    recorder = Recorder(model)
    prompt, length, streams = [3, 1, 4, 1, 5], 12, 3
    tokens = take(
        generate_tokens(
            recorder, prompt, options(temperature=1.5, length=length, num_samples=streams, seed=0)
        )
    )
    # the prompt runs once (for one sample), then one token per step
    assert [n for n, _ in recorder.calls] == [len(prompt)] + [1] * (length - 1)
    model.eval()
    with torch.no_grad():
        for step, (_, stepped) in enumerate(recorder.calls):
            stepped = stepped.expand(streams, -1)  # the prompt's logits, once for every sample
            for row in range(streams):
                context = torch.tensor([prompt + tokens[row][:step]])
                recomputed = model(context)[0][0, -1]
                torch.testing.assert_close(stepped[row], recomputed, atol=1e-5, rtol=1e-5)
    assert all(0 <= t < VOCAB for row in tokens for t in row)
    assert len({tuple(row) for row in tokens}) > 1  # the streams are sampled independently


def test_batch_of_streams_is_reproducible():
    model = tiny("gru")
    run = lambda: take(generate_tokens(model, [2, 7], options(top_p=0.9, length=25, num_samples=4, seed=3)))
    first = run()
    assert len(first) == 4 and all(len(row) == 25 for row in first)
    assert first == run()


def test_generation_restores_training_mode_and_makes_plain_tensors():
    model = tiny("gru").train()
    tokens = list(generate_tokens(model, [1], options(length=3)))
    assert model.training
    assert not any(t.is_inference() for t in tokens)


@pytest.mark.parametrize(
    "prompt, given, message",
    [
        ([1, VOCAB], {}, "outside the vocabulary"),
        ([-1], {}, "outside the vocabulary"),
        ([], {}, "the prompt has no tokens"),
        ([1], {"length": 0}, "--length must be a positive integer"),
        ([1], {"num_samples": 0}, "--num-samples must be a positive integer"),
        ([1], {"temperature": -1}, "temperature"),
    ],
)
def test_bad_generation_arguments_refused_before_the_first_token(prompt, given, message):
    with pytest.raises(ReverieError, match=message):
        generate_tokens(tiny("lstm"), prompt, options(**{"length": 5, **given}))
