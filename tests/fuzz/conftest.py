"""Fixtures of the fuzz tests: the worker process, and the well-formed files the cases start from."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import shakespeare_slice

from .harness import Worker


@pytest.fixture(scope="session")
def worker() -> Iterator[Worker]:
    """One worker for the session (its start, importing torch, is most of a small run's time)."""
    running = Worker()
    yield running
    running.close()
    summary = os.environ.get("REVERIE_FUZZ_SUMMARY")
    if summary:
        with open(summary, "a") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in running.summary())


# a model of a few hundred weights, two steps on the CPU: seconds, whatever the machine
TWO_STEPS = {
    "model": "lstm",
    "hidden": 8,
    "layers": 1,
    "embed": 4,
    "seq_len": 8,
    "batch_size": 4,
    "dtype": "float32",
    "device": "cpu",
    "progress": False,
    "sample_temperatures": (),
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for two steps: a real config.json with every section, its weights and state."""
    from reverie.text.train import train

    root = tmp_path_factory.mktemp("fuzz-run")
    corpus = shakespeare_slice(root / "corpus.txt", 3_000)
    run = root / "run"
    train(str(corpus), run, steps=2, **TWO_STEPS)
    return run


@pytest.fixture()
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the cases of one test write their files into (each case replaces the last one's)."""
    return tmp_path_factory.mktemp("fuzz-case")
