"""Shared fixtures for the text tests: a slice of the shared corpus and one tiny trained run."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHAKESPEARE = DATA / "tinyshakespeare.txt"

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


def shakespeare_slice(path: Path, n_chars: int = 30_000) -> Path:
    """The first `n_chars` characters of tiny-shakespeare, written to `path`."""
    path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:n_chars], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory trained for 60 steps on 30 KB of Shakespeare (shared, do not modify)."""
    from reverie.text.train import train

    root = tmp_path_factory.mktemp("tiny_run")
    corpus = shakespeare_slice(root / "shakespeare.txt")
    run = root / "run"
    train(str(corpus), run, steps=60, sample_every=30, **TINY)
    return run
