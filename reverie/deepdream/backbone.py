"""The convnets DeepDream runs in reverse: a common interface and the registry of models.

A `Backbone` is an ImageNet convnet seen as an ordered chain of named stages (for
InceptionV3: Conv2d_1a_3x3 ... Mixed_7c). `features(x, layers)` runs the chain only as far as
the deepest requested layer and returns those activations. Layer channel counts, strides and
the smallest usable input size are found by running the chain on the `meta` device (shapes
only, no arithmetic), so each model only has to declare its stages.

    python -m reverie.deepdream.backbone inception_v3    # print the layer table

Models live in their own modules (`reverie.deepdream.inception_v3`, ...), each exposing
`build() -> Backbone` and `load_weights(model, path_or_None)`; `load_backbone(name)` ties
them together.
"""

from __future__ import annotations

import copy
import importlib
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from reverie.errors import ReverieError

# model name -> module that defines it
MODEL_MODULES = {
    "inception_v3": "reverie.deepdream.inception_v3",
    "googlenet": "reverie.deepdream.googlenet",
    "efficientnet_lite0": "reverie.deepdream.efficientnet_lite",
    "efficientnet_lite1": "reverie.deepdream.efficientnet_lite",
    "efficientnet_lite2": "reverie.deepdream.efficientnet_lite",
    "vgg16": "reverie.deepdream.vgg",
    "vgg19": "reverie.deepdream.vgg",
    "resnet50": "reverie.deepdream.resnet",
}

PROBE_SIZE = 512
PROBE_STEP = 64  # a multiple of every stride: stride = PROBE_STEP / (growth of the output side)

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class LayerInfo:
    """One usable layer: its name, other accepted names, output channels and stride."""

    name: str
    aliases: tuple[str, ...]
    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class: subclasses build their modules and list them in `named_stages()`."""

    name: str = "backbone"
    # other accepted names -> stage name (e.g. Keras's "mixed3" -> "Mixed_6a")
    aliases: ClassVar[dict[str, str]] = {}
    # every BatchNorm2d directly follows the Conv2d declared before it, so `fold_batchnorm` may fold
    # them (set by the models defined here, whose tests check it; a subclass must opt in)
    folds_batchnorm: ClassVar[bool] = False

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        """The chain of stages in order; the output of each named stage is a usable layer."""
        raise NotImplementedError

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """Map an RGB image batch in [0, 1] to the network's input space (default [-1, 1])."""
        return image * 2.0 - 1.0

    def deprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `preprocess`: network input space back to [0, 1] (not clipped)."""
        return (x + 1.0) / 2.0

    def stage_names(self) -> list[str]:
        return [name for name, _ in self.named_stages()]

    def resolve_layer(self, layer: str) -> str:
        """The stage name for `layer` (a stage name or an alias); ReverieError listing valid names."""
        stages = self.stage_names()
        if layer in stages:
            return layer
        if layer in self.aliases:
            return self.aliases[layer]
        valid = ", ".join(stages + list(self.aliases))
        raise ReverieError(f"unknown layer {layer!r} for {self.name}; valid layers: {valid}")

    def features(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations of `layers` (names as given, aliases allowed), stopping after the deepest."""
        wanted = {self.resolve_layer(layer): layer for layer in layers}
        outputs: dict[str, torch.Tensor] = {}
        for stage_name, stage in self.named_stages():
            x = stage(x)
            if stage_name in wanted:
                outputs[wanted[stage_name]] = x
                if len(outputs) == len(wanted):
                    break
        return outputs

    def meta_twin(self) -> Backbone:
        """A shape-only copy of this model (no memory, no arithmetic); itself if already on meta.

        No real tensor is copied: a model defined here is built anew on the meta device, any other
        is deep-copied with every parameter and buffer mapped to an empty meta tensor. Batch norms
        become identities (they keep the shape, and on meta they are the slowest part of a probe).
        """
        tensors = [*self.parameters(), *self.buffers()]
        if tensors and all(tensor.device.type == "meta" for tensor in tensors):
            return self
        if MODEL_MODULES.get(self.name) == type(self).__module__:
            twin = meta_backbone(self.name)
            if type(twin) is type(self):
                return twin
        memo: dict[int, object] = {id(tensor): _meta_tensor(tensor) for tensor in tensors}
        return _without_batchnorm(copy.deepcopy(self, memo).eval())  # eval: batch norm accepts a 1x1 map

    def _stage_shapes(self, size: int, last_stage: str | None = None) -> dict[str, torch.Size] | None:
        """Output shape of each stage (up to `last_stage`) for a size x size input, or None if rejected."""
        shapes: dict[str, torch.Size] = {}
        x = torch.empty(1, 3, size, size, device="meta")
        try:
            for stage_name, stage in self.meta_twin().named_stages():
                x = stage(x)
                if x.shape[-1] < 1 or x.shape[-2] < 1:
                    return None
                shapes[stage_name] = x.shape
                if stage_name == last_stage:
                    break
        except (RuntimeError, ValueError):  # too small for a kernel; batch norm in training mode on 1x1
            return None
        return shapes

    def layer_table(self) -> list[LayerInfo]:
        """Every usable layer with channels and stride (measured at PROBE_SIZE and PROBE_SIZE + PROBE_STEP).

        The stride is the input growth over the output growth, exact also for unpadded convolutions
        (InceptionV3's Mixed_6a is 30x30 at 512: stride 16, not 512 / 30).
        """
        twin = self.meta_twin()
        shapes = twin._stage_shapes(PROBE_SIZE)
        wider = twin._stage_shapes(PROBE_SIZE + PROBE_STEP)
        assert shapes is not None and wider is not None, f"{self.name} cannot run a {PROBE_SIZE}px probe"
        by_stage: dict[str, list[str]] = {}
        for alias, stage_name in self.aliases.items():
            by_stage.setdefault(stage_name, []).append(alias)
        return [
            LayerInfo(
                name, tuple(by_stage.get(name, [])), shape[1], PROBE_STEP // (wider[name][-1] - shape[-1])
            )
            for name, shape in shapes.items()
        ]

    def min_input_size(self, layers: Sequence[str]) -> int:
        """Smallest square input side for which every stage up to the deepest of `layers` has output."""
        order = self.stage_names()
        deepest = order[max(order.index(self.resolve_layer(layer)) for layer in layers)]
        twin = self.meta_twin()
        low, high = 1, PROBE_SIZE
        while low < high:
            mid = (low + high) // 2
            if twin._stage_shapes(mid, deepest) is not None:
                high = mid
            else:
                low = mid + 1
        return low


