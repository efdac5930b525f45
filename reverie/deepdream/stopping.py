"""Stopping a dream, a video or a visualization from outside: what `stop=` takes.

    cancel = threading.Event()
    reverie.dream("photo.jpg", stop=cancel)            # cancel.set() from another thread ends it
    reverie.dream_video("clip.mp4", "out.mp4", stop=lambda: time.monotonic() > deadline)

`stop=` is an object with `is_set()` (a threading.Event, a multiprocessing one) or a function of no
arguments returning True to stop. It is asked once before every gradient or optimization step; once
it says stop, the job ends between two steps with DreamStopped (reverie.deepdream.octaves): a dream
or a visualization returns nothing, a video keeps the frames it finished, and the same call resumes
from them. `stop_function` turns either kind into the function the options hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from reverie.errors import ReverieError

STOP_RULE = (
    "a function of no arguments returning True to stop, or an object with is_set() (a threading.Event)"
)


class StopFlag(Protocol):
    """What `stop=` may be besides a function: anything with `is_set()`, a threading.Event's way."""

    def is_set(self) -> bool: ...


Stop = StopFlag | Callable[[], bool]


def stop_function(stop: Stop | None) -> Callable[[], bool] | None:
    """`stop` as a function of no arguments (an Event's `is_set`, a function as it is; None: None),
    refused in one line when it is neither."""
    if stop is None:
        return None
    is_set = getattr(stop, "is_set", None)
    if callable(is_set):
        return is_set
    if not callable(stop):
        raise ReverieError(f"stop= takes {STOP_RULE}, got {stop!r}")
    return stop
