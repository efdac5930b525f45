"""Every knob of a dream, declared once (keyword, flag, help, check), and the published presets.

    from reverie.deepdream.options import DreamOptions
    from reverie.options import resolve
    opts = resolve(DreamOptions, {"iterations": 10}, preset="book")   # the book's run, 10 steps per octave

Each `DreamOptions` field is a `reverie.options.option`, so `reverie dream`'s flags, their help and
the one-line errors (`--octaves must be a positive integer, got 0`) come from it, whether a value
came from the command line, the Python API or the page. Options combine as: the defaults, then the
preset's values, then every explicit option that is not None (`reverie.options.resolve`, with the
dream's rules in `DreamOptions.combine`). How the defaults
were chosen: docs/benchmarks.md, "DeepDream defaults".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from reverie.deepdream.images import ImageSource
from reverie.deepdream.objectives import (
    BOOK_LAYERS,
    BORDER,
    DEFAULT_BORDER,
    DEFAULT_REDUCTION,
    REDUCTIONS,
    Objective,
    parse_channels,
    parse_layers,
)
from reverie.deepdream.transforms import (
    JITTER,
    Clip,
    Jitter,
    KeepColors,
    LapNormalize,
    TransformFunction,
    check_transform,
)
from reverie.device import device_option, dtype_option
from reverie.errors import require
from reverie.options import check, check_value, default_of, flag, option
from reverie.rng import seed_option
from reverie.stopping import STOP_RULE, stop_function

# The smallest --tile: twice the largest stride of the built-in models (32), so that a tile holds a few
# positions of the deepest layers; a tiled step costs about ((tile + 2 * margin) / tile)**2 untiled
# steps: 9 at 64 with the default 64-pixel margin, more the smaller the tile.
MIN_TILE = 64


@dataclass(frozen=True)
class PixelStep:
    """A step size in 0-255 pixel levels (google/deepdream's 1.5), converted to the model's input units."""

    levels: float


@dataclass
class DreamOptions:
    """Every knob of a dream; `reverie dream --help` lists those with a flag, under the same names."""

    KIND: ClassVar[str] = "dream"  # in reverie.options.resolve's refusal of an unknown name
    PRESETS: ClassVar[dict[str, dict[str, Any]]]  # the published presets, below
    combine: ClassVar[Callable[..., dict[str, Any]]]  # how given options combine, below

    # the model; a Dreamer has its own (load_dreamer), these are for the one-shot functions
    model: str = option("inception_v3", "the convnet; `reverie layers MODEL` lists its layers")
    weights: str | Path | None = option(
        None, "a local weight file instead of the default download", metavar="FILE"
    )
    device: str = device_option()
    dtype: str = dtype_option("; presets run float32")
    # the objective
    layers: Mapping[str, float] | None = option(
        None, "layer:weight pairs, e.g. mixed2:0.2,mixed3:3 (a bare name weighs 1; default: the model's own)"
    )
    channels: Mapping[str, Sequence[int]] | None = option(
        None, "maximize these channels instead of a whole layer: mixed4:12,97"
    )
    guide: ImageSource | None = option(
        None, "guided dreaming: pull the features toward this image's", metavar="IMAGE"
    )
    reduction: str = option(
        DEFAULT_REDUCTION,
        "the loss of a layer: mean, book (border left out of the sum, full-size denominator) or "
        "half_sum (google's)",
        choices=REDUCTIONS,
    )
    border: int = option(
        DEFAULT_BORDER, "activation positions left out at the image's edge (book 2)", **BORDER
    )
    objective: Objective | None = option(
        None, "what to maximize, built from reverie.objectives (replaces layers ... border)", cli=False
    )
    # the octaves and the ascent
    octaves: int = option(5, "number of scales (book 3)", low=1)
    octave_scale: float = option(1.4, "size ratio between octaves", low=1, low_open=True)
    iterations: int = option(15, "gradient steps per octave (book 20)", low=0)
    step: float | PixelStep = option(
        0.02, "step size in the model's input units (book 0.01)", low=0, low_open=True
    )
    max_loss: float | None = option(
        None, "stop an octave once the loss exceeds this (book 10)", low=0, low_open=True
    )
    tile: int | None = option(
        None,
        "tiled gradients: any image size in bounded memory; at least 64, twice the built-in models' "
        "largest stride (smaller tiles spend most of each step on their margins)",
        low=MIN_TILE,
        metavar="PIXELS",
    )
    tile_margin: int = option(64, "context around each tile", low=0, metavar="PIXELS")
    seed: int | None = seed_option(0, "random seed for jitter and tiling (the same seed, the same dream)")
    # the transforms
    jitter: int = option(32, "random roll each step, undone after", metavar="PIXELS", **JITTER)
    lap_norm: int = option(
        0, "Laplacian-pyramid gradient normalization levels (0: off)", low=0, metavar="LEVELS"
    )
    keep_colors: bool = option(False, "dream the luminance only, keep the input's colors (default: off)")
    clip: bool = option(
        True, "keep the image in the valid pixel range after every step (default: on; book: off)"
    )
    transforms: Sequence[TransformFunction] | None = option(
        None,
        "per-step transforms (reverie.transforms, or functions (x, context) -> x) replacing jitter ... clip",
        cli=False,
    )
    # the input and the display
    max_size: int | None = option(None, "shrink the longest side to this first", low=1, metavar="PIXELS")
    progress: bool = option(True, "progress bars on stderr", cli=False)
    stop: Callable[[], bool] | None = option(
        None,
        "asked before every gradient step (a threading.Event, or a function); once set or True the "
        "dream ends with DreamStopped",
        rule=STOP_RULE,
        cli=False,
    )

    def validate(self) -> None:
        """Refuse out-of-range values, one line each (ReverieError); see `reverie.options.check`."""
        check(self)
        step = self.step.levels if isinstance(self.step, PixelStep) else self.step
        meta = DreamOptions.__dataclass_fields__["step"].metadata  # a PixelStep is checked by its levels
        check_value(flag("step"), step, kind=float, low=meta["low"], low_open=meta["low_open"])
        if self.objective is not None:
            require(
                isinstance(self.objective, Objective),
                f"objective= takes an objective from reverie.objectives, got {self.objective!r}",
            )
        for transform in self.transforms or []:
            check_transform(transform)


# An API object and the options it replaces: giving both is refused, and the preset's are dropped.
REPLACED_BY = {
    "objective": ("layers", "channels", "guide", "reduction", "border"),
    "transforms": ("jitter", "lap_norm", "keep_colors", "clip"),
}

# The transform options with nothing on, what a resolved DreamOptions says beside transforms=
TRANSFORM_FLAGS_OFF = {"jitter": 0, "lap_norm": 0, "keep_colors": False, "clip": False}

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


def _combine(
    values: dict[str, Any], given: dict[str, Any], preset: str | None, resumed: bool
) -> dict[str, Any]:
    """The dream's rules of combination (reverie.options.resolve calls them).

    `layers` and `channels` may be strings as on the command line ('mixed2:0.2,mixed3:3',
    'mixed4:12,97'). Explicit channels without explicit layers dream those channels alone. A
    preset's layers (and max_loss, calibrated on them) belong to its model: with another model and
    no explicit layers, that model's own default layers are used and no max_loss unless given (so
    `--preset book --model efficientnet_lite0` dreams). `objective=` replaces the objective options
    (the preset's are dropped, with its max_loss), `transforms=` the transform options.
    """
    if "stop" in given:
        given["stop"] = stop_function(given["stop"])  # an Event's is_set
    if callable(given.get("transforms")):
        given["transforms"] = [given["transforms"]]  # one transform is a list of one
    if isinstance(given.get("layers"), str):
        given["layers"] = parse_layers(given["layers"])
    if isinstance(given.get("channels"), str):
        given["channels"] = parse_channels(given["channels"])
    preset_values = PRESETS.get(preset or "", {})
    for api, replaced in REPLACED_BY.items():
        if api in given:
            clash = [key for key in replaced if key in given]
            require(
                not clash,
                f"{api}= replaces {', '.join(replaced)}; "
                f"give {api}= or {clash[0] if clash else ''}=, not both",
            )
            for key in replaced:
                values[key] = _default_value(key)
    if "channels" in given and "layers" not in given:
        values["layers"] = _default_value("layers")  # the channels alone
    other_model = "model" in given and given["model"] != preset_values.get("model", given["model"])
    own_objective = bool({"layers", "channels", "objective"} & set(given))
    if "objective" in given or (other_model and not own_objective):
        values["layers"] = _default_value("layers")
        values["max_loss"] = _default_value("max_loss")  # calibrated to the preset's layers on its model
    values.update(given)
    if "transforms" in given:  # the options it replaces say what the list does not do: nothing
        values.update(TRANSFORM_FLAGS_OFF)
    return values


def _default_value(name: str) -> Any:
    return default_of(DreamOptions, name)


DreamOptions.PRESETS = PRESETS
DreamOptions.combine = staticmethod(_combine)


def transforms_of(options: DreamOptions) -> list[TransformFunction]:
    """A dream's transforms, the one place options become transforms: `transforms=` as given, else
    those the options turn on, in this order: jitter, Laplacian normalization, keep colors, clip."""
    if options.transforms is not None:
        return list(options.transforms)
    transforms: list[TransformFunction] = []
    if options.jitter:
        transforms.append(Jitter(options.jitter))
    if options.lap_norm:
        transforms.append(LapNormalize(options.lap_norm))
    if options.keep_colors:
        transforms.append(KeepColors())
    if options.clip:
        transforms.append(Clip())
    return transforms


def _copied(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value
