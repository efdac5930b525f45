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
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import torch

from reverie.deepdream.dreamtypes import DreamNet, Features, View, Views
from reverie.deepdream.images import ImageSource, load_image
from reverie.errors import ReverieError, require
from reverie.options import check_value

if TYPE_CHECKING:
    from reverie.deepdream.backbone import Backbone, LayerInfo

REDUCTIONS = ("book", "mean", "half_sum")
DEFAULT_REDUCTION = "mean"
DEFAULT_BORDER = 0
BORDER = {"low": 0}  # the bounds of a layer's border, and of the --border option
# The book's InceptionV3 layers (1st edition)
BOOK_LAYERS = {"mixed2": 0.2, "mixed3": 3.0, "mixed4": 2.0, "mixed5": 1.5}
GUIDE_MAX_SIZE = 512  # the guide image's longest side; its features feed a (positions x positions) match


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


class _LayerChannels(Objective):
    """An objective on one layer, all of it or chosen channels (checked once here)."""

    def __init__(self, layer: str, channels: Sequence[int] | None) -> None:
        if channels is not None:
            require(len(channels) > 0, f"no channels given for layer {layer}")
        self.layer = layer
        self.index = [int(i) for i in channels] if channels is not None else None
        self.layers = (layer,)

    @property
    def channels(self) -> dict[str, list[int]]:
        return {self.layer: list(self.index)} if self.index is not None else {}

    def selected(self, features: Features) -> torch.Tensor:
        """The layer's activation in float32, cut to the chosen channels."""
        activation = features[self.layer].float()
        return activation[:, self.index] if self.index is not None else activation


class LayerEnergy(_LayerChannels):
    """The L2 energy of a layer, or of chosen channels of it (denominators count those channels only)."""

    def __init__(
        self,
        layer: str,
        channels: Sequence[int] | None = None,
        border: int = DEFAULT_BORDER,
        reduction: str = DEFAULT_REDUCTION,
    ) -> None:
        check_value("--reduction", reduction, choices=REDUCTIONS)
        check_value("--border", border, kind=int, **BORDER)
        super().__init__(layer, channels)
        self.border = border
        self.reduction = reduction

    def __call__(self, features: Features, views: Views | None = None) -> torch.Tensor:
        activation = self.selected(features)
        view = views[self.layer] if views is not None else None
        energy = counted(activation, view, self.border).square().sum()
        full_h, full_w = (view or View.whole(activation)).full
        n, c = activation.shape[:2]
        if self.reduction == "book":
            return energy / (n * c * full_h * full_w)
        if self.reduction == "mean":
            inner_h, inner_w = max(0, full_h - 2 * self.border), max(0, full_w - 2 * self.border)
            return energy / max(1, n * c * inner_h * inner_w)
        return 0.5 * energy

    def __repr__(self) -> str:
        settings = ""
        if self.border != DEFAULT_BORDER:
            settings += f", border={self.border}"
        if self.reduction != DEFAULT_REDUCTION:
            settings += f", reduction={self.reduction!r}"
        if self.index is None:
            return f"layer({self.layer!r}{settings})"
        return f"channel({self.layer!r}, {self.index}{settings})"


class GuideMatch(Objective):
    """google/deepdream's guided dreaming on one layer, given the guide's activation there.

    Sum over positions of max_j <a_p, g_j>, divided by the activation's numel: the gradient at each
    position is the guide feature vector it matches best. `features` is the guide image's
    activation (1, C, h, w); positions are matched in chunks of `chunk` so the (positions x guide
    positions) score matrix stays small.
    """

    def __init__(self, layer: str, features: torch.Tensor, chunk: int = 4096) -> None:
        self.layer = layer
        self.guide = features.detach().float().flatten(2)[0]  # (C, Q)
        self.chunk = chunk
        self.layers = (layer,)

    def __call__(self, features: Features, views: Views | None = None) -> torch.Tensor:
        activation = features[self.layer].float()
        view = views[self.layer] if views is not None else None
        part = counted(activation, view, 0)
        vectors = part.flatten(2).transpose(1, 2).reshape(-1, part.shape[1])  # (P, C)
        guide = self.guide.to(vectors.device)
        total = vectors.new_zeros(())
        for start in range(0, vectors.shape[0], self.chunk):
            total = total + (vectors[start : start + self.chunk] @ guide).amax(dim=1).sum()
        full_h, full_w = (view or View.whole(activation)).full
        return total / (activation.shape[0] * activation.shape[1] * full_h * full_w)

    def __repr__(self) -> str:
        channels, positions = self.guide.shape
        return f"GuideMatch({self.layer!r}, {channels} channels x {positions} guide positions)"


