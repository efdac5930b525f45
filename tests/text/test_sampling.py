"""Sampling: each processor against hand-computed cases, option checks, seeds, stateful generation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reverie.errors import ReverieError
from reverie.text.models import ModelConfig, build_model
from reverie.text.sampling import (
    SamplingOptions,
    apply_min_p,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    build_processors,
    draw,
    generate_tokens,
    generate_tokens_rerun_window,
    reweight_distribution,
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


def test_book_formula_on_a_hand_made_distribution():
    # T = 0.5 squares the probabilities: [0.25, 0.09, 0.0225, 0.0025] / 0.365
    expected = np.array([0.25, 0.09, 0.0225, 0.0025]) / 0.365
    np.testing.assert_allclose(reweight_distribution(np.array(PROBS), 0.5), expected, rtol=1e-12)
    np.testing.assert_allclose(reweight_distribution(np.array(PROBS), 1.0), PROBS, rtol=1e-12)


@pytest.mark.parametrize("temperature", [0.2, 0.5, 1.0, 1.2])
def test_temperature_processor_equals_book_formula(temperature):
    ours = apply_temperature(NO_HISTORY, log_probs(), temperature=temperature).softmax(-1)[0].double().numpy()
    np.testing.assert_allclose(ours, reweight_distribution(np.array(PROBS), temperature), rtol=1e-5)


def test_temperature_zero_is_argmax_whatever_the_seed():
    logits = torch.randn(6, VOCAB, generator=torch.Generator().manual_seed(0))
    for seed in range(3):
        token = sample_next(
            logits,
            NO_HISTORY.expand(6, 0),
            SamplingOptions(temperature=0),
            torch.Generator().manual_seed(seed),
        )
        assert torch.equal(token, logits.argmax(-1))


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
    assert apply_top_k(NO_HISTORY, logits, k=1).tolist() == [[-INF, 3.0, -INF, 3.0, -INF]]  # ties stay
    assert apply_top_k(NO_HISTORY, logits, k=3).tolist() == [[-INF, 3.0, 2.0, 3.0, -INF]]
    assert apply_top_k(NO_HISTORY, logits, k=99).tolist() == logits.tolist()


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
    filtered = apply_top_p(NO_HISTORY, log_probs(), p=top_p)
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
    assert kept(apply_min_p(NO_HISTORY, log_probs(), p=min_p)) == expected


def test_repetition_penalty_hand_computed():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [2.0, -1.0, 0.5, 3.0]])
    history = torch.tensor([[1, 3, 1], [0, 0, 0]])
    penalized = apply_repetition_penalty(history, logits, penalty=2.0)
    # seen positive logits are divided by 2, seen negative ones multiplied by 2, once however often seen
    assert penalized.tolist() == [[2.0, -2.0, 0.5, 1.5], [1.0, -1.0, 0.5, 3.0]]
    assert apply_repetition_penalty(history[:, :0], logits, penalty=2.0).tolist() == logits.tolist()


def test_processors_in_hugging_face_order_and_no_ops_skipped():
    full = SamplingOptions(temperature=0.7, top_k=5, top_p=0.9, min_p=0.05, repetition_penalty=1.3)
    names = [p.func.__name__ for p in build_processors(full)]
    assert names == [
        "apply_repetition_penalty",
        "apply_temperature",
        "apply_top_k",
        "apply_top_p",
        "apply_min_p",
    ]
    neutral = SamplingOptions(temperature=1.0, top_p=1.0, min_p=0.0, repetition_penalty=1.0)
    assert build_processors(neutral) == []
    greedy = SamplingOptions(temperature=0, top_k=3, repetition_penalty=1.3)
    assert [p.func.__name__ for p in build_processors(greedy)] == ["apply_repetition_penalty"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"min_p": -0.1}, "min_p"),
        ({"min_p": 1.1}, "min_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"repetition_penalty": -1.0}, "repetition_penalty"),
    ],
)
def test_validate_refuses_out_of_range(options, message):
    with pytest.raises(ReverieError, match=message):
        SamplingOptions(**options).validate()


def test_validate_accepts_edges():
    SamplingOptions(temperature=0, top_k=1, top_p=1.0, min_p=0.0, repetition_penalty=1.0).validate()
    SamplingOptions(min_p=1.0, top_p=1e-6).validate()


def take(iterator) -> list[list[int]]:
    return torch.stack(list(iterator), dim=1).tolist()  # (num_samples, length)


def test_seed_reproduces_and_differs():
    model = tiny("lstm")
    options = SamplingOptions(temperature=1.0, top_k=8)
    first = take(generate_tokens(model, [1, 2, 3], 40, options, seed=7))
    assert first == take(generate_tokens(model, [1, 2, 3], 40, options, seed=7))
    assert first != take(generate_tokens(model, [1, 2, 3], 40, options, seed=8))
    assert len(first[0]) == 40


class Recorder(torch.nn.Module):
    """Wraps a model and keeps the last-position logits of every call and of every step."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.config, self.calls = model, model.config, []

    def forward(self, tokens, state=None):
        logits, state = self.model(tokens, state)
        self.calls.append((tokens.shape[1], logits[:, -1].clone()))
        return logits, state

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
        generate_tokens(recorder, prompt, length, SamplingOptions(temperature=1.5), streams, seed=0)
    )
    # the prompt runs once, then one token per step
    assert [n for n, _ in recorder.calls] == [len(prompt)] + [1] * (length - 1)
    model.eval()
    with torch.no_grad():
        for step, (_, stepped) in enumerate(recorder.calls):
            for row in range(streams):
                context = torch.tensor([prompt + tokens[row][:step]])
                recomputed = model(context)[0][0, -1]
                torch.testing.assert_close(stepped[row], recomputed, atol=1e-5, rtol=1e-5)
    assert all(0 <= t < VOCAB for row in tokens for t in row)
    assert len({tuple(row) for row in tokens}) > 1  # the streams are sampled independently


