"""The fine-tuning benchmark (benchmarks/finetune_bench.py) refuses a missing base in one line, and
with a tiny base writes its section: both ways' losses in nats/char, the verdict and the samples."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import NIETZSCHE, build_tiny_shipped

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import finetune_bench


def test_a_missing_base_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    doc = tmp_path / "finetune.md"
    assert finetune_bench.main(["--base", str(tmp_path / "nothing"), "--doc", str(doc)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base" in err and "no run directory or shipped model" in err
    assert not doc.exists()


def test_a_variant_is_read_as_training_options() -> None:
    assert finetune_bench.parse_variant("layer_lr=0.5,warmup_steps=2,schedule=constant") == {
        "layer_lr": 0.5,
        "warmup_steps": 2,
        "schedule": "constant",
    }
    with pytest.raises(finetune_bench.ReverieError, match="write NAME=VALUE"):
        finetune_bench.parse_variant("layer_lr")


def test_with_a_tiny_base_it_writes_its_section(tmp_path: Path) -> None:
    base = build_tiny_shipped(tmp_path) / "shakespeare"  # a shipped model's folder, given as a run
    text = tmp_path / "held-out.txt"
    text.write_text(NIETZSCHE.read_text(encoding="utf-8")[:3000] + "déjà vu\n", encoding="utf-8")
    doc = tmp_path / "finetune.md"
    argv = ["--base", str(base), "--minutes", "0.02", "--text", f"{text}:2500", "--doc", str(doc)]
    argv += ["--dtype", "float32", "--sample-chars", "40", "--variant", "layer_lr=0.5,warmup_steps=2"]
    assert finetune_bench.main(argv) == 0
    section = doc.read_text()
    assert "## Fine-tuning against training from scratch" in section
    rows = [line for line in section.splitlines() if line.startswith("| held-out.txt (2 K chars) | 0.02 |")]
    assert [row.split(" | ")[2] for row in rows] == ["defaults", "layer_lr=0.5,warmup_steps=2"]
    for row in rows:
        fine, scratch, gain = (float(cell) for cell in row.strip("| ").split(" | ")[3:])
        assert gain == pytest.approx(scratch - fine, abs=2e-3) and fine > 0 and scratch > 0
    assert rows[0].split(" | ")[4] == rows[1].split(" | ")[4]  # one from-scratch run for both
    assert "Target (fine-tuning at least 0.5 nats/char" in section
    assert "fine-tuned:\n\n```" in section and "scratch:\n\n```" in section


def test_a_signal_ends_the_benchmark_with_nothing_written(tmp_path: Path, monkeypatch, capsys) -> None:
    from reverie.text.run import TrainResult

    def stopped(text, out, **options):
        return TrainResult(Path(out), 3, 0, 4.0, None, None, "interrupted", "reverie train ...", "SIGTERM")

    monkeypatch.setattr(finetune_bench.reverie, "train", stopped)
    text = tmp_path / "held-out.txt"
    text.write_text(NIETZSCHE.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    doc = tmp_path / "finetune.md"
    base = tmp_path / "base"
    base.mkdir()
    with pytest.raises(SystemExit) as ended:
        finetune_bench.main(
            ["--base", str(base), "--minutes", "0.02", "--text", str(text), "--doc", str(doc)]
        )
    assert ended.value.code == 143 and not doc.exists()
    assert "SIGTERM: nothing written" in capsys.readouterr().err
