"""Slow and abandoned clients (tests/web/slow.py): with 200 connections held open from loopback,
dripping their request a byte a second or stopped halfway through an upload, and clients that
started long generations and vanished, a fresh client is still served in about its usual time,
the vanished jobs give their slot back within the job time limit, and the server's memory stays
bounded."""

from __future__ import annotations

import statistics
import sys

import pytest

from reverie.distributed import free_port

from .conftest import RUN_NAME
from .slow import SlowConnections, timed_generation, vanish_from_generations
from .soak import TEXT, rss_mb, served_in_a_process

SLOW = 200
VANISHED = 4
JOB_SECONDS = 15  # the server's --job-seconds here
LONG = 100_000  # characters a vanished client asked for: far more than JOB_SECONDS buy
PEAK_RSS_MB = 1000  # as the soak's bound (tests/web/test_soak.py)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the server's memory from /proc")
def test_slow_and_vanished_clients_do_not_keep_the_others_waiting(runs_dir) -> None:
    flags = ["--job-seconds", str(JOB_SECONDS), "--concurrency", "1", "--jobs-per-client", "10"]
    with served_in_a_process(runs_dir, free_port(), flags) as server:
        url, pid = server
        usual = statistics.median(timed_generation(url, RUN_NAME, TEXT, 40, 60) for _ in range(3))
        with SlowConnections(url, SLOW) as slow:
            vanished = vanish_from_generations(url, RUN_NAME, TEXT, VANISHED, LONG)
            behind_the_vanished = timed_generation(url, RUN_NAME, TEXT, 40, 300)
            during = statistics.median(timed_generation(url, RUN_NAME, TEXT, 40, 60) for _ in range(3))
        peak = rss_mb(pid, "VmHWM")
        after = timed_generation(url, RUN_NAME, TEXT, 40, 60)
    print(
        f"usual {usual:.2f} s; behind {len(vanished)} vanished long jobs {behind_the_vanished:.2f} s; "
        f"beside {SLOW} slow connections {during:.2f} s (held {slow.held}, dropped {slow.dropped}); "
        f"after {after:.2f} s; peak memory {peak:.0f} MB"
    )
    assert len(vanished) == VANISHED and all("ROMEO:" in event for event in vanished), vanished
    assert slow.held + slow.dropped == SLOW
    # one vanished job may hold the slot up to the time limit; the others must not run at all
    assert behind_the_vanished < JOB_SECONDS + 10 * usual + 5
    assert during < 3 * usual + 2  # served as usual beside the slow connections
    assert after < 3 * usual + 2
    assert peak < PEAK_RSS_MB
