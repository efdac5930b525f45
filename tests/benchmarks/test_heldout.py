"""The held-out benchmark (benchmarks/heldout.py): a model's loss on a text it never saw, in nats per
character whatever its tokenization, and a bad input refused in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import NIETZSCHE, build_tiny_shipped

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import heldout

import reverie
from reverie.text import rundir
from reverie.text.batches import evaluate


def test_a_byte_level_models_nats_per_byte_become_nats_per_character(tmp_path: Path) -> None:
    base = build_tiny_shipped(tmp_path) / "shakespeare"  # byte level, as the shipped models are
    text = NIETZSCHE.read_text(encoding="utf-8")[:2000] + " déjà vu, naïve café\n"  # é: two bytes
    model = reverie.load(str(base), device="cpu")
    ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    options = rundir.RunConfig.load(base, training=True).options
    per_byte = evaluate(model.model.float(), ids, options, torch.device("cpu"))
    expected = per_byte * len(text.encode("utf-8")) / len(text)
    assert heldout.heldout_loss(str(base), text) == pytest.approx(expected, rel=1e-9)
    assert expected > per_byte  # more bytes than characters


def test_a_missing_or_empty_text_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert heldout.main(["shakespeare", "--text", str(tmp_path / "none.txt")]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("heldout: error:") and "none.txt" in err and out == ""
    base = build_tiny_shipped(tmp_path) / "shakespeare"
    (tmp_path / "empty.txt").write_text("")
    capsys.readouterr()  # the tiny build's own lines
    assert heldout.main([str(base), "--text", str(tmp_path / "empty.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "score at least two" in err
