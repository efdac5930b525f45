"""Tiled gradients: the objective's gradient for an image of any size, in memory bounded by the tile.

    loss, grad = tiled_loss_and_gradient(dreamer, objective, x, tile=512, margin=64, phase=(0, 0))

The image is cut into cores of `tile` pixels (the grid shifted by `phase`); each core is run with
`margin` pixels of context around it and only the activations of its own core count (through the
`dreamtypes.View`s), so every activation counts once. With a margin at least the network's
receptive field this equals the untiled gradient; with less it differs only near core edges, and a
random phase each step (`dream(..., tile=512)` draws one) keeps those edges from lining up into seams.
"""

from __future__ import annotations

import itertools

import torch

from reverie.deepdream.dreamtypes import DreamNet, View
from reverie.deepdream.objectives import Objective


def tiled_loss_and_gradient(
    dreamer: DreamNet,
    objective: Objective,
    x: torch.Tensor,
    tile: int,
    margin: int,
    phase: tuple[int, int] = (0, 0),
    dtype: torch.dtype | None = None,
) -> tuple[float, torch.Tensor]:
    """The objective at `x` (1, 3, H, W) and its float32 gradient, computed window by window."""
    height, width = x.shape[-2:]
    strides = dreamer.strides(objective.layers)
    align = max(strides.values())
    tile = max(align, _round_up(tile, align))
    margin = _round_up(margin, align)
    full = dreamer.activation_shapes(objective.layers, (height, width))
    minimum = dreamer.min_input_size(objective.layers)
    total = 0.0
    grad = torch.zeros_like(x)
    phase_r, phase_c = (p % tile // align * align for p in phase)
    for r0, r1 in _cores(height, tile, phase_r):
        for c0, c1 in _cores(width, tile, phase_c):
            w_r0, w_r1 = _window(r0, r1, height, margin, minimum, align)
            w_c0, w_c1 = _window(c0, c1, width, margin, minimum, align)
            views = {}
            for layer, stride in strides.items():
                full_h, full_w = full[layer]
                views[layer] = View(
                    rows=(
                        r0 // stride - w_r0 // stride,
                        (r1 // stride if r1 < height else full_h) - w_r0 // stride,
                    ),
                    cols=(
                        c0 // stride - w_c0 // stride,
                        (c1 // stride if c1 < width else full_w) - w_c0 // stride,
                    ),
                    offset=(w_r0 // stride, w_c0 // stride),
                    full=(full_h, full_w),
                )
            window = x[..., w_r0:w_r1, w_c0:w_c1]
            loss, window_grad = dreamer.loss_and_gradient(objective, window, views, dtype)
            total += loss
            grad[..., w_r0:w_r1, w_c0:w_c1] += window_grad
    return total, grad


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _cores(length: int, tile: int, phase: int) -> list[tuple[int, int]]:
    """Half-open ranges cutting [0, length) at phase, phase + tile, ... (multiples of the alignment).

    No piece is longer than `tile`, so the largest window, and with it peak memory, is bounded by
    tile + 2 * margin; the end pieces may be thin (a small, cheap window).
    """
    cuts = [0] + [c for c in range(phase, length, tile) if 0 < c < length] + [length]
    return list(itertools.pairwise(cuts))


def _window(start: int, stop: int, length: int, margin: int, minimum: int, align: int) -> tuple[int, int]:
    """The core [start, stop) with `margin` pixels of context, widened to at least `minimum` pixels.

    Both the start and the distance to the image's end are multiples of `align`, so a network
    whose padding depends on the input size (TensorFlow 'same') sees the window on the same
    pixel grid as the whole image.
    """
    low = max(0, start - margin)
    high = length - (length - min(length, stop + margin)) // align * align
    while high - low < minimum and (low > 0 or high < length):
        low, high = max(0, low - align), min(length, high + align)
    return low, high
