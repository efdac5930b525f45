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

Every bad input raises ReverieError, whose message is one line that says what to do.
"""

from __future__ import annotations

from reverie.deepdream import objectives, transforms
from reverie.deepdream.backbone import available_models, list_layers
from reverie.deepdream.dreamer import Dreamer, DreamResult, dream, dream_octaves, load_dreamer
from reverie.deepdream.folder import dream_folder
from reverie.deepdream.options import DreamOptions
from reverie.deepdream.zoom import dream_zoom
from reverie.errors import ReverieError
from reverie.text.generator import TextModel, load
from reverie.text.sampling import SamplingOptions
from reverie.text.train import TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "DreamOptions",
    "DreamResult",
    "Dreamer",
    "ReverieError",
    "SamplingOptions",
    "TextModel",
    "TrainResult",
    "__version__",
    "available_models",
    "dream",
    "dream_folder",
    "dream_octaves",
    "dream_zoom",
    "list_layers",
    "load",
    "load_dreamer",
    "objectives",
    "train",
    "transforms",
]
