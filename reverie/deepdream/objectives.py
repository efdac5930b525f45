"""What DeepDream maximizes: objectives over a convnet's activations that compose like numbers.

An `Objective` maps the activations of some layers to a scalar. Objectives add, subtract, negate
and scale by numbers, as in lucid:

    from reverie import objectives as obj          # this module: reverie.deepdream.objectives
    objective = obj.layer("mixed4") + 0.5 * obj.channel("mixed5", [12, 97]) - obj.layer("mixed2")
    dreamer.dream("photo.jpg", objective=objective)

- `layer(name)`: the L2 energy of a whole layer. `reduction="mean"` (the default, the 2nd
  edition's) is the mean over the activation less `border` positions at the edge; `"book"` the 1st
  edition's `sum(a[:, 2:-2, 2:-2]**2) / numel(a)` (border left out of the sum, the full shape as
  the denominator); `"half_sum"` google/deepdream's `0.5 * sum(a**2)` (whose gradient is the
  activation itself).
- `channel(name, channels)`: the same, restricted to chosen channels.
- `guide(name, image)`: google/deepdream's guided dreaming; each position's feature vector is
  pulled toward the best-matching (largest dot product) feature of the guide image. The guide's
  features come from the dreamer's own net when the objective is bound to it (`bind(dreamer)`,
  which a dream does).
- `activation(name, channels=None)`, `neuron(name, channel)`, `diversity(name)`: lucid's mean
  activation of a layer or channels, the activation at the centre position, and the diversity of a
  batch of images; what feature visualization (`reverie.deepdream.visualize`) maximizes.
- `book()`: the book's loss (1st edition): mixed2:0.2, mixed3:3, mixed4:2, mixed5:1.5, reduction
  "book", border 2.

`parse_objective` turns the command line's strings (`--layers mixed2:0.2,mixed3:3`, `--channels
mixed4:12,97`, `--guide IMAGE`) or the same as dicts into an objective. Every objective is a sum of
per-position terms divided by a count of the whole image, so a tiled computation can evaluate it on
overlapping windows and add the pieces: the optional `views` say, per layer, which positions of a
window to count and where the window sits in the full activation (see `dreamtypes.View`).

    python -m reverie.deepdream.objectives inception_v3 "mixed2:0.2,mixed3:3"   # show an objective

This module is the namespace users import; the code lives in `objective_core` (the algebra:
`Objective`, `Sum`, `Scaled`, the weight checks), `objective_terms` (the objectives themselves) and
`objective_parse` (the command line's strings, a model's default layers).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from reverie.deepdream.images import ImageSource
from reverie.deepdream.objective_core import (
    BOOK_LAYERS,
    BORDER,
    DEFAULT_BORDER,
    DEFAULT_REDUCTION,
    REDUCTIONS,
    Network,
    Objective,
    Scaled,
    Sum,
    counted,
    finite_weight,
    layer_weights,
    weighted,
)
from reverie.deepdream.objective_parse import default_layers, parse_channels, parse_layers, parse_objective
from reverie.deepdream.objective_terms import (
    GUIDE_MAX_SIZE,
    Diversity,
    Guide,
    GuideMatch,
    LayerEnergy,
    MeanActivation,
)


def activation(name: str, channels: int | Sequence[int] | None = None) -> Objective:
    """The mean activation of layer `name`, or of its channel(s) `channels` (lucid's channel objective:
    what feature visualization maximizes)."""
    return MeanActivation(name, [channels] if isinstance(channels, int) else channels)


def neuron(name: str, channels: int | Sequence[int], position: tuple[int, int] | None = None) -> Objective:
    """The activation of channel(s) `channels` of `name` at one position: `position` (row, col) of the
    activation, default its centre (lucid's neuron objective)."""
    chosen = [channels] if isinstance(channels, int) else channels
    return MeanActivation(name, chosen, position if position is not None else (-1, -1))


def diversity(name: str) -> Objective:
    """The diversity of a batch of images at layer `name` (see `Diversity`); weigh it, e.g.
    `activation("block8", 3) + 0.5 * diversity("block6")`."""
    return Diversity(name)


def layer(name: str, *, border: int = DEFAULT_BORDER, reduction: str = DEFAULT_REDUCTION) -> Objective:
    """The L2 energy of the whole layer `name` (see the module's docstring for `reduction`)."""
    return LayerEnergy(name, None, border, reduction)


def channel(
    name: str,
    channels: int | Sequence[int],
    *,
    border: int = DEFAULT_BORDER,
    reduction: str = DEFAULT_REDUCTION,
) -> Objective:
    """The L2 energy of channel(s) `channels` of layer `name`."""
    return LayerEnergy(name, [channels] if isinstance(channels, int) else channels, border, reduction)


def guide(name: str | Mapping[str, float], image: ImageSource) -> Objective:
    """Pull layer `name`'s features (or several layers', {name: weight}) toward those of `image`
    (a path, PIL image or array; shrunk to GUIDE_MAX_SIZE). Bound to a dreamer before it runs."""
    return Guide(name, image)


def book() -> Objective:
    """The book's loss (Deep Learning with Python, 1st edition, 8.2) on InceptionV3."""
    return sum(weighted(layer(name, border=2, reduction="book"), w) for name, w in BOOK_LAYERS.items())


__all__ = [
    "BOOK_LAYERS",
    "BORDER",
    "DEFAULT_BORDER",
    "DEFAULT_REDUCTION",
    "GUIDE_MAX_SIZE",
    "REDUCTIONS",
    "Diversity",
    "Guide",
    "GuideMatch",
    "LayerEnergy",
    "MeanActivation",
    "Network",
    "Objective",
    "Scaled",
    "Sum",
    "activation",
    "book",
    "channel",
    "counted",
    "default_layers",
    "diversity",
    "finite_weight",
    "guide",
    "layer",
    "layer_weights",
    "neuron",
    "parse_channels",
    "parse_layers",
    "parse_objective",
    "weighted",
]


if __name__ == "__main__":
    from reverie.deepdream.backbone import meta_backbone

    model = sys.argv[1] if len(sys.argv) > 1 else "inception_v3"
    print(parse_objective(meta_backbone(model), parse_layers(sys.argv[2]) if len(sys.argv) > 2 else None))
