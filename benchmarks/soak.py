"""The page under load: the load of tests/web/test_soak.py (50 clients for 55 s mixing generations,
tiny dreams, oversized and non-image uploads, data: URLs and cancels, against a `reverie serve`
process of its own), its figures written to the "Page under load" section of docs/benchmarks.md.

    python benchmarks/soak.py                 # about 75 seconds
    python benchmarks/soak.py --clients 20 --seconds 30

The load itself is tests/web/soak.py (one copy, shared with the test).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from report import table, write_section
from web.conftest import make_images, make_runs
from web.soak import REQUEST_TIMEOUT_S, Report, served_in_a_process, soak
from web.test_soak import CLIENTS, PEAK_RSS_MB, SECONDS

TITLE = "Page under load"


def machine() -> str:
    """The CPU model and core count, as lscpu says."""
    try:
        out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    except OSError:
        return "unknown machine (no lscpu)"
    facts = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{facts.get('Model name', '?').strip()}, {facts.get('CPU(s)', '?').strip()} cores"


def section(report: Report, clients: int, seconds: float) -> str:
    by_kind: dict[str, list[str]] = {}
    for (kind, outcome), count in sorted(report.outcomes.items()):
        by_kind.setdefault(kind, []).append(f"{count} {outcome}")
    rows = [[kind, "; ".join(outcomes)] for kind, outcomes in by_kind.items()]
    unanswered = len(report.unanswered)
    setup = (
        f"Machine: {machine()}. The server: `reverie serve` in a process of its own with the page tests' "
        "caps (images shrunk to 96 px, uploads up to 0.25 MB, 400 000 pixels) and the default limits "
        "(one job at a time, 300 s per job, 4 per client). "
        f"{clients} clients (a gradio_client session each, over loopback) sent requests one after another "
        f"for {seconds:g} s, in turn: a 40-token generation, a tiny dream (efficientnet_lite0, one octave, "
        "two steps, 80x93 pixels), an upload over the size cap, a file that is not an image, a dream with "
        "its image inline as a data: URL, a 5000-token generation and a tiny dream each cancelled "
        "0.3 s after they were sent."
    )
    figures = (
        f"{report.requests} requests in {report.seconds:.0f} s (the last ones answered after the load "
        f"stopped), {unanswered} without an answer (a result or a one-line refusal) within "
        f"{REQUEST_TIMEOUT_S} s. The server's resident memory: {report.rss_start_mb:.0f} MB at the start, "
        f"a peak of {report.rss_peak_mb:.0f} MB (VmHWM; the test's bound is {PEAK_RSS_MB} MB). Afterwards it "
        f"{'still answered' if report.answers_after else 'did NOT answer'} a generation."
    )
    return "\n\n".join([wrapped(setup), table(["request", "outcomes"], rows), wrapped(figures)])


def wrapped(paragraph: str) -> str:
    return textwrap.fill(paragraph, width=105, break_on_hyphens=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--port", type=int, default=7869)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "runs").mkdir()
        (root / "images").mkdir()
        runs, images = make_runs(root / "runs"), make_images(root / "images")
        with served_in_a_process(runs, args.port) as server:
            report = soak(server, images, clients=args.clients, seconds=args.seconds)
    command = "python benchmarks/soak.py" + (
        f" --clients {args.clients} --seconds {args.seconds:g}"
        if (args.clients, args.seconds) != (CLIENTS, SECONDS)
        else ""
    )
    write_section(TITLE, section(report, args.clients, args.seconds), command)
    unanswered, peak = len(report.unanswered), report.rss_peak_mb
    print(f"{report.requests} requests, {unanswered} unanswered, peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
