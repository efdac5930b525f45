"""reverie: generative deep learning on PyTorch (text generation and DeepDream).

The public Python API; the `reverie` command is a thin shell over it.

    import reverie
    reverie.train("nietzsche", "runs/nietzsche", minutes=5)
    model = reverie.load("runs/nietzsche")
    print(model.generate("the meaning of ", length=200, temperature=0.5, seed=0))

    image = reverie.dream("photo.jpg", model="efficientnet_lite0")
    image.save("photo-dream.png")
"""

from __future__ import annotations

from typing import Any

from reverie.errors import ReverieError

__version__ = "0.1.0"

# name -> module holding it; imported on first use so `import reverie` stays fast.
_LAZY = {
    "train": "reverie.text.train",
    "load": "reverie.text.generator",
    "TextModel": "reverie.text.generator",
    "dream": "reverie.dream.dream",
    "dream_octaves": "reverie.dream.dream",
    "DreamOptions": "reverie.dream.dream",
    "dream_folder": "reverie.dream.folder",
    "available_models": "reverie.dream.backbone",
    "list_layers": "reverie.dream.backbone",
}

__all__ = ["ReverieError", "__version__", *_LAZY]  # noqa: PLE0604 (the lazy names are strings)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reverie' has no attribute {name!r}")
