"""Shared fixtures for the text tests: one tiny trained run on a slice of the committed excerpt."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import shakespeare_slice

# A model small enough to train in about a second on a 2-core CPU.
TINY = {
    "model": "lstm",
    "hidden": 32,
    "layers": 1,
    "embed": 16,
    "dropout": 0.0,
    "seq_len": 32,
    "batch_size": 16,
    "dtype": "float32",
    "device": "cpu",
    "warmup_steps": 5,
    "progress": False,
    "sample_temperatures": (),
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory trained for 60 steps on 30 KB of Shakespeare (shared, do not modify)."""
    from reverie.text.train import train

    root = tmp_path_factory.mktemp("tiny_run")
    corpus = shakespeare_slice(root / "shakespeare.txt")
    run = root / "run"
    train(str(corpus), run, steps=60, sample_every=30, **TINY)
    return run
