"""What DeepDream maximizes: objectives over a convnet's activations that compose like numbers.

An `Objective` maps the activations of some layers to a scalar. They add and scale, as in
lucid (`layer_l2("mixed4") + 0.5 * channels("mixed5", [12, 97])`):

- `layer_l2(layer)`: the L2 energy of a whole layer, the book's loss. `reduction="book"` is the
  1st edition's `sum(a[:, 2:-2, 2:-2]**2) / numel(a)` (border excluded from the sum, full shape
  as the denominator), `"mean"` the 2nd edition's mean over the cropped activation, `"half_sum"`
  google/deepdream's `0.5 * sum(a**2)` (whose gradient is the activation itself).
- `channel_l2(layer, channels)`: the same, restricted to chosen channels.
- `guide_match(layer, guide_features)`: google/deepdream's guided dreaming; each position's
  feature vector is pulled toward the best-matching (largest dot product) guide feature.

Every objective is a sum of per-position terms divided by a count of the whole image, so a
tiled computation can evaluate it on overlapping windows and add the pieces: the optional `views`
say, per layer, which positions of a window to count and where the window sits in the full
activation (see `View`). Without views, the whole activation counts.

    python -m reverie.dream.objectives "mixed2:0.2,mixed3:3"   # parse and show an objective
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from reverie.errors import ReverieError, require

REDUCTIONS = ("book", "mean", "half_sum")
Features = Mapping[str, torch.Tensor]


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


class Objective:
    """A scalar function of activations: `objective(features, views=None) -> 0-d tensor`.

    `layers` are the layer names it reads (as given by the user; aliases allowed);
    `channels` maps a layer to the channel indices it reads, for validation.
    """

    def __init__(
        self,
        function: Callable[[Features, Views | None], torch.Tensor],
        layers: Sequence[str],
        description: str,
        channels: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.function = function
        self.layers = tuple(dict.fromkeys(layers))
        self.description = description
        self.channels = dict(channels or {})

    def __call__(self, features: Features, views: Views | None = None) -> torch.Tensor:
        return self.function(features, views)

    def __repr__(self) -> str:
        return f"Objective({self.description})"

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            if other == 0:
                return self
            return Objective(
                lambda f, v: self(f, v) + other, self.layers, f"{self.description} + {other}", self.channels
            )
        if not isinstance(other, Objective):
            return NotImplemented
        channels = {**self.channels}
        for layer, indices in other.channels.items():
            channels[layer] = sorted(set(channels.get(layer, [])) | set(indices))
        return Objective(
            lambda f, v: self(f, v) + other(f, v),
            self.layers + other.layers,
            f"{self.description} + {other.description}",
            channels,
        )

    __radd__ = __add__  # so that sum([...]) works

    def __mul__(self, factor: float) -> Objective:
        if not isinstance(factor, (int, float)):
            return NotImplemented
        return Objective(
            lambda f, v: factor * self(f, v), self.layers, f"{factor:g} * ({self.description})", self.channels
        )

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self

    def __sub__(self, other: Objective) -> Objective:
        return self + (-other)

    def check(self, backbone) -> None:
        """Refuse unknown layers and out-of-range channels for `backbone` (ReverieError)."""
        for layer in self.layers:
            backbone.resolve_layer(layer)
        if not self.channels:
            return
        width = {info.name: info.channels for info in backbone.layer_table()}
        for layer, indices in self.channels.items():
            count = width[backbone.resolve_layer(layer)]
            for index in indices:
                require(
                    0 <= index < count,
                    f"channel {index} is out of range for layer {layer}: it has channels 0..{count - 1}",
                )


def _l2_term(layer: str, channels: Sequence[int] | None, border: int, reduction: str) -> Callable:
    require(
        reduction in REDUCTIONS, f"unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}"
    )
    require(border >= 0, f"border must be zero or positive, got {border}")
    index = list(channels) if channels is not None else None

    def term(features: Features, views: Views | None) -> torch.Tensor:
        activation = features[layer].float()
        if index is not None:
            activation = activation[:, index]
        view = views[layer] if views is not None else None
        part = counted(activation, view, border)
        energy = part.square().sum()
        full_h, full_w = (view or View.whole(activation)).full
        n, c = activation.shape[:2]
        if reduction == "book":
            return energy / (n * c * full_h * full_w)
        if reduction == "mean":
            return energy / max(1, n * c * max(0, full_h - 2 * border) * max(0, full_w - 2 * border))
        return 0.5 * energy

    return term


def layer_l2(layer: str, weight: float = 1.0, border: int = 2, reduction: str = "book") -> Objective:
    """The L2 energy of a whole layer (the book's loss with the defaults)."""
    term = _l2_term(layer, None, border, reduction)
    return Objective(lambda f, v: weight * term(f, v), [layer], f"{weight:g} * l2({layer})")


def channel_l2(
    layer: str, channels: Sequence[int], weight: float = 1.0, border: int = 2, reduction: str = "book"
) -> Objective:
    """The L2 energy of chosen channels of a layer (denominators count those channels only)."""
    require(len(channels) > 0, f"no channels given for layer {layer}")
    term = _l2_term(layer, channels, border, reduction)
    listed = ",".join(str(i) for i in channels)
    return Objective(
        lambda f, v: weight * term(f, v), [layer], f"{weight:g} * l2({layer}:{listed})", {layer: channels}
    )


def guide_match(
    layer: str, guide_features: torch.Tensor, weight: float = 1.0, chunk: int = 4096
) -> Objective:
    """google/deepdream's guided dreaming on `layer`: sum over positions of max_j <a_p, g_j>, / numel.

    `guide_features` is the guide image's activation (1, C, h, w) at `layer`. The gradient at each
    position is the guide feature vector it matches best. Positions are processed in chunks of
    `chunk` so the (positions x guide positions) score matrix stays small.
    """
    guide = guide_features.detach().float().flatten(2)[0]  # (C, Q)

    def term(features: Features, views: Views | None) -> torch.Tensor:
        activation = features[layer].float()
        view = views[layer] if views is not None else None
        part = counted(activation, view, 0)
        vectors = part.flatten(2).transpose(1, 2).reshape(-1, part.shape[1])  # (P, C)
        g = guide.to(vectors.device)
        total = vectors.new_zeros(())
        for start in range(0, vectors.shape[0], chunk):
            total = total + (vectors[start : start + chunk] @ g).amax(dim=1).sum()
        full_h, full_w = (view or View.whole(activation)).full
        return total / (activation.shape[0] * activation.shape[1] * full_h * full_w)

    return Objective(lambda f, v: weight * term(f, v), [layer], f"{weight:g} * guide({layer})")


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


def build_objective(
    layers: Mapping[str, float],
    channels: Mapping[str, Sequence[int]] | None = None,
    border: int = 2,
    reduction: str = "book",
    guide_features: Mapping[str, torch.Tensor] | None = None,
) -> Objective:
    """The weighted sum over `layers`: guide match if guide features are given, else L2 energy
    (restricted to `channels` where a layer has some)."""
    require(len(layers) > 0, "no layers to dream with; give at least one, e.g. --layers mixed4")
    channels = channels or {}
    terms = []
    for layer, weight in layers.items():
        if guide_features is not None:
            terms.append(guide_match(layer, guide_features[layer], weight))
        elif layer in channels:
            terms.append(channel_l2(layer, channels[layer], weight, border, reduction))
        else:
            terms.append(layer_l2(layer, weight, border, reduction))
    return sum(terms[1:], terms[0])


if __name__ == "__main__":
    print(build_objective(parse_layers(sys.argv[1] if len(sys.argv) > 1 else "mixed2:0.2,mixed3:3")))