def _meta_tensor(tensor: torch.Tensor) -> torch.Tensor:
    empty = torch.empty_like(tensor, device="meta")
    return nn.Parameter(empty, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else empty


def _without_batchnorm(model: ModuleT) -> ModuleT:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())
    return model


def fold_batchnorm(model: ModuleT, inplace: bool = False) -> ModuleT:
    """`model` (a copy unless `inplace`) for inference, each BatchNorm2d folded into the Conv2d before it.

    In eval mode batch norm is a per-channel affine map, so it folds into that convolution's
    weights and bias: the same outputs (to float rounding), and a pass over every activation
    saved, forward and backward. A batch norm is folded when it is declared right after a Conv2d
    with as many output channels in the same parent module; any other is left as it is. That is
    the data flow only where a model says so (`Backbone.folds_batchnorm`).
    """
    model = (model if inplace else copy.deepcopy(model)).eval()
    for parent in list(model.modules()):
        previous: nn.Module | None = None
        for name, child in list(parent.named_children()):
            if (
                isinstance(child, nn.BatchNorm2d)
                and isinstance(previous, nn.Conv2d)
                and previous.out_channels == child.num_features
                and child.running_mean is not None
            ):
                previous.weight, previous.bias = fuse_conv_bn_weights(
                    previous.weight,
                    previous.bias,
                    child.running_mean,
                    child.running_var,
                    child.eps,
                    child.weight,
                    child.bias,
                )
                setattr(parent, name, nn.Identity())
            previous = child
    return model


def available_models() -> list[str]:
    """Names accepted by `--model`."""
    return list(MODEL_MODULES)


def _model_module(name: str) -> types.ModuleType:
    if name not in MODEL_MODULES:
        raise ReverieError(f"unknown model {name!r}; choose one of {', '.join(MODEL_MODULES)}")
    return importlib.import_module(MODEL_MODULES[name])


def build_backbone(name: str) -> Backbone:
    """The architecture `name` with random weights (fast; for tests, timing and listing layers). A module
    that defines several models (`VARIANTS`, as vgg16 and vgg19) is told which."""
    module = _model_module(name)
    return module.build(name) if name in getattr(module, "VARIANTS", ()) else module.build()


def meta_backbone(name: str) -> Backbone:
    """The architecture `name` on the meta device, shapes only: what layer names, channel ranges and
    input sizes are checked against before any weights are read."""
    with torch.device("meta"):
        return _without_batchnorm(build_backbone(name).eval())


def load_backbone(
    name: str, weights: str | Path | None = None, device: torch.device | str = "cpu"
) -> Backbone:
    """The pretrained model `name`, in eval mode, gradients off for its parameters.

    `weights` is a local weight file; None means the model's default (downloaded and cached on
    first use where it has to be).
    """
    module = _model_module(name)
    model = build_backbone(name)
    module.load_weights(model, Path(weights) if weights is not None else None)
    model.eval().requires_grad_(False)
    return model.to(device)


def list_layers(name: str) -> list[LayerInfo]:
    """The layer table of model `name` (no weights needed)."""
    return meta_backbone(name).layer_table()


if __name__ == "__main__":
    for info in list_layers(sys.argv[1] if len(sys.argv) > 1 else "inception_v3"):
        print(f"{info.name:24} {','.join(info.aliases):10} {info.channels:6} {info.stride:4}")
