"""reverie: generative deep learning on PyTorch (text generation and DeepDream).

This module is the Python API; the `reverie` command and the browser page are thin shells over it.

Text generation:

    import reverie
    reverie.train("nietzsche", "runs/nietzsche", minutes=5)          # -> TrainResult
    model = reverie.load("runs/nietzsche")                           # -> TextModel
    print(model.generate("the meaning of ", length=200, temperature=0.5, seed=0))
    texts = model.generate_batch("the ", num_samples=4, length=100, stop=["\\n\\n"])

DeepDream:

    dreamer = reverie.load_dreamer("efficientnet_lite0")             # -> Dreamer, prepared once
    dreamer.dream("photo.jpg").save("photo-dream.png")
    objective = reverie.objectives.layer("block10") + 0.5 * reverie.objectives.channel("block12", 7)
    image = dreamer.dream("photo.jpg", objective=objective, transforms=[reverie.transforms.Jitter(16)])
    reverie.dream("photo.jpg", preset="book")                        # one dream: load, then dream
    reverie.visualize(dreamer, "block8:7").images[0].save("block8-7.png")   # what a channel wants
    reverie.dream("photo.jpg", stop=cancel)     # a threading.Event: cancel.set() ends it between two steps
    reverie.load_dreamer(my_net, preprocess="imagenet")              # any nn.Module, layers by path

Every bad input raises ReverieError, whose message is one line that says what to do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from reverie.errors import ReverieError

__version__ = "0.1.0"

# name -> the module that defines it. Imported on first use, so that `import reverie` (and the
# command line's start) stays fast and `python -m reverie.MODULE` runs a module not yet imported.
_API = {
    "train": "reverie.text.train",
    "TrainResult": "reverie.text.run",
    "load": "reverie.text.generator",
    "TextModel": "reverie.text.generator",
    "SamplingOptions": "reverie.text.sampling",
    "load_dreamer": "reverie.deepdream.dreamer",
    "Dreamer": "reverie.deepdream.dreamer",
    "DreamResult": "reverie.deepdream.octaves",
    "DreamStopped": "reverie.deepdream.octaves",
    "dream": "reverie.deepdream.dreamer",
    "dream_octaves": "reverie.deepdream.dreamer",
    "DreamOptions": "reverie.deepdream.options",
    "dream_folder": "reverie.deepdream.folder",
    "dream_zoom": "reverie.deepdream.zoom",
    "dream_video": "reverie.deepdream.video",
    "VideoOptions": "reverie.deepdream.videooptions",
    "available_models": "reverie.deepdream.backbone",
    "list_layers": "reverie.deepdream.backbone",
    "visualize": "reverie.deepdream.visualize",
    "visualize_channels": "reverie.deepdream.visualize",
    "VisualizeOptions": "reverie.deepdream.visualize",
}
_MODULES = {"objectives": "reverie.deepdream.objectives", "transforms": "reverie.deepdream.transforms"}

__all__ = [  # the API: _API and _MODULES, and the error every bad input raises
    "DreamOptions",
    "DreamResult",
    "DreamStopped",
    "Dreamer",
    "ReverieError",
    "SamplingOptions",
    "TextModel",
    "TrainResult",
    "VideoOptions",
    "VisualizeOptions",
    "__version__",
    "available_models",
    "dream",
    "dream_folder",
    "dream_octaves",
    "dream_video",
    "dream_zoom",
    "list_layers",
    "load",
    "load_dreamer",
    "objectives",
    "train",
    "transforms",
    "visualize",
    "visualize_channels",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'reverie' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})  # so that help(reverie) and completion see the lazy names


if TYPE_CHECKING:  # for type checkers and editors, which do not run __getattr__
    from reverie.deepdream import objectives, transforms
    from reverie.deepdream.backbone import available_models, list_layers
    from reverie.deepdream.dreamer import Dreamer, dream, dream_octaves, load_dreamer
    from reverie.deepdream.folder import dream_folder
    from reverie.deepdream.octaves import DreamResult, DreamStopped
    from reverie.deepdream.options import DreamOptions
    from reverie.deepdream.video import dream_video
    from reverie.deepdream.videooptions import VideoOptions
    from reverie.deepdream.visualize import VisualizeOptions, visualize, visualize_channels
    from reverie.deepdream.zoom import dream_zoom
    from reverie.text.generator import TextModel, load
    from reverie.text.run import TrainResult
    from reverie.text.sampling import SamplingOptions
    from reverie.text.train import train
