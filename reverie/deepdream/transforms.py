"""Per-step transforms of a dream: what the network sees, what the gradient becomes, what the image may be.

    from reverie import transforms as tf           # this module: reverie.deepdream.transforms
    dreamer.dream("photo.jpg", transforms=[tf.Jitter(16), tf.LapNormalize(4), tf.Clip()])

Without `transforms=`, the list comes from the options (`options.default_transforms`): `jitter=32` gives
`Jitter(32)`, `lap_norm=4` `LapNormalize(4)`, `keep_colors=True` `KeepColors()`, `clip=True`
`Clip()`. A `Transform` has three hooks, each returning its input unchanged unless overridden:

- `on_input(x, context)`: the image as the network sees it. It runs under autograd and the
  gradient flows back through it to the image itself, so any differentiable change works (Jitter
  is a seeded random roll; a scale or a rotation would do as well). With tiling it applies to the
  whole image, whose tiled gradient is then propagated back through it.
- `on_gradient(grad, context)`: the gradient before the step (LapNormalize equalizes its bands).
- `on_image(x, context)`: the image after each change to it, every step and the detail put back at
  the end of each octave (Clip keeps it in the valid pixel range, KeepColors keeps the input's
  colors).

The hooks run in list order. Everything is in the network's input space; `context` (a
`dreamtypes.StepContext`) holds the seeded generator, the dreamer (`to_input`/`to_image`, the pixel bounds)
and the original image at the current octave's size. The step rule itself
(`x += step * g / max(mean|g|, 1e-7)`) is the ascent's (`reverie.deepdream.octaves`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reverie.deepdream.dreamtypes import StepContext
from reverie.options import check_value

JITTER = {"low": 0}  # the bounds of Jitter's pixels, and of the --jitter option


class Transform:
    """A step of a dream's pipeline; override any of the three hooks (see the module docstring)."""

    def on_input(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        return x

    def on_gradient(self, grad: torch.Tensor, context: StepContext) -> torch.Tensor:
        return grad

    def on_image(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Compose(Transform):
    """Several transforms as one: each hook runs through them in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        for transform in transforms:
            if not isinstance(transform, Transform):
                raise TypeError(f"{transform!r} is not a Transform (subclass reverie.transforms.Transform)")
        self.transforms = list(transforms)

    def on_input(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        for transform in self.transforms:
            x = transform.on_input(x, context)
        return x

    def on_gradient(self, grad: torch.Tensor, context: StepContext) -> torch.Tensor:
        for transform in self.transforms:
            grad = transform.on_gradient(grad, context)
        return grad

    def on_image(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        for transform in self.transforms:
            x = transform.on_image(x, context)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


@dataclass(frozen=True)
class Jitter(Transform):
    """A random roll of up to `pixels` in each direction (google/deepdream): removes the grid-aligned
    artifacts of strided convnets. The gradient comes back unrolled through autograd."""

    pixels: int

    def __post_init__(self) -> None:
        check_value("--jitter", self.pixels, kind=int, **JITTER)

    def on_input(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        if not self.pixels:
            return x
        dy, dx = torch.randint(-self.pixels, self.pixels + 1, (2,), generator=context.generator).tolist()
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


@dataclass(frozen=True)
class LapNormalize(Transform):
    """Laplacian-pyramid normalization of the gradient over `levels` bands (lucid)."""

    levels: int = 4

    def __post_init__(self) -> None:
        check_value("--lap-norm", self.levels, kind=int, low=1)

    def on_gradient(self, grad: torch.Tensor, context: StepContext) -> torch.Tensor:
        return lap_normalize(grad, self.levels)


@dataclass(frozen=True)
class KeepColors(Transform):
    """Keep the original's chroma (YCbCr Cb, Cr): the dream changes only the luminance."""

    def on_image(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        dreamer = context.dreamer
        return dreamer.to_input(keep_chroma(dreamer.to_image(x), context.original01))


@dataclass(frozen=True)
class Clip(Transform):
    """Keep the image within the valid pixel range (google/deepdream, after every step)."""

    def on_image(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        return context.dreamer.clip_(x)


def lap_normalize(grad: torch.Tensor, levels: int) -> torch.Tensor:
    """Scale each band of a Laplacian pyramid of `grad` to unit RMS, then merge (lucid's trick).

    Fine bands usually dominate a convnet's input gradient; equalizing the bands lets coarse
    structure grow at the same rate.
    """
    kernel1d = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=grad.device)
    kernel = torch.outer(kernel1d, kernel1d) / 256.0
    channels = grad.shape[1]
    weight = kernel.expand(channels, 1, 5, 5).contiguous()

    def down(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, weight, stride=2, padding=2, groups=channels)

    def up(image: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        pad_h = like.shape[-2] - ((image.shape[-2] - 1) * 2 - 4 + 5)
        pad_w = like.shape[-1] - ((image.shape[-1] - 1) * 2 - 4 + 5)
        return F.conv_transpose2d(
            image, weight * 4, stride=2, padding=2, output_padding=(pad_h, pad_w), groups=channels
        )

    bands = []
    low = grad
    for _ in range(levels):
        if min(low.shape[-2:]) < 2:
            break
        smaller = down(low)
        bands.append(low - up(smaller, low))
        low = smaller
    result = low / low.square().mean().sqrt().clamp_min(1e-10)
    for band in reversed(bands):
        result = up(result, band) + band / band.square().mean().sqrt().clamp_min(1e-10)
    return result


_RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)


def keep_chroma(dreamed01: torch.Tensor, original01: torch.Tensor) -> torch.Tensor:
    """The luminance of `dreamed01` with the chroma (YCbCr Cb, Cr) of `original01`; (N, 3, H, W) in [0, 1]."""
    matrix = _RGB_TO_YCBCR.to(dreamed01.device)
    dreamed = torch.einsum("ij,njhw->nihw", matrix, dreamed01)
    original = torch.einsum("ij,njhw->nihw", matrix, original01)
    mixed = torch.cat([dreamed[:, :1], original[:, 1:]], dim=1)
    return torch.einsum("ij,njhw->nihw", _YCBCR_TO_RGB.to(dreamed01.device), mixed)
