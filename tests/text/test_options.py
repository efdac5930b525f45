"""Training options: the book preset, how presets, defaults and explicit options combine, the checks,
and the model as one ModelConfig (`options.model`) whose options keywords and flags name flat."""

from __future__ import annotations

import dataclasses

import pytest

from reverie.cli import build_parser
from reverie.errors import ReverieError
from reverie.options import given, keywords_of, options_of, resolve
from reverie.text.language_model import ModelConfig
from reverie.text.options import FINETUNE_DEFAULTS, MODEL_DEFAULTS, TrainOptions


def test_book_preset_is_the_books_run():
    options = resolve(TrainOptions, {"preset": "book"})
    model = options.model
    assert (options.lower, model.embed, model.kind, model.layers, model.hidden) == (True, 0, "lstm", 1, 128)
    assert (model.dropout, model.init) == (0.0, "keras")
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
    assert (options.epochs, options.sample_temperatures) == (60, (0.2, 0.5, 1.0, 1.2))
    # explicit options win; a budget given replaces the preset's 60 epochs
    options = resolve(TrainOptions, {"preset": "book", "hidden": 64, "minutes": 5.0})
    assert (options.model.hidden, options.epochs, options.minutes, options.lower) == (64, None, 5.0, True)
    assert resolve(TrainOptions, {}).epochs == 10 and resolve(TrainOptions, {"steps": 5}).epochs is None


def test_the_model_options_are_the_model_configs_fields():
    """TrainOptions holds its model as a ModelConfig: its defaults are ModelConfig's, its options
    are ModelConfig's fields (vocab_size aside: the corpus's) by their own names, `kind` as model."""
    assert TrainOptions().model == ModelConfig()
    assert (
        TrainOptions().model.dropout is None
    )  # chosen for the budget when the run starts (reverie.text.fit)
    model_options = {
        name: found for name, found in options_of(TrainOptions).items() if found.path[0] == "model"
    }
    fields = [field.name for field in dataclasses.fields(ModelConfig) if field.name != "vocab_size"]
    assert [found.path for found in model_options.values()] == [("model", name) for name in fields]
    assert model_options["model"].path == ("model", "kind") and model_options["model"].flag == "--model"
    assert "vocab_size" not in options_of(TrainOptions)
    with pytest.raises(ReverieError, match="unknown training option 'vocab_size'"):
        resolve(TrainOptions, {"vocab_size": 10})


SHAPE_FLAGS = ["--model", "gru", "--layers", "3", "--hidden", "48", "--embed", "0", "--dropout", "0.1"]
SHAPE_FLAGS += ["--kernel-size", "4", "--init", "keras", "--heads", "2", "--context", "64"]
SHAPE_FLAGS += ["--positions", "learned", "--predict", "2"]
SHAPE = ModelConfig(kind="gru", layers=3, hidden=48, embed=0, dropout=0.1, kernel_size=4, init="keras")
SHAPE = dataclasses.replace(SHAPE, heads=2, context=64, positions="learned", predict=2)  # what they mean


def test_flags_and_keywords_land_in_options_model():
    args = build_parser().parse_args(["train", "corpus.txt", "--out", "run", *SHAPE_FLAGS])
    typed = given(args, TrainOptions)
    assert resolve(TrainOptions, typed).model == SHAPE
    keywords = {
        name: value for name, value in keywords_of(TrainOptions(model=SHAPE)).items() if name in typed
    }
    assert keywords == typed  # reverie.train's keywords are the flags' names
    assert resolve(TrainOptions, keywords).model == SHAPE


def test_a_preset_then_the_given_values_then_the_budget():
    """Each default lives in one layer: the field, the named preset over it, a given value over both;
    a dropout none of them sets is the budget's (None until the run starts)."""
    assert resolve(TrainOptions, {}).model == ModelConfig()
    book = resolve(TrainOptions, {"preset": "book"}).model
    assert (book.layers, book.hidden, book.embed, book.dropout) == (1, 128, 0, 0.0)
    assert book.context == ModelConfig().context  # what the preset leaves is the field's
    given = resolve(TrainOptions, {"preset": "book", "layers": 2, "dropout": 0.3}).model
    assert given == dataclasses.replace(book, layers=2, dropout=0.3)
    assert resolve(TrainOptions, {"hidden": 64}).model.dropout is None
    # a model kind's own defaults lie under what is given
    transformer = resolve(TrainOptions, {"model": "transformer", "hidden": 64}).model
    assert (transformer.hidden, transformer.layers) == (64, MODEL_DEFAULTS["transformer"]["layers"])


def test_help_texts_read_the_numbers_from_where_they_are_defined():
    parser = build_parser()
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    helps = {action.dest: action.help for action in train._actions}
    assert f"(default: {ModelConfig().hidden})" in helps["hidden"]
    assert (
        "--hidden 128" in helps["model"] and f"--lr {MODEL_DEFAULTS['transformer']['lr']:g}" in helps["model"]
    )
    assert f"--patience {FINETUNE_DEFAULTS['patience']}" in helps["base"]
    assert f"{FINETUNE_DEFAULTS['patience']} with --from" in helps["patience"]


@pytest.mark.parametrize(
    "given, message",
    [
        ({"hidden": 0}, "--hidden must be a positive integer \\(at most 16384\\), got 0"),
        ({"dropout": 1.0}, r"--dropout must be in \[0, 1\), got 1.0"),
        ({"model": "rnn"}, "unknown --model 'rnn'; choose one of lstm, gru, conv, transformer"),
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
