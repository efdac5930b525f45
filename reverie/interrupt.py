"""Stopping long work cleanly: Ctrl-C or SIGTERM asks it to stop at the next safe point.

    with StopRequests("stopping after this step and saving") as stop:
        while not stop.requested:
            do_one_step()
        save()
    stop.signal_name        # "Ctrl-C" or "SIGTERM": what asked

The first Ctrl-C (SIGINT) or SIGTERM (what `docker stop`, Slurm preemption and torchrun's teardown
send) sets `requested` and prints the message on stderr; a second one raises KeyboardInterrupt at
once. The previous handlers come back when the block ends. Outside the main thread (a web
server's worker) signals cannot be caught, and nothing is installed.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
EXIT_CODES = {"Ctrl-C": 130, "SIGTERM": 143}  # 128 + the signal's number, as shells report it


class StopRequests:
    """Whether a stop was asked for (Ctrl-C or SIGTERM), for the duration of a `with` block."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message  # printed at the first signal; None: silent
        self.signal_name: str | None = None  # "Ctrl-C" or "SIGTERM", once one came
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signal_name = SIGNALS[signum]
        if self.message:
            print(
                f"\nreverie: {self.signal_name}: {self.message} (Ctrl-C again quits at once)", file=sys.stderr
            )

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._on_signal) for number in SIGNALS}
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}
