"""Feature visualization: the image, rendered from noise, that a convnet's channel, neuron or layer wants.

    import reverie
    from reverie import objectives as obj
    dreamer = reverie.load_dreamer("efficientnet_lite0")
    reverie.visualize(dreamer, "block8:7").images[0].save("block8-7.png")   # channel 7's mean activation
    reverie.visualize(dreamer, obj.activation("block8", 7) - 0.5 * obj.activation("block8", 12))
    sheet = reverie.visualize_channels(dreamer, "block8", range(16))        # .sheet: a labelled grid
    reverie.visualize(dreamer, "block8:7", diversity=4, param="pixel", steps=128, size=128, seed=1)

The objective is any `reverie.objectives` objective (they add and scale as for dreaming), or a
string: "LAYER" (the layer's mean activation), "LAYER:C,..." (those channels' mean activation),
with `neuron=True` the activation at the centre position only. The image is parameterized
(`param`) by its Fourier spectrum, scaled so that every frequency starts with equal energy, with the
colours decorrelated by lucid's ImageNet colour-correlation matrix ("fourier", the default), or by
plain pixels ("pixel"), each squashed into [0, 1] by a sigmoid and optimized by Adam at `lr`. At every
step the network sees the image through the robustness transforms (`robust_transforms()` of
reverie.transforms: pad 12, shift up to 8, scale 0.9-1.1, rotate up to 10 degrees, shift up to 4;
`transforms=` takes any list of input transforms, the protocol a dream's `transforms=` takes), so
what grows is what survives small changes.
`diversity=N` renders N images at once with lucid's diversity term (the images' Gram matrices at
the objective's first layer pushed apart) added with weight `diversity_weight`. Seeded: the same
call gives the same images. `stop=` (a threading.Event or a function of no arguments, asked before
every step; see reverie.stopping) ends a rendering early with DreamStopped, as it does a
dream.

    reverie visualize efficientnet_lite0 block8:7 --out block8-7.png
    reverie visualize efficientnet_lite0 block8 --channels 0-15 --grid --size 128 --steps 128
    python -m reverie.deepdream.visualize efficientnet_lite0 block8:7 out.png
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from reverie.deepdream.dreamer import Dreamer, load_dreamer
from reverie.deepdream.dreamtypes import StepContext
from reverie.deepdream.hooked import Preprocess
from reverie.deepdream.images import to_pil
from reverie.deepdream.objectives import MeanActivation, Objective
from reverie.deepdream.objectives import diversity as diversity_term
from reverie.deepdream.octaves import DreamStopped
from reverie.deepdream.transforms import (
    Pad,
    Pipeline,
    RandomRotate,
    RandomScale,
    Shift,
    TransformFunction,
    robust_transforms,
)
from reverie.device import DTYPE_CHOICES
from reverie.errors import ReverieError, require
from reverie.options import option, resolve
from reverie.rng import seed_option
from reverie.stopping import STOP_RULE, Stop, stop_function

PARAMS = ("fourier", "pixel")
# lucid's square root of ImageNet's colour correlation (its columns: the decorrelated colour axes)
COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR = COLOR_SQRT / COLOR_SQRT.norm(dim=0).max()
INIT_STD = 0.01  # the spread of the starting noise, in parameter units
MAX_SIZE = 2048
MAX_GRID_CHANNELS = 1024


@dataclass
class VisualizeOptions:
    """Every knob of a feature visualization; `reverie visualize --help` lists them under these names."""

    KIND: ClassVar[str] = "visualize"  # in reverie.options.resolve's refusal of an unknown name
    combine: ClassVar[Callable[..., dict[str, Any]]]  # how given options combine, below

    size: int = option(224, "the side of the square image, pixels", low=16, high=MAX_SIZE)
    steps: int = option(256, "optimization steps per image", low=1)
    param: str = option(
        "fourier", "the image's parameterization: fourier (decorrelated) or pixel", choices=PARAMS
    )
    lr: float = option(0.05, "Adam's learning rate on the parameterization", low=0, low_open=True)
    neuron: bool = option(False, "maximize the centre position of each channel, not its mean", switch=True)
    diversity: int = option(1, "images per objective, pushed apart by a diversity term", low=1, high=64)
    batch: int = option(
        1, "channels of a sheet rendered together (faster; one progress bar per batch)", low=1, high=256
    )
    diversity_weight: float = option(10.0, "the weight of the diversity term", low=0)
    seed: int = seed_option(0, "the seed of the starting noise and the transforms")
    dtype: str | None = option(
        None,
        "bfloat16 autocast or float32 (default: a Dreamer's own; auto, measured once, for one loaded here)",
        choices=DTYPE_CHOICES,
    )
    progress: bool = option(True, "a progress bar per image on stderr", cli=False)
    transforms: Sequence[TransformFunction] | None = option(
        None,
        "what the network sees of the image at each step: input transforms from reverie.transforms, "
        "the same kind a dream takes (default robust_transforms())",
        cli=False,
    )
    stop: Callable[[], bool] | None = option(
        None,
        "asked before every optimization step (a threading.Event, or a function); once set or True "
        "the rendering ends with DreamStopped",
        rule=STOP_RULE,
        cli=False,
    )


def _combine(
    values: dict[str, Any], given: dict[str, Any], preset: str | None, resumed: bool
) -> dict[str, Any]:
    """A visualization's rule of combination (reverie.options.resolve calls it): `stop` as a function."""
    if "stop" in given:
        given["stop"] = stop_function(given["stop"])  # an Event's is_set
    return {**values, **given}


