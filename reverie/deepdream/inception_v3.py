"""InceptionV3 as a DeepDream backbone: the book's network, with torchvision's module names.

The modules and state-dict keys are torchvision's (`Conv2d_1a_3x3` ... `Mixed_7c`), so its
`inception_v3_google-0cc3c7bd.pth` loads with strict=True once the auxiliary classifier and the
final classifier are dropped. Keras's names `mixed0` ... `mixed10` are aliases of the Mixed
blocks, and Keras's weight file (`inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`)
loads too, through `reverie.deepdream.keras_import`. The input is in [-1, 1] (what torchvision's
`transform_input` produces and what Keras's `preprocess_input` gives).

The one behavioural difference between the two weight sets is average pooling at the border:
torchvision counts the zero padding in the average, Keras's 'same' pooling does not;
`count_include_pad` follows whichever weights were loaded.

    python -m reverie.deepdream.inception_v3 [WEIGHTS]    # load weights (default: download) and list layers
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reverie.deepdream.backbone import Backbone
from reverie.deepdream.weights import cached_or_download, hub_checkpoint_dir, load_torchvision

WEIGHTS_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
KERAS_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
# parts of torchvision's file this feature extractor has no module for
UNUSED_KEY_PREFIXES = ("AuxLogits.", "fc.")
BN_EPS = 1e-3  # torchvision's and Keras's

KERAS_ALIASES = {
    "mixed0": "Mixed_5b",
    "mixed1": "Mixed_5c",
    "mixed2": "Mixed_5d",
    "mixed3": "Mixed_6a",
    "mixed4": "Mixed_6b",
    "mixed5": "Mixed_6c",
    "mixed6": "Mixed_6d",
    "mixed7": "Mixed_6e",
    "mixed8": "Mixed_7a",
    "mixed9": "Mixed_7b",
    "mixed10": "Mixed_7c",
}


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU: torchvision's unit (Keras's conv2d_bn)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _same_avg_pool() -> nn.AvgPool2d:
    """3x3 stride-1 average pooling that keeps the size (padding counted until weights say otherwise)."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=True)


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d (Keras mixed0-2): 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.avg_pool = _same_avg_pool()
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(self.avg_pool(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """Mixed_6a (Keras mixed3): the stride-2 reduction from 35x35 to 17x17."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)
        self.max_pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), branch3x3dbl, self.max_pool(x)], 1)


class InceptionC(nn.Module):
    """Mixed_6b-6e (Keras mixed4-7): factorized 7x7 convolutions (1x7 then 7x1)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.avg_pool = _same_avg_pool()
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        branch_pool = self.branch_pool(self.avg_pool(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """Mixed_7a (Keras mixed8): the stride-2 reduction from 17x17 to 8x8."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)
        self.max_pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        return torch.cat([branch3x3, branch7x7x3, self.max_pool(x)], 1)


class InceptionE(nn.Module):
    """Mixed_7b/7c (Keras mixed9/10): 3x3 convolutions split into parallel 1x3 and 3x1."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.avg_pool = _same_avg_pool()
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        branch_pool = self.branch_pool(self.avg_pool(x))
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionV3(Backbone):
    """InceptionV3 without its classifier: stem convolutions, then the Mixed blocks."""

    folds_batchnorm = True
    name = "inception_v3"
    aliases = KERAS_ALIASES

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        return list(self.named_children())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The whole chain (input in [-1, 1]) to Mixed_7c."""
        for _, stage in self.named_stages():
            x = stage(x)
        return x

    @property
    def count_include_pad(self) -> bool:
        """Whether the blocks' 3x3 average pools count the zero padding (torchvision) or not (Keras)."""
        return all(pool.count_include_pad for pool in self._avg_pools())

    @count_include_pad.setter
    def count_include_pad(self, value: bool) -> None:
        for pool in self._avg_pools():
            pool.count_include_pad = value

    def _avg_pools(self) -> list[nn.AvgPool2d]:
        return [module for module in self.modules() if isinstance(module, nn.AvgPool2d)]


def build() -> InceptionV3:
    """InceptionV3 with random weights."""
    return InceptionV3()


def keras_weights_path() -> Path:
    """Where Keras caches its InceptionV3 weights (`$KERAS_HOME/models`, default `~/.keras/models`)."""
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return keras_home / "models" / KERAS_WEIGHTS_FILE


def default_weights_path() -> Path:
    """torchvision's file if cached, else Keras's if cached, else torchvision's downloaded now."""
    torchvision_file = hub_checkpoint_dir() / WEIGHTS_URL.rsplit("/", 1)[-1]
    if torchvision_file.is_file():
        return torchvision_file
    if keras_weights_path().is_file():
        return keras_weights_path()
    return cached_or_download(WEIGHTS_URL, InceptionV3.name)


def is_keras_file(path: Path) -> bool:
    """Keras weight files are HDF5: `.h5` (the published file), `.weights.h5` (Keras 3), `.hdf5`."""
    return path.suffix.lower() in (".h5", ".hdf5")


def load_weights(model: InceptionV3, path: Path | None) -> None:
    """Load torchvision's `.pth` or Keras's `.h5` InceptionV3 weights (None: the default file)."""
    path = default_weights_path() if path is None else Path(path)
    if is_keras_file(path):
        from reverie.deepdream.keras_import import load_keras_weights

        load_keras_weights(model, path)
        model.count_include_pad = False
        return
    load_torchvision(model, path, WEIGHTS_URL, UNUSED_KEY_PREFIXES)
    model.count_include_pad = True


if __name__ == "__main__":
    net = build()
    load_weights(net, Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    for info in net.layer_table():
        print(f"{info.name:16} {','.join(info.aliases):8} {info.channels:6} {info.stride:4}")
