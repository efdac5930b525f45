"""Helpers shared by the test files: the committed test data, running the CLI in-process, and waiting
on spawned ranks.

Importable from every test file as `from helpers import ...` (tests/conftest.py puts tests/ on the path).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from reverie import distributed
from reverie.cli import main

DATA = Path(__file__).resolve().parent / "data"  # committed excerpts; see data/README.md
SHAKESPEARE = DATA / "tinyshakespeare-100k.txt"
NIETZSCHE = DATA / "nietzsche-100k.txt"


def shakespeare_slice(path: Path, n_chars: int = 30_000) -> Path:
    """The first `n_chars` characters of the tiny-shakespeare excerpt, written to `path`."""
    assert n_chars <= len(SHAKESPEARE.read_text(encoding="utf-8")), "the excerpt is shorter than that"
    path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:n_chars], encoding="utf-8")
    return path


# A shipped model small enough to build in about a second: scripts/pretrain.py with a tiny shape.
TINY_SHIPPED = ["--hidden", "32", "--layers", "1", "--embed", "16", "--dropout", "0", "--steps", "40"]
TINY_SHIPPED += ["--batch-size", "16", "--warmup-steps", "5", "--device", "cpu", "--dtype", "float32"]
TINY_SHIPPED += ["--no-progress", "--sample-temperatures"]


def pretrain_script() -> Any:
    """scripts/pretrain.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pretrain", DATA.parent.parent / "scripts" / "pretrain.py")
    assert spec is not None and spec.loader is not None
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    return pretrain


def build_tiny_shipped(root: Path, name: str = "shakespeare", n_chars: int = 20_000) -> Path:
    """A tiny shipped model `name` built by scripts/pretrain.py from the first `n_chars` characters of
    the Shakespeare excerpt into `root`/models (the folder to point $REVERIE_MODELS at); returns it."""
    pretrain = pretrain_script()
    corpus = shakespeare_slice(root / "shakespeare.txt", n_chars)
    models = root / "models"
    argv = [name, "--corpus", str(corpus), "--into", str(models), "--work", str(root / "work"), *TINY_SHIPPED]
    assert pretrain.main(argv) == 0
    return models


def stored_file(run: Path, role: str = "best") -> Path:
    """The file a run's config.json names for `role` ("model": the latest weights, "best", "state")."""
    import json

    return run / json.loads((run / "config.json").read_text())["files"][role]["path"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `reverie ARGV`, run in this process."""
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def launch_ranks(args: Sequence[str], nproc: int, timeout_s: float) -> list[tuple[int, str, str]]:
    """Run `python ARGS` as `nproc` local ranks (one thread each); each one's (exit code, stdout, stderr)."""
    processes = distributed.launch(
        list(args),
        nproc,
        env={"OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        outputs = [process.communicate(timeout=timeout_s) for process in processes]
    finally:
        for process in processes:
            process.kill()
    return [(process.returncode, out, err) for process, (out, err) in zip(processes, outputs)]


def run_ranks(args: Sequence[str], nproc: int, timeout_s: float) -> list[str]:
    """Run `python ARGS` as `nproc` local ranks (one thread each); their stdouts, once all succeeded."""
    results = launch_ranks(args, nproc, timeout_s)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    return [out for _, out, _ in results]


def randomize_batch_norms(model: Any, shift: float) -> None:
    """Batch norms that do something, for folding tests: random scales in [0.5, 1.5], shifts in
    [-shift, shift], running means in [-0.2, 0.2] and variances in [0.5, 2] (from torch's global RNG)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-shift, shift)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file of a folder, by name, except a run's lock file (it names whoever held it last)."""
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.name != ".lock"}
