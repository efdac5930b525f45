"""Stopping long work from outside: what every job's `stop=` takes (training, a dream, a video, a
visualization, the page's jobs).

    cancel = threading.Event()
    reverie.dream("photo.jpg", stop=cancel)            # cancel.set() from another thread ends it
    reverie.dream_video("clip.mp4", "out.mp4", stop=lambda: time.monotonic() > deadline)
    reverie.train("poems.txt", "runs/poems", stop=cancel)

`stop=` is an object with `is_set()` (a threading.Event, a multiprocessing one) or a
function of no arguments returning True to stop. A dream or a visualization asks it before every
gradient step and ends with DreamStopped (reverie.deepdream.octaves), a video keeps the frames it
finished, and the same call resumes from them; training asks it after every step and ends as at
Ctrl-C (saved, resumable). `stop_function` turns either kind into the function the jobs ask.
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
