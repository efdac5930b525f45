"""Dream options: the presets, explicit options over them, every value checked once (naming its flag),
and the API objects that replace groups of options."""

from __future__ import annotations

import pytest

from reverie.deepdream.dreamer import dream
from reverie.deepdream.objectives import BOOK_LAYERS, layer
from reverie.deepdream.options import DreamOptions, PixelStep
from reverie.deepdream.transforms import Clip
from reverie.errors import ReverieError
from reverie.options import resolve

from .conftest import smooth_image


def dream_options(preset: str | None = None, **given) -> DreamOptions:
    return resolve(DreamOptions, given, preset)


def test_presets_resolve_as_specified_and_explicit_options_win():
    book = dream_options("book")
    assert (book.model, dict(book.layers), book.reduction, book.border) == (
        "inception_v3",
        BOOK_LAYERS,
        "book",
        2,
    )
    assert (book.octaves, book.octave_scale, book.iterations, book.step, book.max_loss) == (
        3,
        1.4,
        20,
        0.01,
        10.0,
    )
    assert (book.jitter, book.tile, book.lap_norm, book.clip) == (0, None, 0, False)
    # reproductions run in float32 whatever the hardware, unless asked otherwise
    assert {dream_options(name).dtype for name in ("book", "keras-io", "google")} == {"float32"}
    assert dream_options("book", dtype="bfloat16").dtype == "bfloat16"
    assert dream_options().dtype == "auto"
    keras = dream_options("keras-io")
    assert dict(keras.layers) == {"mixed4": 1.0, "mixed5": 1.5, "mixed6": 2.0, "mixed7": 2.5}
    assert keras.max_loss == 15.0 and keras.step == 0.01 and keras.iterations == 20
    google = dream_options("google")
    assert (google.model, dict(google.layers), google.reduction, google.border) == (
        "googlenet",
        {"inception4c": 1.0},
        "half_sum",
        0,
    )
    assert (google.jitter, google.step, google.octaves, google.iterations, google.clip) == (
        32,
        PixelStep(1.5),
        4,
        10,
        True,
    )
    mixed = dream_options("book", iterations=5, layers="mixed4", jitter=None)
    assert (mixed.iterations, dict(mixed.layers), mixed.jitter, mixed.max_loss) == (
        5,
        {"mixed4": 1.0},
        0,
        10.0,
    )
    assert dream_options() == DreamOptions()
    other_model = dream_options("book", model="efficientnet_lite0")
    assert other_model.layers is None and other_model.max_loss is None  # that model's own layers
    assert other_model.iterations == 20 and other_model.reduction == "book"
    assert dict(dream_options("book", model="inception_v3").layers) == BOOK_LAYERS


@pytest.mark.parametrize(
    "options, message",
    [
        ({"iterations": -1}, "--iterations must be zero or a positive integer, got -1"),
        ({"octaves": 0}, "--octaves must be a positive integer, got 0"),
        ({"step": 0.0}, "--step must be positive"),
        ({"tile": 0}, "--tile must be an integer of at least 64, got 0"),
        ({"tile": 63}, "--tile must be an integer of at least 64, got 63"),
        ({"stop": True}, "stop= takes a function of no arguments"),
        ({"octave_scale": 1.0}, "--octave-scale must be above 1"),
        ({"jitter": -2}, "--jitter must be zero or a positive integer"),
        ({"preset": "dreamy"}, "unknown preset 'dreamy'"),
        ({"colour": True}, "unknown dream option 'colour'"),
        ({"reduction": "max"}, "unknown --reduction 'max'"),
        ({"layers": "c", "channels": "c:99"}, "channel 99 is out of range for layer c"),
        ({"layers": "zz"}, "unknown layer 'zz'"),
    ],
)
def test_bad_options_are_refused(tiny, options, message):
    with pytest.raises(ReverieError, match=message):
        dream(smooth_image(32, 32), model=tiny, progress=False, **options)


def test_channels_alone_replace_the_presets_layers():
    assert dream_options(channels="b:1,2").layers is None  # parse_objective: the channels alone
    assert dream_options("book", channels="mixed4:1").layers is None
    both = dream_options(layers="c:2", channels={"b": [1]})
    assert dict(both.layers) == {"c": 2.0} and dict(both.channels) == {"b": [1]}


def test_an_objective_replaces_the_presets_objective_and_its_max_loss():
    own = dream_options("book", objective=layer("mixed4"))
    assert own.layers is None and own.max_loss is None
    assert (own.reduction, own.border) == (DreamOptions().reduction, DreamOptions().border)
    assert own.iterations == 20 and own.octaves == 3  # the rest of the preset stays
    assert dream_options("book", objective=layer("mixed4"), max_loss=5.0).max_loss == 5.0
    assert dream_options(transforms=[Clip()], iterations=3).transforms == [Clip()]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"objective": layer("b"), "layers": "c"}, "objective= replaces layers, channels, guide, reduction"),
        ({"objective": layer("b"), "channels": "c:1"}, "give objective= or channels=, not both"),
        ({"objective": layer("b"), "reduction": "book"}, "give objective= or reduction=, not both"),
        ({"objective": "b:1"}, "objective= takes an objective from reverie.objectives"),
        ({"transforms": [Clip()], "clip": False}, "give transforms= or clip=, not both"),
    ],
)
def test_an_api_object_and_the_options_it_replaces_are_refused_together(tiny, options, message):
    with pytest.raises(ReverieError, match=message) as error:
        dream(smooth_image(32, 32), model=tiny, progress=False, **options)
    assert "\n" not in str(error.value)
