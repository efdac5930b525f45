"""Shared fixtures for the browser-page tests: one tiny trained run, small images, one running server.

The server is started once per session on a free port of 127.0.0.1 with small caps (so that an
"oversized" upload is a few hundred KB) and stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import shakespeare_slice
from PIL import Image

from reverie.distributed import free_port

RUN_NAME = "tiny"
# A model that trains in well under a second: the page only needs text that comes from a real run.
TINY_RUN = {
    "model": "lstm",
    "hidden": 16,
    "layers": 1,
    "embed": 8,
    "dropout": 0.0,
    "seq_len": 32,
    "batch_size": 8,
    "steps": 20,
    "warmup_steps": 2,
    "dtype": "float32",
    "device": "cpu",
    "progress": False,
    "sample_temperatures": (),
}
TRANSFORMER_RUN_NAME = "tiny-gpt"
TINY_TRANSFORMER_RUN = {
    **{key: value for key, value in TINY_RUN.items() if key not in ("model", "seq_len")},
    "model": "transformer",
    "hidden": 16,
    "heads": 2,
    "context": 32,
}
MAX_SIZE = 96  # the server shrinks uploads to this longest side
MAX_UPLOAD_MB = 0.25
MAX_PIXELS = 400_000  # above the sample photo's 512x600
# Dream settings that take a fraction of a second on a CPU: a shallow layer, one octave, two steps.
TINY_DREAM = {
    "model": "efficientnet_lite0",
    "layers": ["block2"],
    "weights": {"headers": ["layer", "weight"], "data": [["block2", 1.0]]},
    "octaves": 1,
    "iterations": 2,
    "step": 0.05,
    "jitter": 0,
    "tile": 0,
    "preset": "(none)",
}


def make_runs(root: Path) -> Path:
    """A runs folder in `root` holding two runs trained for 20 steps on 4 KB of Shakespeare: RUN_NAME
    (an LSTM) and TRANSFORMER_RUN_NAME."""
    import reverie

    corpus = shakespeare_slice(root / "corpus.txt", 4000)
    runs = root / "runs"
    reverie.train(str(corpus), runs / RUN_NAME, **TINY_RUN)
    reverie.train(str(corpus), runs / TRANSFORMER_RUN_NAME, **TINY_TRANSFORMER_RUN)
    return runs


def make_images(root: Path) -> dict[str, Path]:
    """In `root`: small.png (the sample photo at 80x93), large.png (over MAX_SIZE, under every cap),
    huge.png (over MAX_PIXELS, a small file), heavy.png (over MAX_UPLOAD_MB) and text.png (not an image)."""
    import numpy as np

    from reverie.web.dream_tab import sample_photo

    photo = Image.open(sample_photo()).convert("RGB")
    paths = {name: root / f"{name}.png" for name in ("small", "large", "huge", "heavy", "text")}
    photo.resize((80, 93)).save(paths["small"])
    photo.resize((128, 150)).save(paths["large"])
    Image.new("RGB", (700, 700), (90, 120, 150)).save(paths["huge"])
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)  # incompressible
    Image.fromarray(noise).save(paths["heavy"])
    paths["text"].write_text("this is not an image\n" * 20)
    assert paths["heavy"].stat().st_size > MAX_UPLOAD_MB * 2**20
    assert paths["huge"].stat().st_size < MAX_UPLOAD_MB * 2**20
    return paths


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs folder of `make_runs`."""
    return make_runs(tmp_path_factory.mktemp("web_runs"))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The images of `make_images`."""
    return make_images(tmp_path_factory.mktemp("web_images"))


@contextmanager
def serve(runs_dir: Path, **settings: Any) -> Iterator[tuple[Any, str]]:
    """The page served on a free port of 127.0.0.1 with this suite's small caps (and `settings`):
    (its gr.Blocks, whose `reverie_page` holds the running jobs, and its URL)."""
    from reverie.web.app import launch
    from reverie.web.settings import WebSettings

    caps = {"max_size": MAX_SIZE, "max_upload_mb": MAX_UPLOAD_MB, "max_pixels": MAX_PIXELS}
    app, url = launch(WebSettings(runs=runs_dir, port=free_port(), **{**caps, **settings}))
    try:
        yield app, url
    finally:
        app.close()


@pytest.fixture(scope="session")
def served(runs_dir: Path) -> Iterator[tuple[Any, str]]:
    """The page with the default limits: (its gr.Blocks, its URL)."""
    with serve(runs_dir) as app_and_url:
        yield app_and_url


@pytest.fixture(scope="session")
def server(served: tuple[Any, str]) -> str:
    """The URL of the page with the default limits."""
    return served[1]


@pytest.fixture(scope="session")
def client(server: str):
    from gradio_client import Client

    return Client(server, verbose=False)