class Guide(Objective):
    """Guided dreaming toward an image's features at one or more (weighted) layers; see `guide`."""

    def __init__(self, layers: str | Mapping[str, float], image: ImageSource) -> None:
        self.weights = {layers: 1.0} if isinstance(layers, str) else layer_weights(layers)
        require(len(self.weights) > 0, "a guide needs at least one layer, e.g. guide('mixed4', image)")
        self.image = load_image(image, GUIDE_MAX_SIZE)  # a bad file is refused now, before any weights load
        self.layers = tuple(self.weights)

    def __call__(self, features: Features, views: Views | None = None) -> torch.Tensor:
        raise ReverieError("a guide needs its image's features: bind it first, objective.bind(dreamer)")

    def bind(self, dreamer: DreamNet, dtype: torch.dtype | None = None) -> Objective:
        layers = list(self.weights)
        need = dreamer.min_input_size(layers)
        height, width = self.image.shape[-2:]
        require(
            min(height, width) >= need,
            f"the guide image is {width}x{height}; "
            f"it needs at least {need} pixels on its shorter side for these layers",
        )
        features = dreamer.features(dreamer.to_input(self.image[None]), layers, dtype)
        return sum(_weighted(GuideMatch(layer, features[layer]), w) for layer, w in self.weights.items())

    def __repr__(self) -> str:
        height, width = self.image.shape[-2:]
        layers = self.layers[0] if self.weights == {self.layers[0]: 1.0} else self.weights
        return f"guide({layers!r}, <image {width}x{height}>)"


class MeanActivation(_LayerChannels):
    """lucid's channel objective: the mean activation of chosen channels (or the whole layer), or of
    one position of them (a neuron). Unlike the L2 energy it has a sign: it asks for what excites."""

    def __init__(
        self, layer: str, channels: Sequence[int] | None = None, position: tuple[int, int] | None = None
    ) -> None:
        super().__init__(layer, channels)
        self.position = position  # (row, col) of the activation, None: every position; see `neuron`

    def __call__(self, features: Features, views: Views | None = None) -> torch.Tensor:
        activation = self.selected(features)
        if self.position == (-1, -1):  # the centre, wherever it is at this size
            h, w = activation.shape[-2:]
            return activation[..., h // 2, w // 2].mean()
        if self.position is not None:
            row, col = self.position
            return activation[..., row, col].mean()
        view = views[self.layer] if views is not None else None
        full_h, full_w = (view or View.whole(activation)).full
        n, c = activation.shape[:2]
        return counted(activation, view, 0).sum() / (n * c * full_h * full_w)

    def __repr__(self) -> str:
        which = "" if self.index is None else f", {self.index}"
        if self.position is not None:
            where = "" if self.position == (-1, -1) else f", position={self.position}"
            return f"neuron({self.layer!r}{which}{where})"
        return f"activation({self.layer!r}{which})"


class Diversity(Objective):
    """lucid's diversity term over a batch: minus the mean cosine similarity between the images' Gram
    matrices at `layer` (0 for a batch of one). Added to an objective, it pushes a batch of images
    for the same channel apart in style."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.layers = (layer,)

    def __call__(self, features: Features, views: Views | None = None) -> torch.Tensor:
        activation = features[self.layer].float()
        n, c = activation.shape[:2]
        if n < 2:
            return activation.new_zeros(())
        flat = activation.reshape(n, c, -1)
        gram = torch.nn.functional.normalize((flat @ flat.transpose(1, 2)).reshape(n, -1), dim=1)
        similarity = gram @ gram.T
        return -(similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1))

    def __repr__(self) -> str:
        return f"diversity({self.layer!r})"


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
    return sum(_weighted(layer(name, border=2, reduction="book"), w) for name, w in BOOK_LAYERS.items())


def _weighted(objective: Objective, weight: float) -> Objective:
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
    `parse_layers` and `parse_channels`, as resolve_options does).

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
        _weighted(LayerEnergy(name, channels.get(name), border, reduction), weight)
        for name, weight in weights.items()
    )


if __name__ == "__main__":
    from reverie.deepdream.backbone import meta_backbone

    model = sys.argv[1] if len(sys.argv) > 1 else "inception_v3"
    print(parse_objective(meta_backbone(model), parse_layers(sys.argv[2]) if len(sys.argv) > 2 else None))
