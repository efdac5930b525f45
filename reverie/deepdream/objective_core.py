"""The algebra of DeepDream objectives: the `Objective` base class, its sums and scalings, and the
checks on weights that every objective shares.

    from reverie.deepdream.objective_core import Objective, Sum, Scaled
    total = first + 0.5 * second - third      # a Sum of Scaled terms

The concrete objectives (layer energy, guides, activations) are `reverie.deepdream.objective_terms`;
users reach all of them through `reverie.objectives` (`reverie.deepdream.objectives`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import torch

from reverie.deepdream.dreamtypes import DreamNet, Features, View, Views
from reverie.errors import ReverieError, require

if TYPE_CHECKING:
    from reverie.deepdream.backbone import LayerInfo

REDUCTIONS = ("book", "mean", "half_sum")
DEFAULT_REDUCTION = "mean"
DEFAULT_BORDER = 0
BORDER = {"low": 0}  # the bounds of a layer's border, and of the --border option
# The book's InceptionV3 layers (1st edition)
BOOK_LAYERS = {"mixed2": 0.2, "mixed3": 3.0, "mixed4": 2.0, "mixed5": 1.5}


def counted(activation: torch.Tensor, view: View | None, border: int) -> torch.Tensor:
    """The part of `activation` that counts: its view, less `border` positions at the full image's edge."""
    view = view or View.whole(activation)
    bounds = []
    for (start, stop), offset, full in zip((view.rows, view.cols), view.offset, view.full):
        # full-image range [border, full - border) in window coordinates, intersected with the view
        low = max(start, border - offset)
        high = min(stop, full - border - offset)
        bounds.append((low, max(low, high)))
    (r0, r1), (c0, c1) = bounds
    return activation[..., r0:r1, c0:c1]


class Network(Protocol):
    """What an objective is checked against: a Backbone, or a Dreamer (which caches the table)."""

    def resolve_layer(self, layer: str) -> str: ...

    def layer_table(self) -> list[LayerInfo]: ...


class Objective:
    """A scalar function of activations: `objective(features, views=None) -> 0-d tensor`.

    `layers` are the layer names it reads (as the user wrote them; aliases allowed), `channels`
    maps a layer to the channel indices it reads.
    """

    layers: tuple[str, ...] = ()

    @property
    def channels(self) -> dict[str, list[int]]:
        return {}

    def __call__(self, features: Features, views: Views | None = None) -> torch.Tensor:
        raise NotImplementedError

    def bind(self, dreamer: DreamNet, dtype: torch.dtype | None = None) -> Objective:
        """The objective ready to run on `dreamer` in `dtype`'s autocast (a guide's features
        computed); most are ready as they are."""
        return self

    def check(self, network: Network) -> None:
        """Refuse unknown layers and out-of-range channels for `network` (ReverieError)."""
        for layer in self.layers:
            network.resolve_layer(layer)
        if not self.channels:
            return
        width = {info.name: info.channels for info in network.layer_table()}
        for layer, indices in self.channels.items():
            count = width[network.resolve_layer(layer)]
            for index in indices:
                require(
                    0 <= index < count,
                    f"channel {index} is out of range for layer {layer}: it has channels 0..{count - 1}",
                )

    def __add__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum([self, other])

    def __radd__(self, other: object) -> Objective:
        if other == 0:  # so that sum([...]) works
            return self
        return NotImplemented

    def __sub__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum([self, -other])

    def __mul__(self, factor: float) -> Objective:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            return NotImplemented
        return Scaled(self, float(factor))

    __rmul__ = __mul__

    def __truediv__(self, divisor: float) -> Objective:
        if isinstance(divisor, bool) or not isinstance(divisor, (int, float)):
            return NotImplemented
        require(finite_weight(divisor, "an objective's divisor") != 0, "an objective divided by 0")
        return Scaled(self, 1.0 / divisor)

    def __neg__(self) -> Objective:
        return Scaled(self, -1.0)


class Sum(Objective):
    """The sum of several objectives (nested sums are flattened)."""

    def __init__(self, terms: Iterable[Objective]) -> None:
        self.terms: tuple[Objective, ...] = tuple(
            part for term in terms for part in (term.terms if isinstance(term, Sum) else (term,))
        )
        require(len(self.terms) > 0, "an empty sum of objectives; give at least one")
        self.layers = tuple(dict.fromkeys(layer for term in self.terms for layer in term.layers))

    @property
    def channels(self) -> dict[str, list[int]]:
        merged: dict[str, set[int]] = {}
        for term in self.terms:
            for layer, indices in term.channels.items():
                merged.setdefault(layer, set()).update(indices)
        return {layer: sorted(indices) for layer, indices in merged.items()}

    def __call__(self, features: Features, views: Views | None = None) -> torch.Tensor:
        total = self.terms[0](features, views)
        for term in self.terms[1:]:
            total = total + term(features, views)
        return total

    def bind(self, dreamer: DreamNet, dtype: torch.dtype | None = None) -> Objective:
        bound = [term.bind(dreamer, dtype) for term in self.terms]
        return self if all(a is b for a, b in zip(bound, self.terms)) else Sum(bound)

    def __repr__(self) -> str:
        text = repr(self.terms[0])
        for term in self.terms[1:]:
            if isinstance(term, Scaled) and term.factor < 0:
                text += f" - {Scaled(term.objective, -term.factor)!r}"
            else:
                text += f" + {term!r}"
        return text


class Scaled(Objective):
    """An objective times a number."""

    def __init__(self, objective: Objective, factor: float) -> None:
        factor = finite_weight(factor, "an objective's factor")
        if isinstance(objective, Scaled):
            objective, factor = objective.objective, objective.factor * factor
        self.objective = objective
        self.factor = factor
        self.layers = objective.layers

    @property
    def channels(self) -> dict[str, list[int]]:
        return self.objective.channels

    def __call__(self, features: Features, views: Views | None = None) -> torch.Tensor:
        return self.factor * self.objective(features, views)

    def bind(self, dreamer: DreamNet, dtype: torch.dtype | None = None) -> Objective:
        bound = self.objective.bind(dreamer, dtype)
        return self if bound is self.objective else Scaled(bound, self.factor)

    def __repr__(self) -> str:
        inner = f"({self.objective!r})" if isinstance(self.objective, Sum) else repr(self.objective)
        return inner if self.factor == 1 else f"{self.factor:g} * {inner}"


def weighted(objective: Objective, weight: float) -> Objective:
    return objective if weight == 1 else weight * objective


def finite_weight(weight: object, what: str) -> float:
    """`weight` as a float, refused in one line unless it is a finite number (a NaN or infinite weight
    makes every pixel NaN: a black image)."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
        raise ReverieError(f"{what} must be a finite number, got {weight!r}")
    return float(weight)


def layer_weights(weights: Mapping[str, object]) -> dict[str, float]:
    """{layer: weight} checked: every weight a finite number, not all of them 0 (nothing to maximize:
    the image would come back unchanged). Negative weights are allowed (they minimize a layer)."""
    checked = {name: finite_weight(weight, f"the weight of layer {name}") for name, weight in weights.items()}
    require(
        not checked or any(checked.values()),
        "every layer weight is 0, so there is nothing to dream; give at least one layer a non-zero weight",
    )
    return checked