VisualizeOptions.combine = staticmethod(_combine)


# ---- parameterizations: parameters -> (N, 3, size, size) in [0, 1] ----------------------------------------


class FourierImage(torch.nn.Module):
    """An image as its (real FFT) spectrum, each frequency scaled by 1 / frequency so that low and high
    frequencies start with equal energy, its colours mixed through the decorrelation matrix."""

    def __init__(self, batch: int, size: int, generator: torch.Generator) -> None:
        super().__init__()
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        frequency = (fy.square() + fx.square()).sqrt()
        self.register_buffer("scale", 1.0 / frequency.clamp_min(1.0 / size))
        shape = (batch, 3, *frequency.shape, 2)
        self.spectrum = torch.nn.Parameter(torch.randn(shape, generator=generator) * INIT_STD)
        self.size = size

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        image = torch.einsum("ij,njhw->nihw", COLOR.to(image.device), image)
        return torch.sigmoid(image)


class PixelImage(torch.nn.Module):
    """An image as its pixels (through a sigmoid), the book's way: no decorrelation."""

    def __init__(self, batch: int, size: int, generator: torch.Generator) -> None:
        super().__init__()
        self.pixels = torch.nn.Parameter(torch.randn(batch, 3, size, size, generator=generator) * INIT_STD)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.pixels)


PARAMETERIZATIONS: dict[str, type[torch.nn.Module]] = {"fourier": FourierImage, "pixel": PixelImage}


# ---- objectives from strings ----------------------------------------------------------------------------


