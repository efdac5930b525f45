"""The multi-process benchmark (benchmarks/ddp_bench.py) runs its configurations as real commands, one
and two processes, and writes its section with their speeds and the dropout the runs were given."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers import shakespeare_slice

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import ddp_bench


def test_a_short_run_writes_its_section(tmp_path: Path) -> None:
    corpus = shakespeare_slice(tmp_path / "shakespeare.txt", 20_000)
    doc = tmp_path / "ddp.md"
    ddp_bench.main(["--steps", "4", "--skip", "1", "--corpus", str(corpus), "--doc", str(doc)])
    section = doc.read_text()
    assert "## Training on several processes" in section
    rows = [line for line in section.splitlines() if line.startswith(("| 1 process", "| 2 processes"))]
    assert len(rows) == 4
    for row in rows:
        tokens_per_s = float(row.split(" | ")[1].replace(",", ""))
        assert tokens_per_s > 0 and "reverie train shakespeare.txt" in row
    assert "torchrun --standalone --nproc_per_node=2" in section
    assert "Default model (LSTM 2x448, embed 64, 32-token sequences, dropout 0)" in section
