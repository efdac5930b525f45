"""The dream itself: the book's octave loop (Deep Learning with Python, 8.2) and its gradient ascent.

For each octave, smallest first: resize the image, take gradient steps on the objective, each
`step * g / max(mean|g|, 1e-7)`, then put back the detail lost by shrinking the original. The
transforms (`reverie.deepdream.transforms`) change what the network sees, the gradient, and the
image after each change; `tile` computes the gradient in bounded memory (`reverie.deepdream.tiling`).

    plan = dreamer.plan(preset="book")                      # the options, once (Dreamer.plan)
    result = run_octaves(plan, load_image("photo.jpg"))     # what dreamer.octaves(...) runs
    result.image, result.octaves, result.losses
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import torch
from PIL import Image
from tqdm import tqdm

from reverie.deepdream.dreamtypes import DreamNet, StepContext
from reverie.deepdream.images import quantize, resize, to_pil
from reverie.deepdream.objectives import Objective
from reverie.deepdream.options import DreamOptions
from reverie.deepdream.tiling import tiled_loss_and_gradient
from reverie.deepdream.transforms import Pipeline
from reverie.errors import ReverieError


class DreamStopped(ReverieError):
    """A dream ended early because its `stop` function (DreamOptions.stop) returned True."""


@dataclass
class Plan:
    """One dream's settings on a dreamer: the options, the bound objective, the transforms (a
    `Pipeline`), the autocast dtype and the step in the model's input units."""

    dreamer: DreamNet
    options: DreamOptions
    objective: Objective
    transforms: Pipeline
    dtype: torch.dtype
    step: float


class DreamResult:
    """The dreamed image, the image after each octave (smallest first) and the loss of every step.

    The images are kept as 8-bit tensors and become PIL images when read, so a caller that wants
    only `image` never pays for the others.
    """

    def __init__(self, levels: list[torch.Tensor], losses: list[list[float]]) -> None:
        self._levels = levels
        self._images: dict[int, Image.Image] = {}
        self.losses = losses

    def _image(self, index: int) -> Image.Image:
        if index not in self._images:
            self._images[index] = to_pil(self._levels[index])
        return self._images[index]

    @property
    def image(self) -> Image.Image:
        return self._image(len(self._levels) - 1)

    @property
    def octaves(self) -> list[Image.Image]:
        return [self._image(index) for index in range(len(self._levels))]

    def __repr__(self) -> str:
        height, width = self._levels[-1].shape[-2:]
        return f"DreamResult({width}x{height}, {len(self._levels)} octave(s))"


def octave_shapes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """The book's sizes, smallest first: int(dim / scale**i) for i = octaves-1 ... 0."""
    return [(int(height / scale**i), int(width / scale**i)) for i in reversed(range(octaves))]


def fitting_shapes(shapes: list[tuple[int, int]], minimum: int, model: str) -> list[tuple[int, int]]:
    """Drop octaves smaller than the network's minimum input (with a warning); refuse if none fits."""
    kept = [shape for shape in shapes if min(shape) >= minimum]
    if not kept:
        height, width = shapes[-1]
        raise ReverieError(
            f"the image is {width}x{height} but {model} needs at least {minimum} pixels on the shorter side "
            f"for these layers; use a larger image or shallower layers"
        )
    if len(kept) < len(shapes):
        dropped = ", ".join(f"{w}x{h}" for h, w in shapes[: len(shapes) - len(kept)])
        warnings.warn(
            f"dropping octave(s) {dropped}: below {model}'s {minimum}-pixel minimum for these layers; "
            f"use fewer octaves or a larger image",
            stacklevel=3,
        )
    return kept


def run_octaves(plan: Plan, source01: torch.Tensor) -> DreamResult:
    """The octave loop on a (3, H, W) image in [0, 1]."""
    dreamer, opts = plan.dreamer, plan.options
    generator = torch.Generator().manual_seed(opts.seed if opts.seed is not None else torch.seed())
    height, width = source01.shape[-2:]
    minimum = dreamer.min_input_size(plan.objective.layers)
    sizes = octave_shapes(height, width, opts.octaves, opts.octave_scale)
    shapes = fitting_shapes(sizes, minimum, dreamer.name)
    original = dreamer.to_input(source01[None])
    del source01
    shrunk = resize(original, shapes[0])
    x = original
    levels: list[torch.Tensor] = []
    all_losses: list[list[float]] = []
    for index, shape in enumerate(shapes):
        x = resize(x, shape)
        if x is original:  # a single octave: ascend works in place
            x = x.clone()
        same_size_original = resize(original, shape)
        context = StepContext(generator, dreamer, same_size_original, index)
        desc = f"octave {index + 1}/{len(shapes)} {shape[1]}x{shape[0]}"
        x, losses = ascend(plan, x, context, desc)
        x = (x + same_size_original).sub_(resize(shrunk, shape))  # re-inject the detail lost by shrinking
        x = plan.transforms.on_image(x, context)
        shrunk = same_size_original
        all_losses.append(losses)
        levels.append(quantize(dreamer.to_image(x)[0]))
    return DreamResult(levels, all_losses)


def ascend(
    plan: Plan, x: torch.Tensor, context: StepContext, desc: str = ""
) -> tuple[torch.Tensor, list[float]]:
    """Gradient ascent at one size, updating `x` in place: `iterations` steps of
    `step * g / max(mean|g|, 1e-7)`, the transforms around each.

    Stops early, before stepping, once the loss exceeds `max_loss` (the book's rule). Before every
    step it asks `stop` (if given) and raises DreamStopped once it says so. Returns the image and the
    loss at each evaluated step.
    """
    opts = plan.options
    losses: list[float] = []
    bar = tqdm(total=opts.iterations, desc=desc, file=sys.stderr, disable=not opts.progress)
    with bar:
        for index in range(opts.iterations):
            if opts.stop is not None and opts.stop():
                raise DreamStopped(
                    f"the dream was stopped before step {index + 1} of {opts.iterations} "
                    f"of octave {context.octave + 1}"
                )
            loss, grad = loss_and_gradient(plan, x, context)
            losses.append(loss)
            bar.set_postfix(loss=f"{loss:.4g}")
            bar.update()
            if opts.max_loss is not None and loss > opts.max_loss:
                break
            grad = plan.transforms.on_gradient(grad, context)
            mean_abs = float(torch.linalg.vector_norm(grad, ord=1)) / grad.numel()
            x.add_(grad, alpha=plan.step / max(mean_abs, 1e-7))
            del grad  # full-size tensors dominate a tiled run's memory: keep as few alive as possible
            x = plan.transforms.on_image(x, context)
    return x, losses


def loss_and_gradient(plan: Plan, x: torch.Tensor, context: StepContext) -> tuple[float, torch.Tensor]:
    """The objective at what the network sees of `x` (its transforms' `on_input`) and the float32
    gradient with respect to `x` itself, whole or tiled."""
    opts = plan.options
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        seen = plan.transforms.on_input(leaf, context)
    if opts.tile is not None:
        phase = tuple(int(torch.randint(0, opts.tile, (1,), generator=context.generator)) for _ in range(2))
        loss, grad = tiled_loss_and_gradient(
            plan.dreamer, plan.objective, seen.detach(), opts.tile, opts.tile_margin, phase, plan.dtype
        )
    else:
        loss, grad = plan.dreamer.loss_and_gradient(plan.objective, seen.detach(), dtype=plan.dtype)
    if seen is not leaf:  # back through the transforms to the image itself
        (grad,) = torch.autograd.grad(seen, leaf, grad)
    return loss, grad