def parse_indices(text: str, most: int | None = None) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]; with `most`, more than `most` channels are refused before any
    range is spelled out (so '0-999999999' costs nothing)."""
    spans: list[tuple[int, int]] = []
    for part in (item.strip() for item in text.split(",")):
        low, dash, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise ReverieError(f"channels are written 0-63,70 (whole numbers), got {text!r}") from None
        require(first <= last, f"the channel range {part!r} runs backwards")
        spans.append((first, last))
    count = sum(last - first + 1 for first, last in spans)
    require(most is None or count <= most, f"{text!r} names {count:,} channels; at most {most} per sheet")
    indices = [index for first, last in spans for index in range(first, last + 1)]
    require(bool(indices), f"no channels in {text!r}")
    return indices


def parse_target(text: str) -> tuple[str, list[int] | None]:
    """'block8:3,5' -> ('block8', [3, 5]); 'block8' -> ('block8', None)."""
    name, sep, listed = text.rpartition(":") if ":" in text else (text, "", "")
    require(bool(name.strip()), f"write the target as LAYER or LAYER:CHANNEL,..., got {text!r}")
    return name.strip(), parse_indices(listed) if sep else None


class EachChannel(Objective):
    """Image i of a batch maximizing channel `channels[i]` of `layer` (mean, or centre with `neuron`):
    the mean over the images of each one's own channel activation, so a sheet renders in one batch."""

    def __init__(self, layer: str, channels: Sequence[int], neuron: bool = False) -> None:
        self.layer = layer
        self.index = [int(c) for c in channels]
        self.neuron = neuron
        self.layers = (layer,)

    @property
    def channels(self) -> dict[str, list[int]]:
        return {self.layer: list(self.index)}

    def __call__(self, features: Any, views: Any = None) -> torch.Tensor:
        activation = features[self.layer].float()
        rows = torch.arange(len(self.index), device=activation.device)
        chosen = activation[rows, torch.tensor(self.index, device=activation.device)]  # (N, h, w)
        if self.neuron:
            h, w = chosen.shape[-2:]
            return chosen[:, h // 2, w // 2].mean()
        return chosen.mean()

    def __repr__(self) -> str:
        return f"each_channel({self.layer!r}, {self.index})"


def target_objective(text: str, neuron: bool = False) -> Objective:
    """The objective a target string names (see the module docstring)."""
    name, channels = parse_target(text)
    return MeanActivation(name, channels, (-1, -1) if neuron else None)


# ---- rendering ------------------------------------------------------------------------------------------


@dataclass
class Visualization:
    """The rendered images (PIL, and as a (N, 3, H, W) tensor in [0, 1]) and the objective at every step."""

    objective: Objective
    tensor: torch.Tensor
    values: list[float] = field(default_factory=list)

    @property
    def images(self) -> list[Image.Image]:
        return [to_pil(image) for image in self.tensor]


@dataclass
class ChannelSheet:
    """One visualization per channel of a layer, and their labelled grid."""

    layer: str
    channels: list[int]
    results: list[Visualization]

    @property
    def sheet(self) -> Image.Image:
        labels = [f"{self.layer}:{c}" for c in self.channels for _ in range(len(self.results[0].tensor))]
        return grid([image for result in self.results for image in result.images], labels)


def as_dreamer(
    model: Any, weights: Any = None, device: str = "auto", dtype: str = "auto", preprocess: Any = None
) -> Dreamer:
    """`model` as a dreamer: a Dreamer as it is, else one loaded now (a name, Backbone or nn.Module)."""
    if isinstance(model, Dreamer):
        require(
            weights is None and preprocess is None, "weights= and preprocess= are for a model not yet loaded"
        )
        return model
    return load_dreamer(model, weights, device, dtype, preprocess)


def render(
    dreamer: Dreamer, objective: Objective, opts: VisualizeOptions, label: str = "", count: int | None = None
) -> Visualization:
    """Optimize `count` (default `opts.diversity`) images from seeded noise to maximize `objective`."""
    objective.check(dreamer)
    need = dreamer.min_input_size(list(objective.layers))
    require(opts.size >= need, f"--size {opts.size} is too small for these layers; give at least {need}")
    if opts.diversity > 1:
        objective = objective + opts.diversity_weight * diversity_term(objective.layers[0])
    dtype = dreamer.dtype_for(opts.dtype)
    bound = objective.bind(dreamer, dtype)
    transforms = Pipeline(opts.transforms if opts.transforms is not None else robust_transforms())
    require(
        transforms.stages() <= {"input"},
        "a visualization takes input transforms (what the network sees); gradient and image transforms "
        "such as LapNormalize, KeepColors and Clip act on a dream's image",
    )
    generator = torch.Generator().manual_seed(opts.seed)
    context = StepContext(generator, dreamer)
    image = PARAMETERIZATIONS[opts.param](count or opts.diversity, opts.size, generator).to(dreamer.device)
    optimizer = torch.optim.Adam(image.parameters(), lr=opts.lr)
    values: list[float] = []
    bar = tqdm(range(opts.steps), desc=label or repr(objective), disable=not opts.progress, file=sys.stderr)
    with torch.enable_grad():
        for index in bar:
            if opts.stop is not None and opts.stop():
                bar.close()
                raise DreamStopped(
                    f"the visualization {label or repr(objective)} was stopped before step {index + 1} "
                    f"of {opts.steps}"
                )
            x = transforms.on_input(image(), context)
            value = bound(dreamer.features(dreamer.to_input(x), bound.layers, dtype))
            optimizer.zero_grad(set_to_none=True)
            (-value).backward()
            optimizer.step()
            values.append(float(value.detach()))
            bar.set_postfix(objective=f"{values[-1]:.3g}", refresh=False)
    require(all(math.isfinite(v) for v in values), "the objective became NaN or infinite; lower --lr")
    with torch.no_grad():
        final = image().detach().float().cpu()
    return Visualization(objective, final, values)


def visualize(
    model: Any,
    objective: Objective | str,
    *,
    weights: Any = None,
    device: str = "auto",
    preprocess: Preprocess | None = None,
    stop: Stop | None = None,
    **options: Any,
) -> Visualization:
    """Render from noise the image(s) maximizing `objective` (an Objective or a target string) on `model`
    (a Dreamer, a model name, a Backbone or any torch.nn.Module). Options: VisualizeOptions' fields.
    `stop` (a threading.Event or a function) is asked before every step; once set, DreamStopped."""
    opts = resolve(VisualizeOptions, {**options, "stop": stop})
    require(
        isinstance(objective, (Objective, str)),
        f"objective must be an objective or a string like 'block8:7', got {type(objective).__name__}",
    )
    chosen = target_objective(objective, opts.neuron) if isinstance(objective, str) else objective
    dreamer = as_dreamer(model, weights, device, opts.dtype or "auto", preprocess)
    return render(dreamer, chosen, opts, objective if isinstance(objective, str) else "")


def visualize_channels(
    model: Any,
    layer: str,
    channels: Iterable[int] | str,
    *,
    weights: Any = None,
    device: str = "auto",
    preprocess: Preprocess | None = None,
    stop: Stop | None = None,
    **options: Any,
) -> ChannelSheet:
    """One visualization (of `diversity` images) per channel of `layer`; `.sheet` is their labelled grid.
    `channels` is an iterable of indices or a string such as '0-63'; `stop` as for `visualize`."""
    opts = resolve(VisualizeOptions, {**options, "stop": stop})
    indices = parse_indices(channels) if isinstance(channels, str) else [int(c) for c in channels]
    require(bool(indices), "no channels given")
    require(len(indices) <= MAX_GRID_CHANNELS, f"at most {MAX_GRID_CHANNELS} channels per sheet")
    dreamer = as_dreamer(model, weights, device, opts.dtype or "auto", preprocess)
    EachChannel(layer, indices).check(dreamer)  # every channel refused before the first is rendered
    results: list[Visualization] = []
    if opts.diversity > 1 or opts.batch == 1:
        for c in indices:
            objective = MeanActivation(layer, [c], (-1, -1) if opts.neuron else None)
            results.append(render(dreamer, objective, opts, f"{layer}:{c}"))
        return ChannelSheet(layer, indices, results)
    for start in range(0, len(indices), opts.batch):
        part = indices[start : start + opts.batch]
        label = f"{layer}:{part[0]}" + (f"-{part[-1]} ({len(part)} channels)" if len(part) > 1 else "")
        batch = render(dreamer, EachChannel(layer, part, opts.neuron), opts, label, count=len(part))
        results.extend(Visualization(batch.objective, image[None], batch.values) for image in batch.tensor)
    return ChannelSheet(layer, indices, results)


def grid(images: Sequence[Image.Image], labels: Sequence[str], columns: int | None = None) -> Image.Image:
    """The images as tiles of a white sheet, each labelled underneath; `columns` default ~square."""
    require(len(images) > 0 and len(images) == len(labels), "a grid needs as many labels as images")
    columns = columns or math.ceil(math.sqrt(len(images)))
    width, height = images[0].size
    strip = 14
    rows = math.ceil(len(images) / columns)
    sheet = Image.new("RGB", (columns * (width + 2) + 2, rows * (height + strip + 2) + 2), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (image, label) in enumerate(zip(images, labels)):
        x = 2 + (index % columns) * (width + 2)
        y = 2 + (index // columns) * (height + strip + 2)
        sheet.paste(image.resize((width, height)), (x, y))
        draw.text((x + 2, y + height + 1), label, fill="black")
    return sheet


__all__ = [
    "ChannelSheet",
    "Pad",
    "RandomRotate",
    "RandomScale",
    "Shift",
    "Visualization",
    "VisualizeOptions",
    "grid",
    "robust_transforms",
    "visualize",
]


if __name__ == "__main__":
    name, target = sys.argv[1], sys.argv[2]
    visualize(name, target, size=128, steps=64).images[0].save(
        sys.argv[3] if len(sys.argv) > 3 else "vis.png"
    )
