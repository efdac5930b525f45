"""The training run's progress bar on stderr, and the lines printed around it.

    progress = Progress(total_steps, first_step, shown=options.progress and where.is_main)
    progress.step(loss, run.history[-1], seconds_left)   # after each step: loss, tokens/s, epoch, time left
    progress.say("step 400: validation loss ...")         # above the bar (stderr), or samples on stdout
    progress.close()                                      # what is said after is printed plainly

tqdm redraws the bar below whatever is said; without a bar (--no-progress, ranks other than 0, or
once closed) the text is printed as it is.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
    """A bar of the run's steps, `initial` of `total` done (None: a budget in minutes only)."""

    def __init__(self, total: int | None, initial: int, shown: bool) -> None:
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not shown,
            desc="training",
        )

    def step(self, loss: float, row: dict[str, Any], seconds_left: float | None) -> None:
        """One step more: its loss, and the speed and epoch of its metrics row."""
        self.bar.update(1)
        postfix = {
            "loss": f"{loss:.4f}",
            "tok_s": f"{row['tokens_per_s']:,.0f}",
            "epoch": f"{row['epoch']:.2f}",
        }
        if seconds_left is not None:
            minutes, seconds = divmod(max(int(seconds_left), 0), 60)
            postfix["left"] = f"{minutes}:{seconds:02d}"
        self.bar.set_postfix(postfix, refresh=False)

    def say(self, text: str, stream: TextIO | None = None) -> None:
        """Print `text` around the bar, on `stream` (sys.stderr as it is when called)."""
        stream = sys.stderr if stream is None else stream
        if not self.bar.disable:
            self.bar.write(text.rstrip("\n"), file=stream)
        else:
            print(text.rstrip("\n"), file=stream, flush=True)

    def close(self) -> None:
        self.bar.close()
