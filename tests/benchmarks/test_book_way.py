"""The generation benchmark's baseline (benchmarks/book_way.py) is the book's algorithm: it agrees with
reverie's stateful generation when greedy, and sees only its window."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from reverie.text.language_model import ModelConfig
from reverie.text.models import build_model
from reverie.text.sampling import SamplingOptions, generate_tokens

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from book_way import rerun_window_tokens

VOCAB = 11


def tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(kind=kind, vocab_size=VOCAB, embed=8, hidden=24, layers=2, dropout=0.3))


def take(iterator) -> list[list[int]]:
    return torch.stack(list(iterator), dim=1).tolist()


@pytest.mark.parametrize("kind", ["lstm", "gru", "conv"])
def test_stateful_and_rerun_window_agree_when_greedy(kind):
    model = tiny(kind)
    for given in ({"temperature": 0}, {"temperature": 0, "repetition_penalty": 1.5}):
        options = SamplingOptions.of(length=30, **given)
        stateful = take(generate_tokens(model, [5, 6, 7, 8], options))
        rerun = take(rerun_window_tokens(model, [5, 6, 7, 8], options, window=64))
        assert stateful == rerun


def test_rerun_window_sees_only_the_window():
    model = tiny("lstm")
    options = SamplingOptions.of(temperature=0, length=5)
    short = take(rerun_window_tokens(model, [1, 2, 3, 4, 5, 6, 7, 8], options, window=3))
    same_tail = take(rerun_window_tokens(model, [9, 9, 9, 9, 9, 6, 7, 8], options, window=3))
    assert short == same_tail
