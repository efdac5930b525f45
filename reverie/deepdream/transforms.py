"""The transforms of dreams and feature visualizations: small callables on an image tensor, applied
as a list in order (as lucid's and lucent's are).

    from reverie import transforms as tf           # this module: reverie.deepdream.transforms
    dreamer.dream("photo.jpg", transforms=[tf.Jitter(16), tf.LapNormalize(4), tf.Clip()])
    reverie.visualize(dreamer, "block8:7", transforms=[tf.Pad(8), tf.Jitter(4), tf.RandomScale((0.9, 1.1))])

A transform is any callable `transform(x, context) -> x`: `x` an image batch (N, 3, H, W), `context`
a `dreamtypes.StepContext` (the seeded `generator` every random choice draws from, the dreamer, the
original image of a dream at this octave's size). Its `stage` attribute (default "input", what a plain
function has) says which tensor it is given:

- "input": the image as the network sees it at this step. It runs under autograd and the gradient
  flows back through it to the image itself, so any differentiable change works: `Jitter` (a seeded
  random roll), `Pad`, `Shift`, `RandomScale`, `RandomRotate` (lucid's transformation robustness,
  `robust_transforms()`). With tiling it applies to the whole image, whose tiled gradient is then
  propagated back through it. A dream's image is in the network's input space, a visualization's
  in [0, 1] (so `Pad`'s grey, 0.5, is a visualization's grey).
- "gradient": a dream's gradient before the step (`LapNormalize` equalizes its bands).
- "image": a dream's image after each change to it, every step and the detail put back at the end
  of each octave (`Clip` keeps it in the valid pixel range, `KeepColors` keeps the input's colours).

A list runs stage by stage, each stage's transforms in list order (`Pipeline`). A visualization
optimizes a parameterization, not an image, so it takes input transforms only. Without
`transforms=`, a dream's list comes from its options (`options.transforms_of`: `jitter=32` gives
`Jitter(32)`, `lap_norm=4` `LapNormalize(4)`, `keep_colors=True` `KeepColors()`, `clip=True`
`Clip()`), a visualization's is `robust_transforms()`. The step rule itself
(`x += step * g / max(mean|g|, 1e-7)`) is the ascent's (`reverie.deepdream.octaves`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from reverie.deepdream.dreamtypes import StepContext
from reverie.errors import ReverieError
from reverie.options import check_value

JITTER = {"low": 0}  # the bounds of Jitter's pixels, and of the --jitter option
STAGES = ("input", "gradient", "image")
TransformFunction = Callable[[torch.Tensor, StepContext], torch.Tensor]  # what `transforms=` lists


class Transform:
    """A convenient base for a transform (any callable `(x, context) -> x` is one): set `stage` and
    define `__call__`; see the module's docstring."""

    stage: ClassVar[str] = "input"

    def __call__(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def stage_of(transform: Any) -> str:
    """Which tensor `transform` is given: its `stage`, "input" for a plain function."""
    return getattr(transform, "stage", "input")


def check_transform(transform: Any) -> None:
    """Refuse, in one line, what is not a transform: a callable whose `stage`, if any, is one of STAGES."""
    if not callable(transform) or stage_of(transform) not in STAGES:
        raise ReverieError(
            f"transforms= takes transforms from reverie.transforms or functions (x, context) -> x, "
            f"got {transform!r}"
        )


class Pipeline:
    """A list of transforms run stage by stage: `on_input`, `on_gradient` and `on_image` each apply
    that stage's transforms in list order."""

    def __init__(self, transforms: Sequence[TransformFunction]) -> None:
        for transform in transforms:
            check_transform(transform)
        self.transforms = list(transforms)
        self._staged = {stage: [t for t in self.transforms if stage_of(t) == stage] for stage in STAGES}

    def stages(self) -> set[str]:
        """The stages some transform of the list acts at."""
        return {stage for stage, listed in self._staged.items() if listed}

    def _apply(self, stage: str, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        for transform in self._staged[stage]:
            x = transform(x, context)
        return x

    def on_input(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        return self._apply("input", x, context)

    def on_gradient(self, grad: torch.Tensor, context: StepContext) -> torch.Tensor:
        return self._apply("gradient", grad, context)

    def on_image(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        return self._apply("image", x, context)

    def __repr__(self) -> str:
        return f"Pipeline({self.transforms!r})"


# ---- a dream's transforms ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Jitter(Transform):
    """A random roll of up to `pixels` in each direction (google/deepdream): removes the grid-aligned
    artifacts of strided convnets. The gradient comes back unrolled through autograd."""

    pixels: int

    def __post_init__(self) -> None:
        check_value("--jitter", self.pixels, kind=int, **JITTER)

    def __call__(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        if not self.pixels:
            return x
        dy, dx = torch.randint(-self.pixels, self.pixels + 1, (2,), generator=context.generator).tolist()
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


@dataclass(frozen=True)
class LapNormalize(Transform):
    """Laplacian-pyramid normalization of the gradient over `levels` bands (lucid)."""

    stage: ClassVar[str] = "gradient"
    levels: int = 4

    def __post_init__(self) -> None:
        check_value("--lap-norm", self.levels, kind=int, low=1)

    def __call__(self, grad: torch.Tensor, context: StepContext) -> torch.Tensor:
        return lap_normalize(grad, self.levels)


@dataclass(frozen=True)
class KeepColors(Transform):
    """Keep the original's chroma (YCbCr Cb, Cr): the dream changes only the luminance."""

    stage: ClassVar[str] = "image"

    def __call__(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        dreamer = context.dreamer
        return dreamer.to_input(keep_chroma(dreamer.to_image(x), context.original01))


@dataclass(frozen=True)
class Clip(Transform):
    """Keep the image within the valid pixel range (google/deepdream, after every step)."""

    stage: ClassVar[str] = "image"

    def __call__(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        return context.dreamer.clip_(x)


# ---- lucid's transformation robustness (a visualization's default; a dream may use them too) ----------


@dataclass(frozen=True)
class Pad(Transform):
    """Pad every side by `pixels` with `value` (grey in [0, 1]), so the shifts and rotations have room."""

    pixels: int
    value: float = 0.5

    def __call__(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        return F.pad(x, [self.pixels] * 4, value=self.value)


@dataclass(frozen=True)
class Shift(Transform):
    """A random crop `pixels` smaller on each axis: the image moved by up to `pixels`."""

    pixels: int

    def __call__(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        dy, dx = torch.randint(0, self.pixels + 1, (2,), generator=context.generator).tolist()
        h, w = x.shape[-2:]
        return x[..., dy : h - self.pixels + dy, dx : w - self.pixels + dx]


@dataclass(frozen=True)
class RandomScale(Transform):
    """Resize by one of `scales`, drawn at random (bilinear)."""

    scales: tuple[float, ...]

    def __call__(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        scale = self.scales[int(torch.randint(len(self.scales), (1,), generator=context.generator))]
        h, w = x.shape[-2:]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class RandomRotate(Transform):
    """Rotate by one of `degrees`, drawn at random, about the centre (edges extended)."""

    degrees: tuple[float, ...]

    def __call__(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
        drawn = int(torch.randint(len(self.degrees), (1,), generator=context.generator))
        angle = math.radians(self.degrees[drawn])
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def robust_transforms() -> list[Transform]:
    """lucid's standard transformation robustness: pad, shift, scale, rotate, shift."""
    return [
        Pad(12),
        Shift(8),
        RandomScale(tuple(1 + (i - 5) / 50 for i in range(11))),
        RandomRotate(tuple(float(d) for d in range(-10, 11))),
        Shift(4),
    ]


# ---- the arithmetic -------------------------------------------------------------------------------------


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
