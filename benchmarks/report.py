"""Shared pieces of the benchmark scripts: isolated worker runs, peak memory, machine facts, and
writing a section of docs/benchmarks.md.

Each measurement that reports peak memory runs in its own Python process (`run_worker`), so one
measurement's allocations never count towards another's; the worker prints one JSON line last.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from reverie import precision

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
# the project's local copy of tiny-shakespeare, beside the repository, where there is one
LOCAL_CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def add_corpus_argument(parser: argparse.ArgumentParser) -> None:
    """--corpus: the tiny-shakespeare file the text benchmarks train on."""
    parser.add_argument(
        "--corpus",
        type=Path,
        default=LOCAL_CORPUS if LOCAL_CORPUS.is_file() else None,
        help="tiny-shakespeare as a local file (default: ../shared/data/tinyshakespeare.txt where it exists; "
        "`reverie train shakespeare` downloads it into the cache)",
    )


def checked_corpus(path: Path | None) -> tuple[Path, str]:
    """The corpus to train on, and a sentence for the report saying whether it is the published file."""
    from reverie import hub
    from reverie.text.corpus import NAMED_CORPORA

    if path is None or not path.is_file():
        sys.exit(
            f"benchmark: no corpus at {path}; pass --corpus PATH to a copy of tiny-shakespeare "
            f"({NAMED_CORPORA['shakespeare'].url})"
        )
    same = hub.matches(path, NAMED_CORPORA["shakespeare"].sha256)
    note = "the published tiny-shakespeare (sha256 checked)" if same else "not the published tiny-shakespeare"
    return path, f"Corpus: `{path.name}` ({path.stat().st_size:,} bytes, {note})."


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict[str, Any]) -> None:
    """A worker's last line: its result plus its peak memory."""
    print(json.dumps({**result, "peak_rss_mb": round(peak_rss_mb())}), flush=True)


def run_worker(script: Path, *args: str, timeout_s: float = 3600) -> dict[str, Any]:
    """Run `python script --worker ARGS` in a fresh process and return its JSON result."""
    done = subprocess.run(
        [sys.executable, str(script), "--worker", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@functools.cache
def matmul_gflops(dtype: torch.dtype, device: str = "cpu") -> float:
    """The device's dense matmul throughput for `dtype`, GFLOP/s, measured once per process (so the
    machine line and every figure against it use the same number)."""
    return precision.matmul_gflops(dtype, torch.device(device))


@functools.cache
def conv_gflops(dtype: torch.dtype, device: str = "cpu") -> float:
    """The device's 3x3 convolution throughput (64 channels, channels-last) for `dtype`, GFLOP/s,
    measured once per process."""
    return precision.conv_gflops(dtype, torch.device(device))


def limit_gflops(dtype: torch.dtype, device: str = "cpu") -> float:
    """The machine's measured limit for dense work in `dtype`: the better of matmul and convolution,
    so that a run's share of it ("of the limit") can never pass 100%."""
    return max(matmul_gflops(dtype, device), conv_gflops(dtype, device))


def machine_summary(device: str = "cpu") -> str:
    """One paragraph on the machine the figures come from, with its measured throughput on `device`."""
    flags = ""
    try:
        flags = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), ""
        )
    except OSError:
        pass
    named = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags.split()]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    f32, bf16 = torch.float32, torch.bfloat16
    where = "" if device == "cpu" else f"; GPU {torch.cuda.get_device_name(0)}, measured on it"
    return (
        f"{precision.processor_name()}, {precision.available_cores()} cores "
        f"(flags: {', '.join(named) or 'no bf16 flags'}){where}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; measured: matmul 2048x2048 float32 "
        f"{matmul_gflops(f32, device):.0f} / bfloat16 {matmul_gflops(bf16, device):.0f} GFLOP/s, 3x3 "
        f"convolution 64 channels channels-last float32 {conv_gflops(f32, device):.0f} / bfloat16 "
        f"{conv_gflops(bf16, device):.0f} GFLOP/s; load average at start {load:.1f}."
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """--device (where to measure) and --doc (the file the section is written to)."""
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="where to measure (default: cpu)"
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=DOC,
        help="the markdown file to write the section into (default: docs/benchmarks.md)",
    )


def section_title(title: str, device: str) -> str:
    """A section's title, with the device where it is not the CPU (a GPU's figures stand beside the CPU's)."""
    return title if device == "cpu" else f"{title} ({device.upper()})"


def write_section(title: str, body: str, command: str, doc: Path = DOC) -> None:
    """Replace (or append) the section `title` of `doc` (docs/benchmarks.md) with `body` and its command."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = (
        doc.read_text()
        if doc.exists()
        else "# Benchmarks\n\nEach section is written by the script named in it.\n"
    )
    begin, end = f"<!-- begin {title} -->", f"<!-- end {title} -->"
    stamp = time.strftime("%Y-%m-%d")
    section = f"{begin}\n## {title}\n\nMeasured {stamp} with `{command}`.\n\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
