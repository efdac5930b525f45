"""The types a dream's parts pass each other: an activation's view, a step's context, the network.

The dreamer, the objectives, the octave loop, the tiling and the transforms all use these; they
live here, below all of them and importing none, so that no module of the dream imports another
(or the dreamer) just for a type. `DreamNet` is what those parts call on a network (a
`reverie.deepdream.dreamer.Dreamer` is one); `Loss` what a network evaluates (an
`reverie.deepdream.objectives.Objective` is one).

    from reverie.deepdream.dreamtypes import DreamNet, StepContext, View
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from reverie.errors import ReverieError

Features = Mapping[str, torch.Tensor]  # layer name -> its activation (N, C, h, w)


@dataclass(frozen=True)
class View:
    """Which positions of a (window) activation count, and where it sits in the full activation.

    `rows`/`cols` are half-open ranges in the window's own coordinates; `offset` is the full
    activation's coordinates of the window's (0, 0); `full` is the full activation's (height, width).
    """

    rows: tuple[int, int]
    cols: tuple[int, int]
    offset: tuple[int, int]
    full: tuple[int, int]

    @staticmethod
    def whole(activation: torch.Tensor) -> View:
        h, w = activation.shape[-2:]
        return View((0, h), (0, w), (0, 0), (h, w))


Views = Mapping[str, View]


class Loss(Protocol):
    """A scalar of some layers' activations: the layers it reads, and its value on their features."""

    layers: tuple[str, ...]

    def __call__(self, features: Features, views: Views | None = None) -> torch.Tensor: ...


class DreamNet(Protocol):
    """What objectives, transforms, the octave loop and tiling use of a network (see Dreamer)."""

    name: str

    def to_input(self, image01: torch.Tensor) -> torch.Tensor: ...

    def to_image(self, x: torch.Tensor) -> torch.Tensor: ...

    def clip_(self, x: torch.Tensor) -> torch.Tensor: ...

    def features(
        self, x: torch.Tensor, layers: Sequence[str], dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]: ...

    def loss_and_gradient(
        self,
        objective: Loss,
        x: torch.Tensor,
        views: Views | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[float, torch.Tensor]: ...

    def min_input_size(self, layers: Sequence[str]) -> int: ...

    def activation_shapes(
        self, layers: Sequence[str], size: tuple[int, int]
    ) -> dict[str, tuple[int, int]]: ...

    def strides(self, layers: Sequence[str]) -> dict[str, int]: ...


@dataclass
class StepContext:
    """What a transform may use at a step: randomness, conversions and bounds, the original image.

    `original` is a dream's input image in the network's input space at this octave's size
    (1, 3, h, w), None in a visualization (rendered from noise); `octave` counts from 0, smallest first.
    """

    generator: torch.Generator
    dreamer: DreamNet
    original: torch.Tensor | None = None
    octave: int = 0

    @functools.cached_property
    def original01(self) -> torch.Tensor:
        """`original` as pixels in [0, 1]."""
        if self.original is None:
            raise ReverieError("this transform needs a dream's original image; a visualization has none")
        return self.dreamer.to_image(self.original)
