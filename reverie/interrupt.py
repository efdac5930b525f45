"""Stopping long work cleanly on Ctrl-C: the first press asks it to stop at the next safe point.

    with StopRequests("stopping after this step and saving") as stop:
        while not stop.requested:
            do_one_step()
        save()

The first Ctrl-C (SIGINT) sets `requested` and prints the message on stderr; a second one raises
KeyboardInterrupt at once. The previous handler comes back when the block ends. Outside the main
thread (a web server's worker) signals cannot be caught, and nothing is installed.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self


class StopRequests:
    """Whether a stop was asked for (Ctrl-C), for the duration of a `with` block."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message  # printed at the first Ctrl-C; None: silent
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.message:
            print(f"\nreverie: Ctrl-C: {self.message} (Ctrl-C again quits at once)", file=sys.stderr)

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_signal)
            self._installed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
