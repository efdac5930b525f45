"""The loop every long job shares: steps until done, stopped between steps by Ctrl-C, SIGTERM or the
caller's `stop=`, all ranks of a torchrun job stopping at the same step.

    job = Job(stop=event, message="stopping; the frames done are kept")   # stop: reverie.stopping's
    with job:                                       # Ctrl-C and SIGTERM caught (reverie.interrupt)
        agreed = job.run(frames, values=lambda: (kept,))   # one step per item, agreeing after each
    agreed.stopped, agreed.signal, agreed.sums      # reverie.distributed.Agreement

`run` drives an iterator whose every item is one step (a video's frames). A loop that does more
between steps (training: evaluations, saves, its budget) asks `job.requested` and, with several ranks,
`job.agree(values=...)` after each step, as `run` does. Alone, agreeing is the process's own answer.
The page's jobs stop through the same `stop=` (reverie.web.jobs.Job.should_stop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from reverie import distributed
from reverie.distributed import Agreement
from reverie.interrupt import StopRequests
from reverie.stopping import Stop, stop_function

if TYPE_CHECKING:
    from typing_extensions import Self


class Job:
    """One long job on this process: whether it was asked to stop (a signal, or `stop=`), and the
    agreement of all ranks after each step."""

    def __init__(self, stop: Stop | None = None, message: str | None = None) -> None:
        self.asked = stop_function(stop)  # refused in one line when it is neither kind
        self.signals = StopRequests(message)  # `message` printed at the first signal; None: silent

    @property
    def requested(self) -> bool:
        """A signal came, or `stop=` says stop (asked now)."""
        return self.signals.requested or (self.asked is not None and bool(self.asked()))

    @property
    def signal_name(self) -> str | None:
        """ "Ctrl-C" or "SIGTERM", once one came; None otherwise (`stop=` included)."""
        return self.signals.signal_name

    def agree(
        self, stopped: bool | None = None, finished: bool = False, values: Sequence[float] = ()
    ) -> Agreement:
        """All ranks' agreement after a step: whether any stopped (`stopped`, default `requested`) and
        by which signal, whether all `finished`, and `values` summed (reverie.distributed.agree)."""
        stopped = self.requested if stopped is None else stopped
        return distributed.agree(stopped, self.signal_name, finished, values)

    def run(
        self,
        steps: Iterator[Any],
        values: Callable[[], Sequence[float]] = tuple,
        stops: tuple[type[BaseException], ...] = (),
    ) -> Agreement:
        """Take one step of `steps` at a time (an exception in `stops` means this process was
        stopped inside one) and agree after each with the other ranks (a rank that is done or stopped
        goes on agreeing), until all are done or one was stopped; `values()` are summed each time.
        `steps` is closed at the end."""
        finished = stopped = False
        try:
            while True:
                asked = self.requested  # once a round (a signal during the step is in agree's too)
                if not (finished or stopped or asked):
                    try:
                        next(steps)
                    except StopIteration:
                        finished = True
                    except stops:
                        stopped = True
                agreed = self.agree(stopped or asked, finished, values())
                if agreed.stopped or agreed.finished:
                    return agreed
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Self:
        self.signals.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.signals.__exit__(kind, value, trace)


__all__ = ["Agreement", "Job"]
