"""DeepDream: gradient ascent on an image to amplify what a pretrained convnet sees in it.

The algorithm is the book's (Deep Learning with Python, 8.2): for each octave, smallest first,
resize the image, take gradient steps on the objective (`reverie.dream.objectives`) with the
gradient divided by its mean absolute value, then re-inject the detail lost by shrinking the
original. On top of it: random jitter (google/deepdream), tiled gradients in bounded memory,
Laplacian-pyramid gradient normalization (lucid), guided dreaming, keeping the input's colors,
bfloat16.

    import reverie
    reverie.dream("photo.jpg", model="efficientnet_lite0").save("photo-dream.png")
    result = reverie.dream_octaves("photo.jpg", preset="book")   # .image .octaves .losses

All arithmetic happens in the model's input space (the book's [-1, 1] for InceptionV3), so
`step` is in those units, as the book's 0.01.

    python -m reverie.dream.dream photo.jpg [out.png]     # same as `reverie dream`
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from reverie.device import autocast, resolve_device, resolve_dtype
from reverie.dream.backbone import MODEL_MODULES, Backbone, build_backbone, fold_batchnorm, load_backbone
from reverie.dream.images import ImageSource, load_image, resize, to_pil
from reverie.dream.objectives import (
    REDUCTIONS,
    Objective,
    View,
    build_objective,
    parse_channels,
    parse_layers,
)
from reverie.errors import ReverieError, require

# The book's InceptionV3 layers (1st edition), used when a model declares no `dream_layers`.
BOOK_LAYERS = {"mixed2": 0.2, "mixed3": 3.0, "mixed4": 2.0, "mixed5": 1.5}
GUIDE_MAX_SIZE = 512  # the guide image's longest side; its features feed a (positions x positions) match


@dataclass(frozen=True)
class PixelStep:
    """A step size in 0-255 pixel levels (google/deepdream's 1.5), converted to the model's input units."""

    levels: float


@dataclass
class DreamOptions:
    """Every knob of a dream. The defaults (no preset) were chosen by looking at the results on
    matplotlib's grace_hopper.jpg with efficientnet_lite0:

    - 5 octaves x1.4 with 15 steps of 0.02 each: more octaves than the book's 3 let large
      patterns (whole animal heads) grow at the small scales while the finest octave adds
      detail; 0.02 x 15 moves the image about as far per octave as the book's 20 x 0.01 in the
      book's larger loss. Octaves too small for the network are dropped with a warning.
    - jitter 32 (google/deepdream): a random roll each step removes the grid-aligned
      artifacts of strided convnets and spreads the patterns; it costs nothing.
    - border 0, `mean` reduction (the 2nd edition's mean): with jitter the image's edge wanders
      through the activation, so a fixed border crop means nothing, and at the smallest octaves
      a deep layer's activation is only a few positions wide: a 2-position crop would leave none.
    - clip to the valid pixel range after every step (google/deepdream): keeps colors from
      running away; the book clips only when saving.
    - Laplacian normalization off: on these networks it makes bigger, more coherent shapes but
      drowns the photo in saturated color at the same step; turn it on (`lap_norm=4`) for that look.
    - layers: the model's own `dream_layers` (the book's mixed2..mixed5 for InceptionV3).
    - dtype `auto`: bfloat16 (autocast; the input gradient stays float32) where the hardware
      runs it fast (AMX CPUs, CUDA), float32 elsewhere, where bfloat16 is slower. Either way the
      network runs channels-last (NHWC), which oneDNN's convolutions run 1.3-2x faster.
    """

    model: str = "inception_v3"
    layers: Mapping[str, float] | None = None
    channels: Mapping[str, Sequence[int]] | None = None
    reduction: str = "mean"
    border: int = 0
    octaves: int = 5
    octave_scale: float = 1.4
    iterations: int = 15
    step: float | PixelStep = 0.02
    max_loss: float | None = None
    jitter: int = 32
    tile: int | None = None
    tile_margin: int = 64
    lap_norm: int = 0
    clip: bool = True
    guide: ImageSource | None = None
    keep_colors: bool = False
    max_size: int | None = None
    seed: int | None = 0
    device: str = "auto"
    dtype: str = "auto"
    weights: str | Path | None = None
    progress: bool = True

    def validate(self) -> None:
        """Refuse out-of-range values with one line each (ReverieError)."""
        _require_int("octaves", self.octaves, 1)
        _require_int("iterations", self.iterations, 0)  # 0 only runs the octaves (the CLI refuses it)
        _require_int("jitter", self.jitter, 0)
        _require_int("lap_norm", self.lap_norm, 0)
        _require_int("border", self.border, 0)
        _require_int("tile_margin", self.tile_margin, 0)
        if self.tile is not None:
            _require_int("tile", self.tile, 1)
        if self.max_size is not None:
            _require_int("max_size", self.max_size, 1)
        require(self.octave_scale > 1, f"octave scale must be above 1, got {self.octave_scale}")
        step = self.step.levels if isinstance(self.step, PixelStep) else self.step
        require(math.isfinite(step) and step > 0, f"step must be positive, got {step}")
        if self.max_loss is not None:
            require(self.max_loss > 0, f"max_loss must be positive, got {self.max_loss}")
        require(
            self.reduction in REDUCTIONS,
            f"unknown reduction {self.reduction!r}; choose one of {', '.join(REDUCTIONS)}",
        )
        if self.layers is not None:
            require(len(self.layers) > 0, "no layers given; name at least one, e.g. mixed4:1")


def _require_int(field_name: str, value: Any, minimum: int) -> None:
    name = field_name.replace("_", " ")  # "max size": reads right for --max-size and max_size=
    require(
        isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer, got {value!r}"
    )
    word = "positive" if minimum == 1 else "zero or positive"
    require(value >= minimum, f"{name} must be {word}, got {value}")


# Deep Learning with Python, 1st edition, 8.2, exactly (float32, as the book ran: bfloat16 would move
# where the loss passes max_loss).
BOOK_PRESET: dict[str, Any] = {
    "model": "inception_v3",
    "layers": BOOK_LAYERS,
    "reduction": "book",
    "border": 2,
    "octaves": 3,
    "octave_scale": 1.4,
    "iterations": 20,
    "step": 0.01,
    "max_loss": 10.0,
    "jitter": 0,
    "tile": None,
    "lap_norm": 0,
    "clip": False,
    "dtype": "float32",
}

PRESETS: dict[str, dict[str, Any]] = {
    "book": BOOK_PRESET,
    # keras.io's deep_dream example and the 2nd edition's layer choice: the book's run otherwise.
    "keras-io": {
        **BOOK_PRESET,
        "layers": {"mixed4": 1.0, "mixed5": 1.5, "mixed6": 2.0, "mixed7": 2.5},
        "max_loss": 15.0,
    },
    # google/deepdream's notebook: GoogLeNet inception_4c, objective_L2 (gradient = activation).
    "google": {
        "model": "googlenet",
        "layers": {"inception4c": 1.0},
        "reduction": "half_sum",
        "border": 0,
        "octaves": 4,
        "octave_scale": 1.4,
        "iterations": 10,
        "step": PixelStep(1.5),
        "max_loss": None,
        "jitter": 32,
        "tile": None,
        "lap_norm": 0,
        "clip": True,
        "dtype": "float32",
    },
}


def resolve_options(preset: str | None = None, **explicit: Any) -> DreamOptions:
    """Defaults, then the preset's values, then every explicit option that is not None.

    `layers` and `channels` may be strings as on the command line ('mixed2:0.2,mixed3:3',
    'mixed4:12,97'). Channels without explicit layers dream those channels alone. A preset's
    layers (and max_loss, calibrated on them) belong to its model: with another model and no
    explicit layers, that model's own default layers are used and no max_loss unless given
    (so `--preset book --model efficientnet_lite0` dreams).
    """
    names = {f.name for f in dataclasses.fields(DreamOptions)}
    unknown = sorted(set(explicit) - names)
    require(
        not unknown,
        f"unknown dream option {unknown[0] if unknown else ''!r}; valid: {', '.join(sorted(names))}",
    )
    if preset is not None:
        require(preset in PRESETS, f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = {key: _copied(value) for key, value in PRESETS[preset].items()} if preset else {}
    given = {key: value for key, value in explicit.items() if value is not None}
    if isinstance(given.get("layers"), str):
        given["layers"] = parse_layers(given["layers"])
    if isinstance(given.get("channels"), str):
        given["channels"] = parse_channels(given["channels"])
    if "channels" in given:  # channel layers join the dreamed layers (alone if no layers were given)
        layers = dict(given.get("layers", {}))
        for layer in given["channels"]:
            layers.setdefault(layer, 1.0)
        given["layers"] = layers
    if "model" in given and given["model"] != values.get("model", given["model"]) and "layers" not in given:
        values.pop("layers", None)
        values.pop("max_loss", None)  # calibrated to the preset's layers on the preset's model
    values.update(given)
    options = DreamOptions(**values)
    options.validate()
    return options


def _copied(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value  # never hand out the presets' own dicts


@dataclass
class DreamResult:
    """The dreamed image, the image after each octave (smallest first) and the loss of every step."""

    image: Image.Image
    octaves: list[Image.Image] = field(default_factory=list)
    losses: list[list[float]] = field(default_factory=list)


def dream(
    image: ImageSource, model: str | Backbone | None = None, layers: Any = None, **options: Any
) -> Image.Image:
    """DeepDream `image` (a path, PIL image or array) and return the result as a PIL image.

    `model` is a model name (default inception_v3) or a loaded Backbone; `layers` maps layer
    names to weights (or 'mixed2:0.2,mixed3:3'). Other options: see `DreamOptions`, plus
    `preset='book'|'keras-io'|'google'`.
    """
    return dream_octaves(image, model=model, layers=layers, **options).image


def dream_octaves(
    image: ImageSource,
    model: str | Backbone | None = None,
    layers: Any = None,
    preset: str | None = None,
    **options: Any,
) -> DreamResult:
    """Like `dream`, also returning the image after each octave and the per-step losses."""
    opts = resolve_options(preset, model=model_name(model), layers=layers, **options)
    source = [load_image(image, opts.max_size)]  # a bad image is refused before any weights load
    engine, objective = setup(model, opts)
    return run_octaves(engine, objective, source.pop(), opts)  # pop: run_octaves may free it early


def model_name(model: str | Backbone | None) -> str | None:
    """The `model` option for a name or a loaded Backbone (None: the preset's or the default)."""
    return model.name if isinstance(model, Backbone) else model


def setup(model: str | Backbone | None, opts: DreamOptions) -> tuple[Engine, Objective]:
    """The model on its device (loaded unless `model` is a Backbone already) and the objective."""
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    if not isinstance(model, Backbone):
        # unknown layers or channels are refused before any weights are read or downloaded
        with torch.device("meta"):
            checked_objective(build_backbone(opts.model), opts)
    backbone = model if isinstance(model, Backbone) else load_backbone(opts.model, opts.weights, device)
    engine = Engine(backbone, device, dtype)
    return engine, objective_for(engine, opts)


def objective_for(engine: Engine, opts: DreamOptions) -> Objective:
    """The objective `opts` describes, checked against the model (unknown layers, channel ranges)."""
    guide_features = None
    if opts.guide is not None:
        layers = list(dream_layers(engine.backbone, opts))
        guide = load_image(opts.guide, GUIDE_MAX_SIZE)
        need = engine.min_input_size(layers)
        require(
            min(guide.shape[-2:]) >= need,
            f"the guide image is {guide.shape[2]}x{guide.shape[1]}; "
            f"it needs at least {need} pixels on its shorter side for these layers",
        )
        guide_features = engine.features(engine.to_input(guide[None]), layers)
    return checked_objective(engine.backbone, opts, guide_features)


def checked_objective(backbone: Backbone, opts: DreamOptions, guide_features: Any = None) -> Objective:
    """The objective for `backbone`; ReverieError naming the valid layers or channel range if it does not fit."""
    layers = dream_layers(backbone, opts)
    objective = build_objective(layers, opts.channels, opts.border, opts.reduction, guide_features)
    objective.check(backbone)
    return objective


def dream_layers(backbone: Backbone, opts: DreamOptions) -> dict[str, float]:
    """The layers to dream with their weights: as given, else the model's defaults."""
    return dict(opts.layers) if opts.layers is not None else default_layers(backbone)


def default_layers(backbone: Backbone) -> dict[str, float]:
    """The model's `dream_layers` if it declares some, else the book's if it has them, else its middle stage."""
    declared = getattr(backbone, "dream_layers", None)
    if declared:
        return dict(declared)
    names = set(backbone.stage_names()) | set(backbone.aliases)
    if set(BOOK_LAYERS) <= names:
        return dict(BOOK_LAYERS)
    stages = backbone.stage_names()
    return {stages[len(stages) // 2]: 1.0}


# (class of a model defined here, layers) -> smallest usable input side; see Engine.min_input_size
_MIN_INPUT_SIZES: dict[tuple[type, tuple[str, ...]], int] = {}


class Engine:
    """A backbone on a device and dtype: features, gradients (whole or tiled), input-space bounds.

    Batch norm is folded into the convolutions of a copy of the backbone where the model allows it
    (`Backbone.folds_batchnorm`).
    """

    def __init__(self, backbone: Backbone, device: torch.device, dtype: torch.dtype) -> None:
        if backbone.folds_batchnorm:
            backbone = fold_batchnorm(backbone)
        # NHWC: measured 1.3-2x faster per step than NCHW in float32 here, and what oneDNN's
        # bfloat16 convolutions want
        backbone = backbone.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)
        self.backbone = backbone
        self.device = device
        self.dtype = dtype
        zeros = torch.zeros(1, 3, 1, 1, device=device)
        self.low = backbone.preprocess(zeros)
        self.high = backbone.preprocess(zeros + 1.0)
        self.input_per_pixel_level = float((self.high - self.low).mean()) / 255.0
        self._meta: Backbone | None = None
        self._shapes: dict[tuple, Any] = {}

    def to_input(self, image01: torch.Tensor) -> torch.Tensor:
        return self.backbone.preprocess(image01.to(self.device))

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.deprocess(x)

    def clip_(self, x: torch.Tensor) -> torch.Tensor:
        """`x` limited, in place, to the input-space image of the [0, 1] pixel range."""
        return x.clamp_(min=self.low, max=self.high)

    def features(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations for `layers` (aliases allowed, the same stage may be named twice)."""
        stage_of = {layer: self.backbone.resolve_layer(layer) for layer in layers}
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.dtype):
            out = self.backbone.features(x, list(dict.fromkeys(stage_of.values())))
        return {layer: out[stage] for layer, stage in stage_of.items()}

    def loss_and_gradient(
        self, objective: Objective, x: torch.Tensor, views: Mapping[str, View] | None = None
    ) -> tuple[float, torch.Tensor]:
        """The objective at `x` (1, 3, H, W) and its float32 gradient with respect to `x`."""
        x = x.detach().requires_grad_(True)
        loss = objective(self.features(x, objective.layers), views)
        (grad,) = torch.autograd.grad(loss, x)
        return float(loss.detach()), grad

    def tiled_loss_and_gradient(
        self, objective: Objective, x: torch.Tensor, tile: int, margin: int, phase: tuple[int, int] = (0, 0)
    ) -> tuple[float, torch.Tensor]:
        """The same as `loss_and_gradient`, computed window by window so memory depends on `tile` only.

        The image is cut into cores of `tile` pixels (the grid shifted by `phase`); each core is run
        with `margin` pixels of context around it and only the activations of its own core count, so
        every activation counts once. With a margin at least the network's receptive field this
        equals the untiled gradient; with less it differs only near core edges, and a random phase
        each step keeps those edges from lining up into seams.
        """
        height, width = x.shape[-2:]
        strides = self.strides(objective.layers)
        align = max(strides.values())
        tile = max(align, _round_up(tile, align))
        margin = _round_up(margin, align)
        full = self.activation_shapes(objective.layers, (height, width))
        minimum = self.min_input_size(objective.layers)
        total = 0.0
        grad = torch.zeros_like(x)
        phase_r, phase_c = (p % tile // align * align for p in phase)
        for r0, r1 in _cores(height, tile, phase_r):
            for c0, c1 in _cores(width, tile, phase_c):
                w_r0, w_r1 = _window(r0, r1, height, margin, minimum, align)
                w_c0, w_c1 = _window(c0, c1, width, margin, minimum, align)
                views = {}
                for layer, stride in strides.items():
                    full_h, full_w = full[layer]
                    views[layer] = View(
                        rows=(
                            r0 // stride - w_r0 // stride,
                            (r1 // stride if r1 < height else full_h) - w_r0 // stride,
                        ),
                        cols=(
                            c0 // stride - w_c0 // stride,
                            (c1 // stride if c1 < width else full_w) - w_c0 // stride,
                        ),
                        offset=(w_r0 // stride, w_c0 // stride),
                        full=(full_h, full_w),
                    )
                loss, window_grad = self.loss_and_gradient(objective, x[..., w_r0:w_r1, w_c0:w_c1], views)
                total += loss
                grad[..., w_r0:w_r1, w_c0:w_c1] += window_grad
        return total, grad

    def _meta_twin(self) -> Backbone:
        """A shape-only copy of the model, made once."""
        if self._meta is None:
            self._meta = self.backbone._meta_twin()
        return self._meta

    def min_input_size(self, layers: Sequence[str]) -> int:
        """The smallest square input the model accepts for `layers` (see Backbone.min_input_size).

        For the models defined here, whose architecture is fixed, it is remembered across dreams in
        this process (finding it costs a shape-only copy of the model, up to seconds for
        InceptionV3); another Backbone's shapes may depend on how it was built, so it is found anew."""
        key = (type(self.backbone), tuple(layers))
        if type(self.backbone).__module__ not in MODEL_MODULES.values():
            return self._meta_twin().min_input_size(list(layers))
        if key not in _MIN_INPUT_SIZES:
            _MIN_INPUT_SIZES[key] = self._meta_twin().min_input_size(list(layers))
        return _MIN_INPUT_SIZES[key]

    def activation_shapes(self, layers: Sequence[str], size: tuple[int, int]) -> dict[str, tuple[int, int]]:
        """(height, width) of each layer's activation for an input of `size`, found on the meta device."""
        key = (tuple(size), *layers)
        if key not in self._shapes:
            x = torch.empty(1, 3, *size, device="meta")
            stages = {layer: self.backbone.resolve_layer(layer) for layer in layers}
            out = self._meta_twin().features(x, list(dict.fromkeys(stages.values())))
            self._shapes[key] = {layer: tuple(out[stage].shape[-2:]) for layer, stage in stages.items()}
        return self._shapes[key]

    def strides(self, layers: Sequence[str]) -> dict[str, int]:
        """Each layer's total stride, from how its activation grows when the input grows by 256 pixels."""
        small = self.activation_shapes(layers, (512, 512))
        large = self.activation_shapes(layers, (768, 768))
        return {layer: max(1, round(256 / (large[layer][0] - small[layer][0]))) for layer in layers}


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _cores(length: int, tile: int, phase: int) -> list[tuple[int, int]]:
    """Half-open ranges cutting [0, length) at phase, phase + tile, ... (multiples of the alignment).

    No piece is longer than `tile`, so the largest window, and with it peak memory, is bounded by
    tile + 2 * margin; the end pieces may be thin (a small, cheap window).
    """
    cuts = [0] + [c for c in range(phase, length, tile) if 0 < c < length] + [length]
    return list(itertools.pairwise(cuts))


def _window(start: int, stop: int, length: int, margin: int, minimum: int, align: int) -> tuple[int, int]:
    """The core [start, stop) with `margin` pixels of context, widened to at least `minimum` pixels.

    Both the start and the distance to the image's end are multiples of `align`, so a network
    whose padding depends on the input size (TensorFlow 'same') sees the window on the same
    pixel grid as the whole image.
    """
    low = max(0, start - margin)
    high = length - (length - min(length, stop + margin)) // align * align
    while high - low < minimum and (low > 0 or high < length):
        low, high = max(0, low - align), min(length, high + align)
    return low, high


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


def keep_chroma(dreamed01: torch.Tensor, original01: torch.Tensor) -> torch.Tensor:
    """The luminance of `dreamed01` with the chroma (YCbCr Cb, Cr) of `original01`; (N, 3, H, W) in [0, 1]."""
    matrix = _RGB_TO_YCBCR.to(dreamed01.device)
    dreamed = torch.einsum("ij,njhw->nihw", matrix, dreamed01)
    original = torch.einsum("ij,njhw->nihw", matrix, original01)
    mixed = torch.cat([dreamed[:, :1], original[:, 1:]], dim=1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(matrix), mixed)


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


def run_octaves(
    engine: Engine, objective: Objective, source01: torch.Tensor, opts: DreamOptions
) -> DreamResult:
    """The book's octave loop on a (3, H, W) image in [0, 1], with the extras `opts` turns on."""
    generator = torch.Generator().manual_seed(opts.seed if opts.seed is not None else torch.seed())
    step = opts.step.levels * engine.input_per_pixel_level if isinstance(opts.step, PixelStep) else opts.step
    height, width = source01.shape[-2:]
    minimum = engine.min_input_size(objective.layers)
    shapes = fitting_shapes(
        octave_shapes(height, width, opts.octaves, opts.octave_scale), minimum, engine.backbone.name
    )
    original = engine.to_input(source01[None])
    original01 = source01[None] if opts.keep_colors else None
    del source01
    shrunk = resize(original, shapes[0])
    x = original
    octaves: list[Image.Image] = []
    all_losses: list[list[float]] = []
    for index, shape in enumerate(shapes):
        x = resize(x, shape)
        if x is original:  # a single octave: ascend works in place
            x = x.clone()
        desc = f"octave {index + 1}/{len(shapes)} {shape[1]}x{shape[0]}"
        x, losses = ascend(engine, objective, x, opts, step, generator, desc)
        same_size_original = resize(original, shape)
        x = (x + same_size_original).sub_(resize(shrunk, shape))  # re-inject the detail lost by shrinking
        shrunk = same_size_original
        if opts.keep_colors:
            x = engine.to_input(keep_chroma(engine.to_image(x), resize(original01.to(x.device), shape)))
            if opts.clip:
                x = engine.clip_(x)
        all_losses.append(losses)
        octaves.append(to_pil(engine.to_image(x)[0]))
    return DreamResult(image=octaves[-1], octaves=octaves, losses=all_losses)


def ascend(
    engine: Engine,
    objective: Objective,
    x: torch.Tensor,
    opts: DreamOptions,
    step: float,
    generator: torch.Generator,
    desc: str = "",
) -> tuple[torch.Tensor, list[float]]:
    """Gradient ascent at one size, updating `x` in place: `opts.iterations` steps of
    `step * g / max(mean|g|, 1e-7)`.

    Stops early, before stepping, once the loss exceeds `opts.max_loss` (the book's rule).
    Returns the image and the loss at each evaluated step.
    """
    losses: list[float] = []
    bar = tqdm(total=opts.iterations, desc=desc, file=sys.stderr, disable=not opts.progress)
    with bar:
        for _ in range(opts.iterations):
            shift = _random_shift(opts.jitter, generator)
            rolled = torch.roll(x, shifts=shift, dims=(-2, -1)) if opts.jitter else x
            if opts.tile is not None:
                phase = tuple(int(torch.randint(0, opts.tile, (1,), generator=generator)) for _ in range(2))
                loss, grad = engine.tiled_loss_and_gradient(
                    objective, rolled, opts.tile, opts.tile_margin, phase
                )
            else:
                loss, grad = engine.loss_and_gradient(objective, rolled)
            losses.append(loss)
            bar.set_postfix(loss=f"{loss:.4g}")
            bar.update()
            if opts.max_loss is not None and loss > opts.max_loss:
                break
            del rolled  # full-size tensors dominate a tiled run's memory: keep as few alive as possible
            if opts.jitter:
                grad = torch.roll(grad, shifts=(-shift[0], -shift[1]), dims=(-2, -1))
            if opts.lap_norm:
                grad = lap_normalize(grad, opts.lap_norm)
            mean_abs = float(torch.linalg.vector_norm(grad, ord=1)) / grad.numel()
            x.add_(grad, alpha=step / max(mean_abs, 1e-7))
            del grad
            if opts.clip:
                engine.clip_(x)
    return x, losses


def _random_shift(jitter: int, generator: torch.Generator) -> tuple[int, int]:
    if not jitter:
        return (0, 0)
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
    return (dy, dx)


if __name__ == "__main__":
    from reverie.cli import main

    main(["dream", *sys.argv[1:]])
