"""The fuzzing's own net: a case that crashes the interpreter, hangs or allocates without bound fails
that case (and the next one gets a fresh worker), where in pytest's process it would end the session."""

from __future__ import annotations

from pathlib import Path

from .harness import Worker


def test_a_crash_a_hang_and_an_allocation_without_bound_are_caught(tmp_path: Path) -> None:
    worker = Worker(bare=True)  # the same worker, without the readers' imports: it restarts in no time
    try:
        hog = worker.ask("hog", tmp_path)
        assert hog["status"] == "bug" and "MemoryError" in hog["message"], hog
        alive = worker.process
        crash = worker.ask("crash", tmp_path)
        assert worker.process is None and alive.returncode < 0, crash  # the worker lived on after the hog
        assert crash["status"] == "crash" and crash["returncode"] < 0, crash  # killed by SIGSEGV
        assert "Segmentation fault" in crash["stderr"] and "_crash" in crash["stderr"]  # faulthandler's stack
        hang = worker.ask("hang", tmp_path, seconds=1)
        assert hang["status"] == "hang", hang
        assert worker.ask("hog", tmp_path)["status"] == "bug"  # and a fresh worker takes the next case
    finally:
        worker.close()
