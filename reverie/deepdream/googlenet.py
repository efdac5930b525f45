"""GoogLeNet (Inception v1) as a DeepDream backbone: the original DeepDream network.

Module names and state-dict keys are torchvision's (`conv1` ... `inception5b`), so its
`googlenet-1378be20.pth` loads with strict=True once the two auxiliary classifiers and the
final classifier are dropped. Like torchvision's port of these (TensorFlow-trained) weights,
the 3x3 "5x5" branch and the ceil-mode max pools are kept. Input in [-1, 1] (what torchvision's
`transform_input` produces). google/deepdream's favourite layer is `inception4c`.

    python -m reverie.deepdream.googlenet [WEIGHTS]    # load weights (default: download) and list layers
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from reverie.deepdream.backbone import Backbone
from reverie.deepdream.inception_v3 import BasicConv2d
from reverie.deepdream.weights import load_torchvision

WEIGHTS_URL = "https://download.pytorch.org/models/googlenet-1378be20.pth"
UNUSED_KEY_PREFIXES = ("aux1.", "aux2.", "fc.")


class Inception(nn.Module):
    """Four parallel branches: 1x1; 1x1 then 3x3; 1x1 then 3x3; 3x3 max pool then 1x1."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1)
        )
        # a 3x3 where the paper has 5x5: that is what the published weights were trained with
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(in_channels, pool_proj, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(Backbone):
    """GoogLeNet without its classifiers: stem, then inception3a ... inception5b."""

    folds_batchnorm = True
    name = "googlenet"
    # google/deepdream's default, inception_4c/output
    dream_layers: ClassVar[dict[str, float]] = {"inception4c": 1.0}

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        return list(self.named_children())


def build() -> GoogLeNet:
    """GoogLeNet with random weights."""
    return GoogLeNet()


def load_weights(model: GoogLeNet, path: Path | None) -> None:
    """Load torchvision's GoogLeNet weights (None: the cached or downloaded default file)."""
    load_torchvision(model, path, WEIGHTS_URL, UNUSED_KEY_PREFIXES)


if __name__ == "__main__":
    net = build()
    load_weights(net, Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    for info in net.layer_table():
        print(f"{info.name:16} {info.channels:6} {info.stride:4}")
