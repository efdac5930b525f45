"""What every fuzz test shares: hypothesis's settings, and the worker process that runs each case.

A case is a file written here and handed to a reader in tests/fuzz/worker.py (another process: a
crash, a hang or an allocation without bound fails the case, not the test session). A case passes when
the reader returns a result or raises reverie's ReverieError with a one-line message (the command line
prints it as one line and exits with code 2), within CASE_SECONDS and the worker's memory cap.

REVERIE_FUZZ_EXAMPLES sets the cases per reader (default EXAMPLES, what `make test` runs); the cases
are the same on every run (derandomize). REVERIE_FUZZ_SUMMARY=FILE writes each reader's case count,
total and slowest time there as JSON lines; REVERIE_FUZZ_LOG=FILE, every case that failed (its traceback).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

EXAMPLES = 12
CASE_SECONDS = 60.0  # a case's bound (the machine the suite runs on may be busy)
START_SECONDS = 300.0  # the worker's start: importing torch, PyAV, OpenCV on a busy machine

FUZZ = settings(
    max_examples=int(os.environ.get("REVERIE_FUZZ_EXAMPLES", EXAMPLES)),
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,  # case_dir: each case replaces the files of the one before
    ],
)


class Worker:
    """tests/fuzz/worker.py, restarted after a case that killed or hung it."""

    def __init__(self, bare: bool = False) -> None:
        self.bare = bare  # no reader imported: for the harness's own test
        self.process: subprocess.Popen[str] | None = None
        # the worker's stderr, appended to and emptied before each case; open until close()
        self.stderr = tempfile.TemporaryFile("a+")  # noqa: SIM115
        self.times: dict[str, list[float]] = defaultdict(list)
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
        if self.bare:
            env["REVERIE_FUZZ_BARE"] = "1"
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("worker.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
        )
        reply = self._reply(process, START_SECONDS)
        assert reply == {"status": "ready"}, f"the fuzz worker did not start: {reply}: {self._said()}"
        return process

    @staticmethod
    def _reply(process: subprocess.Popen[str], seconds: float) -> dict[str, Any] | None:
        ready, _, _ = select.select([process.stdout], [], [], seconds)
        if not ready:
            return None
        line = process.stdout.readline()
        return json.loads(line) if line else {"status": "crash", "returncode": process.wait()}

    def ask(self, reader: str, path: Path, seconds: float = CASE_SECONDS) -> dict[str, Any]:
        """What `reader` made of the file at `path` (see worker.py), or a crash, or a hang (no answer in
        `seconds`)."""
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        self.stderr.truncate(0)
        began = time.perf_counter()
        self.process.stdin.write(json.dumps({"reader": reader, "path": str(path)}) + "\n")
        self.process.stdin.flush()
        reply = self._reply(self.process, seconds)
        self.times[reader].append(time.perf_counter() - began)
        if reply is None:
            self.stop()
            reply = {"status": "hang", "message": f"no answer in {seconds:g} s"}
        self.outcomes[reader][reply["status"]] += 1
        if reply["status"] == "crash":
            self.process = None
        if reply["status"] in ("crash", "hang"):
            reply["stderr"] = self._said()  # a segfault's Python stack (PYTHONFAULTHANDLER)
        if reply["status"] not in ("ok", "error") and os.environ.get("REVERIE_FUZZ_LOG"):
            with open(os.environ["REVERIE_FUZZ_LOG"], "a") as log:
                log.write(json.dumps({"reader": reader, "path": str(path), **reply}) + "\n")
        return reply

    def _said(self, tail: int = 4000) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-tail:]

    def check(self, reader: str, path: Path) -> dict[str, Any]:
        """`ask`, failing the case unless it ended in a result or a one-line ReverieError."""
        reply = self.ask(reader, path)
        assert reply["status"] in ("ok", "error"), f"{reader} on {path}: {reply}"
        if reply["status"] == "error":
            message = reply["message"]
            assert message.strip() and "\n" not in message, f"{reader}: not one line: {message!r}"
            assert reply["exit_code"] == "2"
        return reply

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        self.stderr.close()

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "reader": reader,
                "cases": len(times),
                "seconds": round(sum(times), 2),
                "slowest": round(max(times), 3),
                **self.outcomes[reader],
            }
            for reader, times in sorted(self.times.items())
        ]


def write_case(path: Path, data: bytes) -> Path:
    """`data` at `path` (replacing the previous case's file)."""
    path.write_bytes(data)
    return path
