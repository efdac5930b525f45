"""The objectives a dream or a visualization maximizes: a layer's L2 energy (whole or chosen
channels), google/deepdream's guide match, lucid's mean activation, neuron and batch diversity.

    from reverie.deepdream.objective_terms import LayerEnergy, MeanActivation
    LayerEnergy("mixed4", [12, 97], border=2, reduction="book")(features)    # a 0-d tensor

Each is an `objective_core.Objective`, so they compose as numbers; `reverie.objectives` builds them
with short functions (`layer`, `channel`, `guide`, `activation`, `neuron`, `diversity`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from reverie.deepdream.dreamtypes import DreamNet, Features, View, Views
from reverie.deepdream.images import ImageSource, load_image
from reverie.deepdream.objective_core import (
    BORDER,
    DEFAULT_BORDER,
    DEFAULT_REDUCTION,
    REDUCTIONS,
    Objective,
    counted,
    layer_weights,
    weighted,
)
from reverie.errors import ReverieError, require
from reverie.options import check_value

GUIDE_MAX_SIZE = 512  # the guide image's longest side; its features feed a (positions x positions) match


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
        return sum(weighted(GuideMatch(layer, features[layer]), w) for layer, w in self.weights.items())

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
