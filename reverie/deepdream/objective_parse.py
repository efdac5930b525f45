"""Objectives from the command line's words: `--layers mixed2:0.2,mixed3:3`, `--channels
mixed4:12,97` and `--guide IMAGE` (or the same as dicts), and a model's default layers.

    from reverie.deepdream.objective_parse import parse_layers, parse_objective
    objective = parse_objective(backbone, parse_layers("mixed2:0.2,mixed3:3"))   # a weighted Sum

`DreamOptions` (reverie.deepdream.options) reads its strings with `parse_layers` / `parse_channels`;
the dreamer turns the resolved options into an objective with `parse_objective`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from reverie.deepdream.images import ImageSource
from reverie.deepdream.objective_core import (
    BOOK_LAYERS,
    DEFAULT_BORDER,
    DEFAULT_REDUCTION,
    Objective,
    layer_weights,
    weighted,
)
from reverie.deepdream.objective_terms import Guide, LayerEnergy
from reverie.errors import ReverieError, require

if TYPE_CHECKING:
    from reverie.deepdream.backbone import Backbone


def parse_layers(text: str) -> dict[str, float]:
    """'mixed2:0.2,mixed3:3,mixed5' -> {'mixed2': 0.2, 'mixed3': 3.0, 'mixed5': 1.0}."""
    layers: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        require(bool(item), f"empty layer name in {text!r}; write layers as mixed2:0.2,mixed3:3")
        name, _, weight = item.partition(":")
        try:
            layers[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise ReverieError(
                f"layer weight {weight!r} in {text!r} is not a number; write mixed2:0.2"
            ) from None
    return layers


def parse_channels(text: str) -> dict[str, list[int]]:
    """'mixed4:12,97' -> {'mixed4': [12, 97]}; several layers separated by ';' or spaces."""
    channels: dict[str, list[int]] = {}
    for item in text.replace(";", " ").split():
        name, sep, listed = item.partition(":")
        require(
            bool(sep and listed and name), f"write channels as LAYER:I,J (e.g. mixed4:12,97), got {item!r}"
        )
        try:
            indices = [int(i) for i in listed.split(",")]
        except ValueError:
            raise ReverieError(f"channel indices in {item!r} must be integers, e.g. mixed4:12,97") from None
        channels.setdefault(name, []).extend(indices)
    require(bool(channels), f"no channels given in {text!r}; write LAYER:I,J (e.g. mixed4:12,97)")
    return channels


def default_layers(backbone: Backbone) -> dict[str, float]:
    """The model's `dream_layers` if it declares some, else the book's if it has them, else its
    middle stage."""
    declared = getattr(backbone, "dream_layers", None)
    if declared:
        return dict(declared)
    stages = backbone.stage_names()
    if set(BOOK_LAYERS) <= set(stages) | set(backbone.aliases):
        return dict(BOOK_LAYERS)
    return {stages[len(stages) // 2]: 1.0}


def parse_objective(
    backbone: Backbone,
    layers: Mapping[str, float] | None = None,
    channels: Mapping[str, Sequence[int]] | None = None,
    guide: ImageSource | None = None,
    reduction: str = DEFAULT_REDUCTION,
    border: int = DEFAULT_BORDER,
) -> Objective:
    """The objective that `--layers`, `--channels` and `--guide` describe (their strings read by
    `parse_layers` and `parse_channels`, as resolving DreamOptions does).

    The weighted sum over `layers` of each layer's energy (restricted to its `channels` where it has
    some), or with `guide`, of the match with the guide image's features. Layers named only in
    `channels` join with weight 1; with neither, `backbone`'s default layers. Names are not checked
    here (`Objective.check` does that).
    """
    channels = dict(channels or {})
    if layers is not None:
        require(len(layers) > 0, "no layers given; name at least one, e.g. mixed4:1")
    weights = layer_weights(layers) if layers is not None else ({} if channels else default_layers(backbone))
    for name in channels:
        weights.setdefault(name, 1.0)
    if guide is not None:
        require(not channels, "a guide matches whole layers; give --guide or --channels, not both")
        return Guide(weights, guide)
    return sum(
        weighted(LayerEnergy(name, channels.get(name), border, reduction), weight)
        for name, weight in weights.items()
    )
