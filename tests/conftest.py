"""Settings for the whole test suite."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `from helpers import ...`
os.environ.setdefault("OMP_NUM_THREADS", "1")  # this process (one_torch_thread) and every one it starts


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run on one thread: tiny models gain nothing from more, and oneDNN's LSTM with 2 threads on a
    busy 2-core machine can run hundreds of times slower (its threads wait on each other every step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """reverie's cache (downloads, measured precision choices) in a folder of the test session's own,
    for this process and the ones it starts; tests that look at the cache set their own. The shipped
    models are an empty folder too (tests of shipped models build their own), so that what the
    package ships does not change what the page or an error message shows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REVERIE_CACHE", str(tmp_path_factory.mktemp("reverie-cache")))
        patch.setenv("REVERIE_MODELS", str(tmp_path_factory.mktemp("reverie-models")))
        yield


@pytest.fixture(scope="session")
def built_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding a tiny "shakespeare" built by scripts/pretrain.py, shared by the
    session (a test that changes it works on a copy)."""
    from helpers import build_tiny_shipped

    return build_tiny_shipped(tmp_path_factory.mktemp("shipped"))


@pytest.fixture()
def shipped_models(built_models: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$REVERIE_MODELS pointing at `built_models`."""
    from reverie.text.pretrained import MODELS_ENV

    monkeypatch.setenv(MODELS_ENV, str(built_models))
    return built_models
