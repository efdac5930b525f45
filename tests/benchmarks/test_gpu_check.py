"""benchmarks/gpu_check.sh --dry-run: the GPU script's every step (the GPU tests, the text and
DeepDream benchmarks) runs on the CPU with tiny budgets and writes its sections into a scratch copy
of docs/benchmarks.md, leaving the real one alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_dry_run_runs_every_step_and_writes_both_sections_elsewhere(tmp_path):
    doc = REPO / "docs" / "benchmarks.md"
    before = doc.read_bytes()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "CORPUS": str(REPO / "tests" / "data" / "tinyshakespeare-100k.txt"),
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\d+ skipped", done.stdout)  # the GPU tests ran, and skipped without CUDA
    written = Path(re.search(r"sections written to (\S+)", done.stdout).group(1))
    assert written.is_relative_to(tmp_path)
    text = written.read_text()
    for section in ("Text: quality", "Text: training speed", "Text: generation speed", "DeepDream"):
        body = re.search(f"<!-- begin {section} -->(.*?)<!-- end {section} -->", text, re.DOTALL).group(1)
        assert "Machine: " in body and "| " in body  # a machine line and a table
    assert "--quick" in text and "--minutes 0.05" in text  # the commands that made them
    assert doc.read_bytes() == before