def test_batch_of_streams_is_reproducible():
    model = tiny("gru")
    run = lambda: take(generate_tokens(model, [2, 7], 25, SamplingOptions(top_p=0.9), num_samples=4, seed=3))
    first = run()
    assert len(first) == 4 and all(len(row) == 25 for row in first)
    assert first == run()


@pytest.mark.parametrize("kind", KINDS)
def test_stateful_and_rerun_window_agree_when_greedy(kind):
    model = tiny(kind)
    for options in (SamplingOptions(temperature=0), SamplingOptions(temperature=0, repetition_penalty=1.5)):
        stateful = take(generate_tokens(model, [5, 6, 7, 8], 30, options))
        rerun = take(generate_tokens_rerun_window(model, [5, 6, 7, 8], 30, options, window=64))
        assert stateful == rerun


def test_rerun_window_sees_only_the_window():
    model = tiny("lstm")
    options = SamplingOptions(temperature=0)
    prompt = [1, 2, 3, 4, 5, 6, 7, 8]
    short = take(generate_tokens_rerun_window(model, prompt, 5, options, window=3))
    same_tail = take(generate_tokens_rerun_window(model, [9, 9, 9, 9, 9, 6, 7, 8], 5, options, window=3))
    assert short == same_tail


def test_empty_prompt_starts_from_a_seeded_uniform_token():
    model = tiny("conv")
    options = SamplingOptions(temperature=0.8)
    first = take(generate_tokens(model, [], 10, options, num_samples=2, seed=5))
    assert first == take(generate_tokens(model, [], 10, options, num_samples=2, seed=5))
    assert all(len(row) == 10 for row in first)
    expected_start = torch.randint(VOCAB, (2,), generator=torch.Generator().manual_seed(5)).tolist()
    assert [row[0] for row in first] == expected_start
    assert take(generate_tokens(model, [], 1, options, seed=5)) == [[expected_start[0]]]


def test_generation_restores_training_mode_and_makes_plain_tensors():
    model = tiny("gru").train()
    tokens = list(generate_tokens(model, [1], 3, SamplingOptions()))
    assert model.training
    assert not any(t.is_inference() for t in tokens)


@pytest.mark.parametrize(
    "prompt, length, message",
    [([1, VOCAB], 5, "outside the vocabulary"), ([-1], 5, "outside the vocabulary"), ([1], 0, "length")],
)
def test_bad_generation_arguments_refused(prompt, length, message):
    with pytest.raises(ReverieError, match=message):
        next(generate_tokens(tiny("lstm"), prompt, length, SamplingOptions()))
    with pytest.raises(ReverieError, match="temperature"):
        next(generate_tokens(tiny("lstm"), [1], 5, SamplingOptions(temperature=-1)))
