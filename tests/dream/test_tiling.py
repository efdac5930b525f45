"""Tiled gradients: equal to the whole image's with enough margin, on tiny nets and on EfficientNet's
TensorFlow padding; a tiled dream equals an untiled one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reverie.deepdream.dreamer import dream_octaves
from reverie.deepdream.images import load_image
from reverie.deepdream.octaves import loss_and_gradient
from reverie.deepdream.tiling import tiled_loss_and_gradient

from .conftest import TINY_BOOK_LAYERS, cpu_plan, smooth_image, step_context


@pytest.mark.parametrize("phase", [(0, 0), (8, 24)])
def test_tiled_gradients_equal_untiled(tiny, phase):
    plan = cpu_plan(tiny, "book", layers=TINY_BOOK_LAYERS)
    dreamer, objective = plan.dreamer, plan.objective
    x = torch.randn(1, 3, 96, 80, generator=torch.Generator().manual_seed(1))
    loss, grad = dreamer.loss_and_gradient(objective, x)
    tiled_loss, tiled_grad = tiled_loss_and_gradient(dreamer, objective, x, tile=32, margin=16, phase=phase)
    assert tiled_loss == pytest.approx(loss, rel=1e-5)
    assert torch.allclose(tiled_grad, grad, atol=1e-5 * grad.abs().max().item())
    _, no_margin = tiled_loss_and_gradient(dreamer, objective, x, tile=32, margin=0, phase=phase)
    assert not torch.allclose(no_margin, grad, atol=1e-2 * grad.abs().max().item())  # the margin matters


def test_tiled_dream_equals_untiled_dream(tiny):
    image = smooth_image(150, 180)  # several 64-pixel tiles (the smallest --tile) at both octaves
    plain = dream_octaves(image, model=tiny, jitter=0, octaves=2, iterations=3, progress=False)
    tiled = dream_octaves(
        image, model=tiny, jitter=0, octaves=2, iterations=3, tile=64, tile_margin=24, progress=False
    )
    assert np.abs(np.asarray(plain.image).astype(int) - np.asarray(tiled.image)).max() <= 1


def test_tiled_gradients_go_back_through_the_jitter(tiny):
    """With tiling, the transforms apply to the whole image and its tiled gradient flows back through
    them: the same as untiled for the same seeded roll."""
    x = torch.randn(1, 3, 150, 180, generator=torch.Generator().manual_seed(1))
    untiled = cpu_plan(tiny, jitter=5)
    tiled = cpu_plan(tiny, jitter=5, tile=64, tile_margin=24)
    loss, grad = loss_and_gradient(untiled, x, step_context(untiled, x, seed=3))
    tiled_loss, tiled_grad = loss_and_gradient(tiled, x, step_context(tiled, x, seed=3))
    assert tiled_loss == pytest.approx(loss, rel=1e-5)
    assert torch.allclose(tiled_grad, grad, atol=1e-5 * grad.abs().max().item())
    unrolled = cpu_plan(tiny, jitter=0)
    _, plain_grad = loss_and_gradient(unrolled, x, step_context(unrolled, x, seed=3))
    assert not torch.allclose(plain_grad, grad, atol=1e-2 * grad.abs().max().item())  # the roll mattered


def test_tiles_follow_the_whole_images_pixel_grid(lite0, hopper):
    """EfficientNet pads like TensorFlow ('same', depending on the input size): windows must sit on
    the whole image's grid (171 px wide is odd at every level) for tiled gradients to match."""
    objective = lite0.plan(layers="block5").objective
    x = lite0.to_input(load_image(hopper.permute(1, 2, 0).numpy(), max_size=200)[None])
    loss, grad = lite0.loss_and_gradient(objective, x)
    tiled_loss, tiled_grad = tiled_loss_and_gradient(lite0, objective, x, tile=64, margin=64, phase=(16, 32))
    assert tiled_loss == pytest.approx(loss, rel=1e-5)
    assert ((tiled_grad - grad).norm() / grad.norm()).item() < 1e-4
