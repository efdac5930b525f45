"""ResNet50 as a DeepDream backbone, loading torchvision's weight file unchanged.

Module names and state-dict keys are torchvision's (`conv1`, `bn1`, `layer1.0.conv1` ...
`layer4.2.bn3`, `fc`), so `resnet50-0676ba61.pth` (ImageNet, torchvision's V1 weights) loads with
strict=True once the classifier (`fc.`) is dropped by name; batch-norm `num_batches_tracked`
counters, which a file saved before PyTorch 0.4 lacks, are taken as zero (reverie.deepdream.weights).
Input: torchvision's ImageNet normalization. Layers: `conv1` (conv, batch norm, ReLU), `maxpool`,
then every bottleneck block `layer1.0` ... `layer4.2`; Keras's names (`conv1_relu`, `pool1_pool`,
`conv2_block1_out` ... `conv5_block3_out`) are aliases.

    python -m reverie.deepdream.resnet [WEIGHTS]    # load weights (default: download) and list layers
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from reverie.deepdream.vgg import TorchvisionNormalized
from reverie.deepdream.weights import load_torchvision

WEIGHTS_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
UNUSED_KEY_PREFIXES = ("fc.",)
BLOCKS = (3, 4, 6, 3)  # bottleneck blocks of layer1 ... layer4
EXPANSION = 4


class Bottleneck(nn.Module):
    """torchvision's ResNet V1.5 bottleneck: 1x1, 3x3 (the stride), 1x1 to 4x the width, plus the skip."""

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        skip = self.downsample(x) if hasattr(self, "downsample") else x
        return self.relu(h + skip)


class ResNet50(TorchvisionNormalized):
    """torchvision's ResNet50 without its classifier."""

    name = "resnet50"
    folds_batchnorm = True
    dream_layers: ClassVar[dict[str, float]] = {"layer3.5": 1.0}

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        channels = 64
        aliases = {"conv1_relu": "conv1", "pool1_pool": "maxpool"}
        for index, (blocks, width) in enumerate(zip(BLOCKS, (64, 128, 256, 512)), start=1):
            layer = []
            for block in range(blocks):
                layer.append(Bottleneck(channels, width, 2 if block == 0 and index > 1 else 1))
                channels = width * EXPANSION
                aliases[f"conv{index + 1}_block{block + 1}_out"] = f"layer{index}.{block}"
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        self.aliases = aliases

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        stages: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Sequential(self.conv1, self.bn1, self.relu)),
            ("maxpool", self.maxpool),
        ]
        for index in range(1, 5):
            layer = getattr(self, f"layer{index}")
            stages += [(f"layer{index}.{block}", module) for block, module in enumerate(layer)]
        return stages


def build() -> ResNet50:
    """ResNet50 with random weights."""
    return ResNet50()


def load_weights(model: ResNet50, path: Path | None) -> None:
    """Load torchvision's ResNet50 weights (None: the cached or downloaded default file)."""
    load_torchvision(model, path, WEIGHTS_URL, UNUSED_KEY_PREFIXES)


if __name__ == "__main__":
    net = build()
    load_weights(net, Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    for info in net.layer_table():
        print(f"{info.name:16} {','.join(info.aliases):18} {info.channels:6} {info.stride:4}")
