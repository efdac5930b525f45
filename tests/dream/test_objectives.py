"""Objectives: the book's loss by hand, other reductions, channels, guides, composition, views."""

from __future__ import annotations

import pytest
import torch

from reverie.dream.objectives import (
    View,
    build_objective,
    channel_l2,
    guide_match,
    layer_l2,
    parse_channels,
    parse_layers,
)
from reverie.errors import ReverieError


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
    value = layer_l2("x", weight=3.0)({"x": a})
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_other_reductions():
    a = hand_activation()
    cropped = a[..., 2:-2, 2:-2]
    assert layer_l2("x", reduction="mean")({"x": a}).item() == pytest.approx(
        cropped.square().mean().item(), rel=1e-6
    )
    half = layer_l2("x", border=0, reduction="half_sum")({"x": a})
    assert half.item() == pytest.approx(0.5 * a.square().sum().item(), rel=1e-6)
    x = a.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(layer_l2("x", border=0, reduction="half_sum")({"x": x}), x)
    assert torch.allclose(grad, a)  # google/deepdream's objective_L2: the gradient is the activation


def test_channels_only_read_their_channels():
    a = hand_activation()
    value = channel_l2("x", [1], weight=2.0)({"x": a})
    expected = 2.0 * a[:, 1:2, 2:-2, 2:-2].square().sum() / (1 * 1 * 6 * 7)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_objectives_compose_like_numbers():
    features = {"x": hand_activation(), "y": hand_activation().flip(-1) * 2}
    a, b = layer_l2("x"), channel_l2("y", [0])
    combined = a + 0.5 * b - b
    expected = a(features) + 0.5 * b(features) - b(features)
    assert combined(features).item() == pytest.approx(expected.item(), rel=1e-6)
    assert combined.layers == ("x", "y")
    assert sum([a, b])(features).item() == pytest.approx((a(features) + b(features)).item(), rel=1e-6)


def test_guide_match_picks_the_best_guide_vector():
    # two positions, channels 2; guide vectors (1, 0) and (0, 2)
    activation = torch.tensor([[3.0, 0.0], [1.0, 1.0]]).reshape(1, 2, 1, 2)  # p0 = (3, 1), p1 = (0, 1)
    guide = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).reshape(1, 2, 1, 2)
    # p0: max(3*1 + 1*0, 3*0 + 1*2) = 3; p1: max(0, 2) = 2; divided by numel 4
    x = activation.clone().requires_grad_(True)
    value = guide_match("x", guide)({"x": x})
    assert value.item() == pytest.approx((3 + 2) / 4)
    (grad,) = torch.autograd.grad(value, x)
    assert torch.allclose(grad[0, :, 0, 0], torch.tensor([1.0, 0.0]) / 4)  # p0 pulled toward guide vector 0
    assert torch.allclose(grad[0, :, 0, 1], torch.tensor([0.0, 2.0]) / 4)  # p1 toward guide vector 1


@pytest.mark.parametrize("reduction", ["book", "mean", "half_sum"])
def test_views_split_the_sum_exactly(reduction):
    """Evaluating on overlapping windows, each counting its own core, adds up to the whole."""
    a = torch.randn(1, 3, 10, 9, generator=torch.Generator().manual_seed(0))
    whole = layer_l2("x", reduction=reduction)({"x": a}).item()
    pieces = 0.0
    for r0, r1 in ((0, 4), (4, 10)):
        for c0, c1 in ((0, 5), (5, 9)):
            w_r0, w_c0 = max(0, r0 - 2), max(0, c0 - 2)  # windows with 2 positions of context
            window = a[..., w_r0 : min(10, r1 + 2), w_c0 : min(9, c1 + 2)]
            view = View((r0 - w_r0, r1 - w_r0), (c0 - w_c0, c1 - w_c0), (w_r0, w_c0), (10, 9))
            pieces += layer_l2("x", reduction=reduction)({"x": window}, {"x": view}).item()
    assert pieces == pytest.approx(whole, rel=1e-5)


def test_build_objective_uses_channels_and_weights():
    features = {"x": hand_activation(), "y": hand_activation() + 1}
    objective = build_objective({"x": 0.5, "y": 2.0}, channels={"y": [0]})
    expected = 0.5 * layer_l2("x")(features) + 2.0 * channel_l2("y", [0])(features)
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
        layer_l2("zz").check(tiny)
    with pytest.raises(ReverieError, match="channel 16 is out of range for layer b: it has channels 0..15"):
        channel_l2("b", [3, 16]).check(tiny)
    (layer_l2("b") + channel_l2("conv3", [0, 15])).check(tiny)
