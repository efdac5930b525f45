"""Objectives: the book's loss by hand, other reductions, channels, guides, composition, views, the
parser of --layers/--channels/--guide, checks against a model, and objectives passed to a dream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reverie.deepdream.dreamer import dream_octaves, load_dreamer
from reverie.deepdream.dreamtypes import View
from reverie.deepdream.objectives import (
    BOOK_LAYERS,
    GuideMatch,
    book,
    channel,
    guide,
    layer,
    parse_channels,
    parse_layers,
    parse_objective,
)
from reverie.errors import ReverieError

from .conftest import smooth_image


def hand_activation() -> torch.Tensor:
    """(1, 2, 6, 7) with distinct small values."""
    return (torch.arange(84, dtype=torch.float32).reshape(1, 2, 6, 7) - 40.0) / 10.0


def test_book_loss_equals_hand_computation():
    a = hand_activation()
    total = 0.0
    for c in range(2):
        for i in range(2, 4):  # rows 2..3 of 6: a 2-pixel border is left out
            for j in range(2, 5):  # columns 2..4 of 7
                total += float(a[0, c, i, j]) ** 2
    expected = 3.0 * total / (1 * 2 * 6 * 7)  # denominator: the FULL shape
    value = (3.0 * layer("x", border=2, reduction="book"))({"x": a})
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_other_reductions():
    a = hand_activation()
    cropped = a[..., 2:-2, 2:-2]
    assert layer("x", border=2, reduction="mean")({"x": a}).item() == pytest.approx(
        cropped.square().mean().item(), rel=1e-6
    )
    half = layer("x", border=0, reduction="half_sum")({"x": a})
    assert half.item() == pytest.approx(0.5 * a.square().sum().item(), rel=1e-6)
    x = a.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(layer("x", border=0, reduction="half_sum")({"x": x}), x)
    assert torch.allclose(grad, a)  # google/deepdream's objective_L2: the gradient is the activation


def test_channels_only_read_their_channels():
    a = hand_activation()
    value = (2.0 * channel("x", [1], border=2, reduction="book"))({"x": a})
    expected = 2.0 * a[:, 1:2, 2:-2, 2:-2].square().sum() / (1 * 1 * 6 * 7)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_objectives_compose_like_numbers():
    features = {"x": hand_activation(), "y": hand_activation().flip(-1) * 2}
    a, b = layer("x"), channel("y", [0])
    combined = a + 0.5 * b - b
    expected = a(features) + 0.5 * b(features) - b(features)
    assert combined(features).item() == pytest.approx(expected.item(), rel=1e-6)
    assert combined.layers == ("x", "y")
    assert sum([a, b])(features).item() == pytest.approx((a(features) + b(features)).item(), rel=1e-6)


def test_guide_match_picks_the_best_guide_vector():
    # two positions, channels 2; guide vectors (1, 0) and (0, 2)
    activation = torch.tensor([[3.0, 0.0], [1.0, 1.0]]).reshape(1, 2, 1, 2)  # p0 = (3, 1), p1 = (0, 1)
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).reshape(1, 2, 1, 2)
    # p0: max(3*1 + 1*0, 3*0 + 1*2) = 3; p1: max(0, 2) = 2; divided by numel 4
    x = activation.clone().requires_grad_(True)
    value = GuideMatch("x", features)({"x": x})
    assert value.item() == pytest.approx((3 + 2) / 4)
    (grad,) = torch.autograd.grad(value, x)
    assert torch.allclose(grad[0, :, 0, 0], torch.tensor([1.0, 0.0]) / 4)  # p0 pulled toward guide vector 0
    assert torch.allclose(grad[0, :, 0, 1], torch.tensor([0.0, 2.0]) / 4)  # p1 toward guide vector 1


@pytest.mark.parametrize("reduction", ["book", "mean", "half_sum"])
def test_views_split_the_sum_exactly(reduction):
    """Evaluating on overlapping windows, each counting its own core, adds up to the whole."""
    a = torch.randn(1, 3, 10, 9, generator=torch.Generator().manual_seed(0))
    whole = layer("x", border=2, reduction=reduction)({"x": a}).item()
    pieces = 0.0
    for r0, r1 in ((0, 4), (4, 10)):
        for c0, c1 in ((0, 5), (5, 9)):
            w_r0, w_c0 = max(0, r0 - 2), max(0, c0 - 2)  # windows with 2 positions of context
            window = a[..., w_r0 : min(10, r1 + 2), w_c0 : min(9, c1 + 2)]
            view = View((r0 - w_r0, r1 - w_r0), (c0 - w_c0, c1 - w_c0), (w_r0, w_c0), (10, 9))
            pieces += layer("x", border=2, reduction=reduction)({"x": window}, {"x": view}).item()
    assert pieces == pytest.approx(whole, rel=1e-5)


def test_parse_objective_uses_channels_and_weights(tiny):
    features = {"x": hand_activation(), "y": hand_activation() + 1}
    objective = parse_objective(tiny, {"x": 0.5, "y": 2.0}, channels={"y": [0]})
    expected = 0.5 * layer("x")(features) + 2.0 * channel("y", [0])(features)
    assert objective(features).item() == pytest.approx(expected.item(), rel=1e-6)
    assert objective.channels == {"y": [0]}


def test_parse_layers_and_channels():
    assert parse_layers("mixed2:0.2,mixed3:3, mixed5") == {"mixed2": 0.2, "mixed3": 3.0, "mixed5": 1.0}
    assert parse_channels("mixed4:12,97") == {"mixed4": [12, 97]}
    assert parse_channels("mixed4:1;mixed5:2,3") == {"mixed4": [1], "mixed5": [2, 3]}
    for bad in ("mixed2:x", "mixed2,,mixed3", ""):
        with pytest.raises(ReverieError):
            parse_layers(bad)
    for bad in ("mixed4", "mixed4:a", ":3", "mixed4:"):
        with pytest.raises(ReverieError):
            parse_channels(bad)


def test_check_refuses_unknown_layers_and_channels(tiny):
    with pytest.raises(ReverieError, match="unknown layer 'zz'.*valid layers: conv1"):
        layer("zz").check(tiny)
    with pytest.raises(ReverieError, match="channel 16 is out of range for layer b: it has channels 0..15"):
        channel("b", [3, 16]).check(tiny)
    (layer("b") + channel("conv3", [0, 15])).check(tiny)


def test_channels_join_or_replace_the_layers(tiny):
    alone = parse_objective(tiny, channels=parse_channels("b:1,2"))
    assert alone.layers == ("b",) and alone.channels == {"b": [1, 2]}
    both = parse_objective(tiny, layers=parse_layers("c:2"), channels={"b": [1]})
    assert both.layers == ("c", "b") and both.channels == {"b": [1]}
    assert repr(both) == "2 * layer('c') + channel('b', [1])"
    assert parse_objective(tiny).layers == ("b", "c")  # the model's own dream_layers
    with pytest.raises(ReverieError, match="no layers given"):
        parse_objective(tiny, layers={})


def test_objectives_read_well_and_know_their_layers_and_channels():
    objective = layer("mixed4") + 0.5 * channel("mixed5", [12, 97]) - layer("mixed2") / 4
    assert repr(objective) == "layer('mixed4') + 0.5 * channel('mixed5', [12, 97]) - 0.25 * layer('mixed2')"
    assert objective.layers == ("mixed4", "mixed5", "mixed2")
    assert objective.channels == {"mixed5": [12, 97]}
    assert repr(-(layer("a") + layer("b"))) == "-1 * (layer('a') + layer('b'))"
    assert repr(channel("a", 3, reduction="book")) == "channel('a', [3], reduction='book')"
    with pytest.raises(TypeError):
        layer("a") + 1.0


def test_book_is_the_books_loss(tiny):
    assert repr(book()) == repr(parse_objective(tiny, BOOK_LAYERS, reduction="book", border=2))
    assert book().layers == tuple(BOOK_LAYERS)


def test_an_algebra_objective_dreams_as_the_equivalent_strings(tiny):
    image = smooth_image(48, 56)
    common = {"model": tiny, "octaves": 2, "iterations": 3, "progress": False}
    built = dream_octaves(image, objective=layer("b") + 0.5 * channel("c", [3, 5]), **common)
    strings = dream_octaves(image, layers="b:1,c:0.5", channels="c:3,5", **common)
    assert built.losses == strings.losses
    assert np.array_equal(np.asarray(built.image), np.asarray(strings.image))
    other = dream_octaves(image, objective=layer("b") - 0.5 * channel("c", [3, 5]), **common)
    assert other.losses != strings.losses


def test_an_objective_is_checked_against_the_model(tiny):
    with pytest.raises(ReverieError, match="channel 99 is out of range for layer c: it has channels 0..15"):
        dream_octaves(smooth_image(32, 32), model=tiny, objective=channel("c", 99), progress=False)
    with pytest.raises(ReverieError, match="unknown layer 'zz' for tiny; valid layers: conv1, conv2"):
        dream_octaves(smooth_image(32, 32), model=tiny, objective=layer("b") + layer("zz"), progress=False)


def test_a_guide_is_bound_to_the_dreamers_net(tiny):
    dreamer = load_dreamer(tiny, device="cpu")
    picture = smooth_image(40, 40, seed=7)
    unbound = guide("c", picture)
    with pytest.raises(ReverieError, match="bind it first"):
        unbound({"c": torch.zeros(1, 16, 2, 2)})
    bound = unbound.bind(dreamer)
    assert isinstance(bound, GuideMatch) and bound.layers == ("c",)
    expected = dreamer.features(dreamer.to_input(unbound.image[None]), ["c"])["c"]
    assert torch.equal(bound.guide, expected.float().flatten(2)[0])
    weighted = (0.5 * guide({"b": 2.0, "c": 1.0}, picture)).bind(dreamer)
    assert repr(weighted).startswith("0.5 * (2 * GuideMatch('b'")
    common = {"octaves": 2, "iterations": 3, "progress": False}
    by_objective = dreamer.octaves(smooth_image(48, 56), objective=guide("c", picture), **common)
    by_option = dreamer.octaves(smooth_image(48, 56), guide=picture, layers="c", **common)
    assert by_objective.losses == by_option.losses
    assert by_objective.losses[-1][-1] > by_objective.losses[-1][0]


def test_a_guide_and_channels_are_refused_together(tiny):
    with pytest.raises(ReverieError, match="give --guide or --channels, not both"):
        parse_objective(tiny, channels={"c": [1]}, guide=smooth_image(40, 40))
    with pytest.raises(ReverieError, match="the guide image is 8x8; it needs at least 9 pixels"):
        too_small = guide("d", smooth_image(8, 8))
        dream_octaves(smooth_image(32, 32), model=tiny, objective=too_small, progress=False)


@pytest.mark.parametrize(
    "layers, message",
    [
        ({"b": float("nan")}, "the weight of layer b must be a finite number, got nan"),
        ({"b": 1.0, "c": float("inf")}, "the weight of layer c must be a finite number, got inf"),
        ({"b": "2"}, "the weight of layer b must be a finite number, got '2'"),
        ({"b": 0, "c": 0.0}, "every layer weight is 0, so there is nothing to dream"),
        ("b:nan", "the weight of layer b must be a finite number, got nan"),
    ],
)
def test_layer_weights_must_be_finite_and_not_all_zero(tiny, layers, message):
    """A NaN or infinite weight would make every pixel NaN (a black image), all-zero weights the
    input back unchanged: both are refused in one line, from a string or a dict, for a guide too."""
    with pytest.raises(ReverieError, match=message) as error:
        dream_octaves(smooth_image(32, 32), model=tiny, layers=layers, iterations=1, progress=False)
    assert "\n" not in str(error.value)
    if isinstance(layers, dict):
        with pytest.raises(ReverieError, match=message):
            guide(layers, smooth_image(32, 32))
    assert dream_octaves(
        smooth_image(32, 32), model=tiny, layers={"b": 1, "c": -0.5}, iterations=1, progress=False
    )  # a negative weight minimizes a layer: allowed


def test_scaling_an_objective_by_a_non_finite_number_is_refused():
    for factor in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ReverieError, match="an objective's factor must be a finite number"):
            factor * layer("b")
    with pytest.raises(ReverieError, match="an objective divided by 0"):
        layer("b") / 0
    assert repr(layer("b") / 4) == "0.25 * layer('b')"
