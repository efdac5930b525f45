"""Processes that work together: their place from torchrun's environment, what they agree after each
unit of work, and failures that stop them with a clear message instead of a hang (a rank killed
mid-training, a rank that never comes)."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import shakespeare_slice

from reverie import distributed
from reverie.errors import ReverieError
from reverie.text import rundir

TIMEOUT_S = 20  # --dist-timeout of the killed job: the survivor must stop well within it


def test_ranks_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.ranks() == distributed.Ranks(0, 1, 0) and distributed.ranks().is_main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    where = distributed.ranks()
    assert (where.rank, where.world_size, where.local_rank) == (3, 4, 1)
    assert where.distributed and not where.is_main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ReverieError, match="RANK 4 is outside 0..3"):
        distributed.ranks()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ReverieError, match="RANK='one' is not an integer; launch with torchrun"):
        distributed.ranks()


def test_a_job_without_its_address_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    refused = pytest.raises(
        ReverieError, match="MASTER_ADDR and MASTER_PORT are not set; launch with torchrun"
    )
    with refused, distributed.process_group(distributed.Ranks(0, 2, 0)):
        pass


def test_a_rank_that_never_comes_stops_the_others(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(distributed.free_port()))
    started = time.monotonic()
    refused = pytest.raises(distributed.PeerLost, match="rank 0 could not join the other 1 process")
    with refused, distributed.process_group(distributed.Ranks(0, 2, 0), timeout_s=1.0):
        pass
    assert time.monotonic() - started < 30
    assert not distributed.active()


def test_peer_failures_are_told_from_bugs():
    assert distributed.is_peer_failure(RuntimeError("[pair.cc:537] Read error: Connection reset by peer"))
    assert distributed.is_peer_failure(
        RuntimeError("Timed out waiting 8000ms for recv operation to complete")
    )
    assert not distributed.is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not distributed.is_peer_failure(RuntimeError("cannot restore the state"))


def test_killing_one_rank_stops_the_other_and_keeps_the_checkpoint(tmp_path: Path):
    corpus = shakespeare_slice(tmp_path / "s.txt", 8_000)
    run = tmp_path / "run"
    tiny = "--hidden 16 --layers 1 --embed 8 --seq-len 16 --batch-size 4 --device cpu --dtype float32"
    args = [
        "-m",
        "reverie",
        "train",
        str(corpus),
        "--out",
        str(run),
        "--steps",
        "1000000",
        "--sample-every",
        "2",
    ]
    args += [*tiny.split(), "--sample-temperatures", "--no-progress", "--dist-timeout", str(TIMEOUT_S)]
    processes = distributed.launch(
        args, 2, env={"OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        while not rundir.has_run(run):  # both ranks are training once rank 0 has saved step 2
            assert processes[0].poll() is None, processes[0].communicate()[1][-2000:]
            assert time.monotonic() < deadline, "training never reached its first checkpoint"
            time.sleep(0.1)
        processes[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = processes[0].communicate(timeout=TIMEOUT_S + 30)
        assert time.monotonic() - killed < TIMEOUT_S + 10
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert processes[0].returncode == distributed.PeerLost.exit_code == 1
    line = next(line for line in err.splitlines() if line.startswith("reverie: error:"))
    assert "rank 0 of 2 lost contact with the other processes" in line
    assert f"the last checkpoint in {run} is kept; resume with: torchrun" in line
    assert "Traceback" not in err
    config = rundir.RunConfig.load(run, training=True)  # intact: the files match their checksums
    for name in (rundir.MODEL, rundir.STATE):
        config.load_tensors(run, name)
    assert config.state.step >= 2 and config.state.world_size == 2


def test_alone_agree_gives_its_own_values_and_a_signal_is_a_stop():
    alone = distributed.agree(False, None, True, values=(3.0, 0.5))
    assert alone == distributed.Agreement(stopped=False, signal=None, finished=True, sums=[3.0, 0.5])
    assert (
        distributed.agree(False, "SIGTERM").stopped
        and distributed.agree(False, "SIGTERM").signal == "SIGTERM"
    )


def _agree_as(rank: int, store: str, results: Any) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:  # rank 0 finished its work, rank 1 got SIGTERM; rank 1 was also the first to get Ctrl-C
        first = distributed.agree(
            False, "SIGTERM" if rank else None, finished=rank == 0, values=(rank + 1.0,)
        )
        second = distributed.agree(False, "Ctrl-C" if rank else "SIGTERM", finished=True)
        results.put((rank, first, second))
    finally:
        dist.destroy_process_group()


def test_two_processes_agree_on_a_stop_its_signal_whether_all_finished_and_the_sums(tmp_path: Path):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_agree_as, args=(rank, str(tmp_path / "store"), results)) for rank in (0, 1)
    ]
    for worker in workers:
        worker.start()
    seen = {rank: (first, second) for rank, first, second in (results.get(timeout=60) for _ in workers)}
    for worker in workers:
        worker.join(timeout=30)
    expected = distributed.Agreement(stopped=True, signal="SIGTERM", finished=False, sums=[3.0])
    both = distributed.Agreement(stopped=True, signal="Ctrl-C", finished=True, sums=[])  # Ctrl-C first
    assert seen == {0: (expected, both), 1: (expected, both)}
