"""The loop long jobs share (reverie.jobs): steps until done, stopped between steps by `stop=` or a
signal, the items' generator closed, values agreed (alone: the process's own)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from reverie.errors import ReverieError
from reverie.jobs import Job


class Boom(Exception):
    pass


def counting(taken: list[int], limit: int, closed: list[bool], fail_at: int | None = None) -> Iterator[None]:
    try:
        for index in range(limit):
            if index == fail_at:
                raise Boom
            taken.append(index)
            yield
    finally:
        closed.append(True)


def test_a_job_runs_every_step_and_agrees_on_the_values() -> None:
    taken: list[int] = []
    closed: list[bool] = []
    with Job() as job:
        agreed = job.run(counting(taken, 4, closed), values=lambda: (len(taken), 0.5))
    assert taken == [0, 1, 2, 3] and closed == [True]
    assert agreed.finished and not agreed.stopped and agreed.signal is None and agreed.sums == [4.0, 0.5]


def test_stop_ends_it_between_steps() -> None:
    taken: list[int] = []
    closed: list[bool] = []
    event = threading.Event()
    with Job(stop=lambda: len(taken) == 2) as job:
        agreed = job.run(counting(taken, 9, closed), values=lambda: (len(taken),))
    assert taken == [0, 1] and agreed.stopped and not agreed.finished and agreed.sums == [2.0]
    assert closed == [True]  # a generator left half way is closed
    event.set()
    with Job(stop=event) as job:  # an Event is asked through is_set
        assert job.run(counting(taken, 9, [])).stopped and taken == [0, 1]


def test_an_exception_named_in_stops_means_stopped_inside_a_step() -> None:
    taken: list[int] = []
    with Job() as job:
        agreed = job.run(counting(taken, 9, [], fail_at=3), stops=(Boom,))
    assert taken == [0, 1, 2] and agreed.stopped and agreed.signal is None
    with Job() as job, pytest.raises(Boom):  # one not named is the caller's
        job.run(counting([], 9, [], fail_at=0))


def test_a_signal_stops_it_and_is_named() -> None:
    taken: list[int] = []

    def steps() -> Iterator[None]:
        while True:
            taken.append(len(taken))
            if len(taken) == 3:
                os.kill(os.getpid(), signal.SIGTERM)  # caught by the job: the step finishes
            yield

    with Job(message=None) as job:
        agreed = job.run(steps())
    assert taken == [0, 1, 2] and agreed.stopped and agreed.signal == "SIGTERM" == job.signal_name
    assert signal.getsignal(signal.SIGTERM) != job.signals._on_signal  # the handler given back


def test_a_stop_of_neither_kind_is_refused_in_one_line() -> None:
    with pytest.raises(ReverieError, match="^stop= takes a function of no arguments"):
        Job(stop=3)
