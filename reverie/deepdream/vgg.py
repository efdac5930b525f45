"""VGG16 and VGG19 as DeepDream backbones, loading torchvision's weight files unchanged.

Module names and state-dict keys are torchvision's (`features.0` ... `features.34`), so
`vgg16-397923af.pth` and `vgg19-dcbb9e9d.pth` load with strict=True once the classifier
(`classifier.0/3/6`, 120M parameters a dream never runs) is dropped by name. Input: torchvision's
ImageNet normalization of RGB in [0, 1]. Layers use Keras's names (`block1_conv1` ... `block5_pool`,
each conv with its ReLU); torchvision's module index of the ReLU or pool (`features.1`, `features.4`)
is accepted as an alias.

    python -m reverie.deepdream.vgg vgg16 [WEIGHTS]    # load weights (default: download) and list layers
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from reverie.deepdream.backbone import Backbone
from reverie.deepdream.weights import load_torchvision
from reverie.errors import require

# torchvision's configurations D (VGG16) and E (VGG19): output channels of each 3x3 conv, "M" a 2x2 pool
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M")
    + (512, 512, 512, 512, "M"),
}
WEIGHTS_URLS = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}
UNUSED_KEY_PREFIXES = ("classifier.",)
VARIANTS = tuple(CONFIGS)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TorchvisionNormalized(Backbone):
    """A Backbone whose input is torchvision's ImageNet normalization of RGB in [0, 1]."""

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        return (image - mean) / std

    def deprocess(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return x * std + mean


class VGG(TorchvisionNormalized):
    """torchvision's VGG `features` (no batch norm), its stages named the Keras way."""

    dream_layers: ClassVar[dict[str, float]] = {"block4_conv3": 1.0}

    def __init__(self, variant: str = "vgg16") -> None:
        super().__init__()
        require(variant in CONFIGS, f"unknown VGG {variant!r}; choose {', '.join(CONFIGS)}")
        self.name = variant
        layers: list[nn.Module] = []
        self._stages: list[tuple[str, list[int]]] = []  # stage name -> indices in `features`
        self.aliases = {}
        channels, block, conv = 3, 1, 1
        for item in CONFIGS[variant]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                self._stages.append((f"block{block}_pool", [len(layers) - 1]))
                block, conv = block + 1, 1
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                self._stages.append((f"block{block}_conv{conv}", [len(layers) - 2, len(layers) - 1]))
                channels, conv = int(item), conv + 1
            self.aliases[f"features.{len(layers) - 1}"] = self._stages[-1][0]
        # torchvision's key prefix `features.` clashes with Backbone.features (the method), so the
        # Sequential is registered under that name and read back from _modules
        self._modules["features"] = nn.Sequential(*layers)

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        features = self._modules["features"]
        return [(name, nn.Sequential(*(features[i] for i in indices))) for name, indices in self._stages]


def build(name: str = "vgg16") -> VGG:
    """VGG16 or VGG19 with random weights."""
    return VGG(name)


def load_weights(model: VGG, path: Path | None) -> None:
    """Load torchvision's weights of `model`'s variant (None: the cached or downloaded default file)."""
    load_torchvision(model, path, WEIGHTS_URLS[model.name], UNUSED_KEY_PREFIXES)


if __name__ == "__main__":
    net = build(sys.argv[1] if len(sys.argv) > 1 else "vgg16")
    load_weights(net, Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    for info in net.layer_table():
        print(f"{info.name:16} {','.join(info.aliases):12} {info.channels:6} {info.stride:4}")
