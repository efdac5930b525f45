"""Training options: the book preset, how presets, defaults and explicit options combine, and the checks."""

from __future__ import annotations

import pytest

from reverie.errors import ReverieError
from reverie.options import resolve
from reverie.text.language_model import ModelConfig
from reverie.text.options import TrainOptions


def test_book_preset_is_the_books_run():
    options = resolve(TrainOptions, {"preset": "book"})
    assert (options.lower, options.embed, options.model, options.layers, options.hidden) == (
        True,
        0,
        "lstm",
        1,
        128,
    )
    assert (options.batching, options.seq_len, options.window_step, options.batch_size) == (
        "windows",
        60,
        3,
        128,
    )
    assert (options.optimizer, options.lr, options.schedule, options.grad_clip) == (
        "rmsprop",
        0.01,
        "constant",
        0,
    )
    assert (options.epochs, options.init, options.sample_temperatures) == (60, "keras", (0.2, 0.5, 1.0, 1.2))
    # explicit options win; a budget given replaces the preset's 60 epochs
    options = resolve(TrainOptions, {"preset": "book", "hidden": 64, "minutes": 5.0})
    assert (options.hidden, options.epochs, options.minutes, options.lower) == (64, None, 5.0, True)
    assert resolve(TrainOptions, {}).epochs == 10 and resolve(TrainOptions, {"steps": 5}).epochs is None


def test_model_options_are_defined_once_in_the_model_config():
    model = ModelConfig(kind="lstm", vocab_size=10)
    options = TrainOptions()
    for name in ("layers", "hidden", "embed", "kernel_size", "init"):
        assert getattr(options, name) == getattr(model, name), name
    assert options.dropout is None  # chosen for the budget when the run starts (reverie.text.fit)
    assert options.model_config(10) == model


@pytest.mark.parametrize(
    "given, message",
    [
        ({"hidden": 0}, "--hidden must be a positive integer \\(at most 16384\\), got 0"),
        ({"dropout": 1.0}, r"--dropout must be in \[0, 1\), got 1.0"),
        ({"lr": float("nan")}, "--lr must be positive"),
        ({"max_vocab": 1}, "--max-vocab must be an integer of at least 2"),
        ({"sample_temperatures": (0.5, -1)}, "--sample-temperatures must be zero"),
        ({"preset": "movie"}, "unknown --preset 'movie'; choose one of book"),
        ({"colour": True}, "unknown training option 'colour'"),
        ({"steps": 2.5}, "--steps must be a positive integer, got 2.5"),
    ],
)
def test_bad_options_are_refused_in_one_line(given, message):
    with pytest.raises(ReverieError, match=message):
        resolve(TrainOptions, given)
