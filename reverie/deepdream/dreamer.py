"""A convnet loaded once and ready to dream, and the one-shot `dream` / `dream_octaves`.

    import reverie
    dreamer = reverie.load_dreamer("efficientnet_lite0")    # weights, device, shapes: prepared once
    dreamer.dream("photo.jpg").save("photo-dream.png")      # as many dreams as you like, no reload
    result = dreamer.octaves("photo.jpg", preset="book", layers="block8")   # .image .octaves .losses
    reverie.dream("photo.jpg", model="efficientnet_lite0")  # one dream: load_dreamer, then dream

The options are `reverie.deepdream.options.DreamOptions`, plus `preset=` and `objective=` /
`transforms=` (`reverie.objectives`, `reverie.transforms`). A dreamer's model, weights and device
are its own; `dtype` may change per dream (it picks the autocast; `auto` is what reverie.precision
measures for this model on this machine, float32 or bfloat16, with or without channels-last, when
`dreamer.choose_dtype()` is called: by the first dream that asks for auto, or by you up front; then
cached). Reading `dreamer.dtype` never measures. All arithmetic happens in the
model's input space (the book's [-1, 1] for InceptionV3), so `step` is in those units, as the
book's 0.01.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from reverie import precision
from reverie.deepdream.backbone import Backbone, LayerInfo, fold_batchnorm, load_backbone, meta_backbone
from reverie.deepdream.hooked import Preprocess, wrap_module
from reverie.deepdream.images import ImageSource, load_image
from reverie.deepdream.objectives import Objective, parse_objective
from reverie.deepdream.octaves import DreamResult, Plan, run_octaves
from reverie.deepdream.options import PRESETS, DreamOptions, PixelStep, transforms_of
from reverie.deepdream.transforms import Pipeline
from reverie.device import DEVICES, autocast, resolve_device, resolve_dtype
from reverie.errors import ReverieError, require
from reverie.options import resolve
from reverie.stopping import Stop

Model = str | Backbone  # what load_dreamer takes: a registered model's name, or a Backbone to use as given
MEASURE_SIZE = 224  # the square image --dtype auto times a dream step on (at least the model's minimum)
JUDGE_SIZE, JUDGE_STEPS = 160, 8  # the square image and the steps of the dreams auto judges ways by


class Dreamer:
    """A backbone prepared for dreaming: on its device, gradients off, batch norm folded where the
    model allows it, channels-last; its input-space bounds; its shapes, probed once on a meta twin.

    Made by `load_dreamer`. `dream` and `octaves` run dreams; `features`, `loss_and_gradient`,
    `min_input_size`, `activation_shapes` and `strides` are what objectives, transforms and tiling use.
    """

    def __init__(
        self,
        backbone: Backbone,
        device: str | torch.device = "auto",
        dtype: str = "auto",
        weights: str | Path | None = None,
        owned: bool = False,
    ) -> None:
        """`owned`: the backbone is the dreamer's own (loaded for it), so it is prepared in place
        rather than copied."""
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.dtype_option = dtype
        resolve_dtype(dtype, self.device, lambda: precision.Choice("float32", "", {}))  # refuse a bad name
        self._choice: precision.Choice | None = None
        self.weights = weights
        self._given = weakref.ref(backbone)  # the caller's model, which `model=` may name again
        if backbone.folds_batchnorm and any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules()):
            backbone = fold_batchnorm(backbone, inplace=owned)
        backbone = backbone.eval().requires_grad_(False)
        # channels-last: the layout oneDNN's and cuDNN's convolutions usually run fastest (auto measures)
        self.memory_format = torch.channels_last
        self.backbone = backbone.to(self.device, memory_format=self.memory_format)
        self.name = backbone.name
        zeros = torch.zeros(1, 3, 1, 1, device=self.device)
        self.low = self.backbone.preprocess(zeros)
        self.high = self.backbone.preprocess(zeros + 1.0)
        self.input_per_pixel_level = float((self.high - self.low).mean()) / 255.0
        self.meta = self.backbone.meta_twin()
        self._layer_table: list[LayerInfo] | None = None
        self._min_sizes: dict[tuple[str, ...], int] = {}
        self._shapes: dict[tuple[Any, ...], dict[str, tuple[int, int]]] = {}

    def __repr__(self) -> str:
        return f"Dreamer({self.name!r}, device={str(self.device)!r}, dtype={self.dtype_option!r})"

    @property
    def dtype(self) -> torch.dtype:
        """The dreams' default autocast dtype. Reading it measures nothing: for `auto` it is what
        `choose_dtype()` chose, float32 until that was called."""
        if self.dtype_option == "auto":
            return self._choice.dtype if self._choice is not None else torch.float32
        return resolve_dtype(self.dtype_option, self.device)

    def dtype_for(self, option: str | None = None) -> torch.dtype:
        """The autocast dtype of a dream or visualization asking for `option` (None: the dreamer's
        own): float32 or bfloat16 as named, `auto` what `choose_dtype()` measures (once)."""
        return resolve_dtype(option or self.dtype_option, self.device, self.choose_dtype)

    def choose_dtype(self) -> precision.Choice:
        """Measure what `--dtype auto` runs this model in here, once per dreamer: reverie.precision
        times a dream step (the model's default layers, a seeded 224x224 image) in float32 and
        bfloat16, each with and without channels-last, and keeps the fastest whose dream agrees with
        float32's: a few steps of the model's default dream on a small seeded image, its picture as
        close to float32's as float32's with another jitter seed is (precision.picture_judge);
        cached per machine. Then it moves the network to that layout. The dream functions call it
        (through `dtype_for`) when a dream asks for auto; call it yourself to measure up front."""
        if self._choice is None:
            kind = f"dream {self.name} (picture)"  # "(picture)": verdicts of the gradient rule are not reused
            measured_before = precision.cached(kind, self.device) is not None
            self._choice = precision.choose(
                kind,
                self.device,
                self._step_work(),
                precision.LAYOUTS,
                judge=precision.picture_judge(self._judge_dream),
            )
            if not measured_before:
                print(f"reverie: --dtype auto: {self._choice.way} ({self._choice.reason})", file=sys.stderr)
            self.set_layout(self._choice.channels_last)
        return self._choice

    def set_layout(self, channels_last: bool) -> None:
        """Run the network channels-last or in the plain (NCHW) layout from now on."""
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.backbone.to(memory_format=self.memory_format)

    def _step_work(self) -> precision.Work:
        objective = parse_objective(self.backbone)
        objective.check(self)
        size = max(MEASURE_SIZE, self.min_input_size(objective.layers))
        generator = torch.Generator().manual_seed(0)
        image = self.to_input(torch.rand(1, 3, size, size, generator=generator))

        def work(way: str) -> tuple[float, torch.Tensor]:
            self.set_layout(way.endswith("channels-last"))
            bound = objective.bind(self, precision.dtype_of(way))
            return self.loss_and_gradient(bound, image, dtype=precision.dtype_of(way))

        return work

    def _judge_dream(self, way: str, seed: int) -> np.ndarray:
        """The picture of the model's default dream (one octave, JUDGE_STEPS steps, jitter `seed`) of
        a seeded smooth JUDGE_SIZE-square image, run in `way`: what auto compares ways by."""
        self.set_layout(way.endswith("channels-last"))
        layers = parse_objective(self.backbone).layers
        size = max(JUDGE_SIZE, self.min_input_size(layers))
        generator = torch.Generator().manual_seed(0)
        coarse = torch.rand(1, 3, 6, 6, generator=generator)  # smooth color fields, some fine texture
        image = torch.nn.functional.interpolate(
            coarse, size=(size, size), mode="bicubic", align_corners=False
        )
        image = image[0] + 0.03 * torch.randn(3, size, size, generator=generator)
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        dtype = way.split()[0]
        result = self.octaves(
            pixels, dtype=dtype, octaves=1, iterations=JUDGE_STEPS, seed=seed, progress=False
        )
        return np.asarray(result.image)

    # ---- dreams ---------------------------------------------------------------------------------

    def dream(self, image: ImageSource, preset: str | None = None, **options: Any) -> Image.Image:
        """DeepDream `image` (a path, PIL image or array) and return the result as a PIL image."""
        return self.octaves(image, preset, **options).image

    def octaves(self, image: ImageSource, preset: str | None = None, **options: Any) -> DreamResult:
        """Like `dream`, also giving the image after each octave and the loss of every step."""
        plan = self.plan(preset, **options)
        return run_octaves(plan, load_image(image, plan.options.max_size))

    def plan(self, preset: str | None = None, **options: Any) -> Plan:
        """The settings of a dream on this dreamer (what `octaves` runs), for running it on many images."""
        return self._plan(self.resolve(preset, **options))

    def resolve(self, preset: str | None = None, **options: Any) -> DreamOptions:
        """The options (reverie.options.resolve) with this dreamer's model, weights and device; another
        one is refused.
        Its dtype applies unless the dream gives one (a preset runs float32)."""
        options = dict(options)
        model, weights, device = (options.pop(key, None) for key in ("model", "weights", "device"))
        self._refuse_others(model, weights, device)
        if options.get("dtype") is None and "dtype" not in PRESETS.get(preset or "", {}):
            options["dtype"] = self.dtype_option
        device_option = self.device.type if self.device.type in DEVICES else None
        own = {"model": self.name, "weights": self.weights, "device": device_option}
        return resolve(DreamOptions, {**own, **options}, preset)

    def _refuse_others(self, model: Any, weights: Any, device: Any) -> None:
        # the caller's model, this dreamer, its prepared backbone, a hooked module's network
        mine = (self, self._given(), self.backbone, getattr(self.backbone, "net", None))
        if model is not None and not any(model is one for one in mine):
            if not isinstance(model, str):
                raise ReverieError(
                    f"this dreamer runs its own {self.name}; to dream with another "
                    f"{getattr(model, 'name', model)} model, load another dreamer: "
                    "reverie.load_dreamer(model)"
                )
            require(
                model == self.name,
                f"this dreamer runs {self.name}; to dream with {model!r}, load another dreamer: "
                f"reverie.load_dreamer({model!r})",
            )
        if weights is not None:
            require(
                self.weights is not None and Path(weights) == Path(self.weights),
                f"this dreamer runs {self.name} with {self.weights or 'its default weights'}; for {weights}, "
                f"load another dreamer: reverie.load_dreamer({self.name!r}, weights={str(weights)!r})",
            )
        if device is not None:
            wanted = resolve_device(device) if isinstance(device, str) else torch.device(device)
            require(
                wanted.type == self.device.type and wanted.index in (None, self.device.index),
                f"this dreamer runs on {self.device}; for {device}, load another dreamer: "
                f"reverie.load_dreamer({self.name!r}, device={str(device)!r})",
            )

    def _plan(self, opts: DreamOptions, objective: Objective | None = None) -> Plan:
        """The plan of `opts` (resolved for this dreamer); `objective` if it was already made and checked."""
        if objective is None:
            objective = objective_of(opts, self.backbone)
            objective.check(self)
        step = opts.step
        if isinstance(step, PixelStep):
            step = step.levels * self.input_per_pixel_level
        dtype = self.dtype_for(opts.dtype)
        return Plan(self, opts, objective.bind(self, dtype), Pipeline(transforms_of(opts)), dtype, step)

    # ---- the network ----------------------------------------------------------------------------

    def to_input(self, image01: torch.Tensor) -> torch.Tensor:
        """An RGB batch in [0, 1] in the network's input space, on the dreamer's device."""
        return self.backbone.preprocess(image01.to(self.device))

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input space back to RGB in [0, 1] (not clipped)."""
        return self.backbone.deprocess(x)

    def clip_(self, x: torch.Tensor) -> torch.Tensor:
        """`x` limited, in place, to the input-space image of the [0, 1] pixel range."""
        return x.clamp_(min=self.low, max=self.high)

    def features(
        self, x: torch.Tensor, layers: Sequence[str], dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """Activations for `layers` (aliases allowed, the same stage may be named twice), under
        `dtype`'s autocast (default: the dreamer's)."""
        stage_of = {layer: self.backbone.resolve_layer(layer) for layer in layers}
        x = x.contiguous(memory_format=self.memory_format)
        with autocast(self.device, dtype or self.dtype):
            out = self.backbone.features(x, list(dict.fromkeys(stage_of.values())))
        return {layer: out[stage] for layer, stage in stage_of.items()}

    def loss_and_gradient(
        self,
        objective: Objective,
        x: torch.Tensor,
        views: Mapping[str, Any] | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[float, torch.Tensor]:
        """The objective at `x` (1, 3, H, W) and its float32 gradient with respect to `x`."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            loss = objective(self.features(x, objective.layers, dtype), views)
            (grad,) = torch.autograd.grad(loss, x)
        return float(loss.detach()), grad

    # ---- shapes, probed on the meta twin once per dreamer -----------------------------------------

    def resolve_layer(self, layer: str) -> str:
        """The stage name of `layer` (a stage name or an alias); ReverieError listing the valid names."""
        return self.backbone.resolve_layer(layer)

    def layer_table(self) -> list[LayerInfo]:
        """Every usable layer with its channels and stride (see Backbone.layer_table)."""
        if self._layer_table is None:
            self._layer_table = self.meta.layer_table()
        return self._layer_table

    def min_input_size(self, layers: Sequence[str]) -> int:
        """The smallest square input the model accepts for `layers` (see Backbone.min_input_size)."""
        key = tuple(layers)
        if key not in self._min_sizes:
            self._min_sizes[key] = self.meta.min_input_size(list(layers))
        return self._min_sizes[key]

    def activation_shapes(self, layers: Sequence[str], size: tuple[int, int]) -> dict[str, tuple[int, int]]:
        """(height, width) of each layer's activation for an input of `size`."""
        key = (tuple(size), *layers)
        if key not in self._shapes:
            x = torch.empty(1, 3, *size, device="meta")
            stages = {layer: self.backbone.resolve_layer(layer) for layer in layers}
            out = self.meta.features(x, list(dict.fromkeys(stages.values())))
            self._shapes[key] = {layer: tuple(out[stage].shape[-2:]) for layer, stage in stages.items()}
        return self._shapes[key]

    def strides(self, layers: Sequence[str]) -> dict[str, int]:
        """Each layer's total stride, from how its activation grows when the input grows by 256 pixels."""
        small = self.activation_shapes(layers, (512, 512))
        large = self.activation_shapes(layers, (768, 768))
        return {layer: max(1, round(256 / (large[layer][0] - small[layer][0]))) for layer in layers}


def load_dreamer(
    model: Model | torch.nn.Module = "inception_v3",
    weights: str | Path | None = None,
    device: str | torch.device = "auto",
    dtype: str = "auto",
    preprocess: Preprocess | None = None,
) -> Dreamer:
    """The dreamer of `model`: a registered name, a Backbone used as given, weights and all, or any
    torch.nn.Module, whose layers are then its module paths ("layer3.1.conv2", read by forward hooks;
    see reverie.deepdream.hooked) and whose input `preprocess` gives ("imagenet", the default,
    "[-1,1]", "[0,1]" or a per-channel affine function of RGB in [0, 1]).

    `weights` is a local weight file (None: the model's default, downloaded and cached on first use
    where it has to be); `device` auto|cpu|cuda|mps; `dtype` auto|float32|bfloat16, the dreams'
    default autocast (auto: the fastest way whose short dream stays as close to float32's as
    float32's with another jitter seed does, measured on the first dream).
    """
    torch_device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    resolve_dtype(dtype, torch_device)  # a bad dtype is refused before any weights load
    if isinstance(model, torch.nn.Module) and not isinstance(model, Backbone):
        require(weights is None, "weights= is for a model given by name; a torch.nn.Module is used as given")
        return Dreamer(wrap_module(model, preprocess), torch_device, dtype)
    require(preprocess is None, "preprocess= is for a torch.nn.Module; a reverie model has its own")
    if isinstance(model, Backbone):
        require(
            weights is None,
            f"weights= is for a model given by name; the Backbone {model.name} is used as given",
        )
        return Dreamer(model, torch_device, dtype)
    return Dreamer(load_backbone(model, weights), torch_device, dtype, weights, owned=True)


def model_name(model: str | Backbone | Dreamer | None) -> str | None:
    """The `model` option for a name, a Backbone or a Dreamer (None: the preset's or the default)."""
    return model.name if isinstance(model, (Backbone, Dreamer)) else model


def objective_of(opts: DreamOptions, backbone: Backbone) -> Objective:
    """The objective of `opts`: as given, else from its layers, channels and guide (not yet checked)."""
    if opts.objective is not None:
        return opts.objective
    return parse_objective(backbone, opts.layers, opts.channels, opts.guide, opts.reduction, opts.border)


def resolve_for(
    model: str | Backbone | Dreamer | None, preset: str | None, options: Mapping[str, Any]
) -> DreamOptions:
    """The options of a dream on `model` (a Dreamer's own model, weights and device)."""
    if isinstance(model, Dreamer):
        return model.resolve(preset, **options)
    return resolve(DreamOptions, {**options, "model": model_name(model)}, preset)


def plan_for(model: str | Backbone | Dreamer | None, opts: DreamOptions) -> Plan:
    """The plan of `opts` on `model`: a Dreamer as it is, else one loaded now, after the objective
    was checked on the meta-device architecture (unknown layers are refused before any weights load)."""
    if isinstance(model, Dreamer):
        return model._plan(opts)
    if isinstance(model, Backbone):
        return load_dreamer(model, opts.weights, opts.device, opts.dtype)._plan(opts)
    architecture = meta_backbone(opts.model)
    objective = objective_of(opts, architecture)
    objective.check(architecture)
    dreamer = load_dreamer(opts.model, opts.weights, opts.device, opts.dtype)
    return dreamer._plan(opts, objective)


def dream(
    image: ImageSource,
    model: str | Backbone | Dreamer | None = None,
    *,
    stop: Stop | None = None,
    **options: Any,
) -> Image.Image:
    """DeepDream `image` (a path, PIL image or array) once and return the result as a PIL image.

    `model` is a model name (default inception_v3), a Backbone or a Dreamer; the options are
    DreamOptions' fields, plus `preset='book'|'keras-io'|'google'`. `stop` (a threading.Event or a
    function, see reverie.stopping) is asked before every gradient step; once set, the
    dream ends with DreamStopped. For several dreams with one model, `load_dreamer` once and call
    its `dream`.
    """
    return dream_octaves(image, model, stop=stop, **options).image


def dream_octaves(
    image: ImageSource,
    model: str | Backbone | Dreamer | None = None,
    preset: str | None = None,
    *,
    stop: Stop | None = None,
    **options: Any,
) -> DreamResult:
    """Like `dream`, also giving the image after each octave and the loss of every step."""
    opts = resolve_for(model, preset, {**options, "stop": stop})
    source = [load_image(image, opts.max_size)]  # a bad image is refused before any weights load
    plan = plan_for(model, opts)
    return run_octaves(plan, source.pop())  # pop: run_octaves may free it early


__all__ = ["DreamResult", "Dreamer", "dream", "dream_octaves", "load_dreamer"]
