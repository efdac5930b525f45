"""What the page's handlers accept: each number's range and each choice's values, one definition for
the widget that shows it and for the server's check of what a client sent.

    OCTAVES = Bound.of(DreamOptions, "octaves", "octaves", high=8)   # the option's low end, the page's cap
    gr.Slider(*OCTAVES.range(), ...)                                 # the widget's ends
    octaves = OCTAVES.check(posted)                                  # 3.0 -> 3; 9 -> a ReverieError
    model = one_of("model", posted, reverie.available_models())

A widget's limits hold in the browser only: a client can post any value to Gradio's queue
(gradio_client, a raw POST), so every handler checks every number and choice it receives with
these before a job starts. The bounds are the options' own (reverie.options), with the page's cap
on top where it has one; a refusal is a ReverieError of one line, which the page shows as its error.

    python -m pytest -q tests/web/test_inputs.py
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reverie.options import check_value, options_of


@dataclass(frozen=True)
class Bound:
    """A number a handler takes, as the page names it: whole or not, its ends (inclusive unless open),
    and whether the high end is this page's cap rather than the option's own."""

    name: str
    whole: bool
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    rule: str | None = None  # the option's own wording of its bounds (used where the page adds no cap)
    capped: bool = False

    @classmethod
    def of(cls, options: type, field: str, name: str, *, high: float | None = None) -> Bound:
        """Option `field` of the options class `options`, with its bounds, at most `high` on this page."""
        found = options_of(options)[field]
        meta = found.meta
        capped = high is not None and (meta["high"] is None or high < meta["high"])
        return cls(
            name,
            whole=found.base is int,
            low=meta["low"],
            high=high if capped else meta["high"],
            low_open=meta["low_open"],
            high_open=meta["high_open"] and not capped,
            rule=meta["rule"],
            capped=capped,
        )

    def range(self, step: float = 0) -> tuple[float | None, float | None]:
        """The widget's ends: an open end moved a `step` (the widget's smallest move) inside."""
        low = None if self.low is None else self.low + (step if self.low_open else 0)
        high = None if self.high is None else self.high - (step if self.high_open else 0)
        return low, high

    def check(self, value: Any) -> Any:
        """`value` as this number (a widget's 3.0 as 3 when whole), or a ReverieError in one line."""
        if self.whole and isinstance(value, float) and value.is_integer():
            value = int(value)
        check_value(
            self.name,
            value,
            kind=int if self.whole else float,
            low=self.low,
            high=self.high,
            low_open=self.low_open,
            high_open=self.high_open,
            rule=self.words(),
        )
        return value if self.whole else float(value)

    def check_or_none(self, value: Any, off: Any = None) -> Any:
        """None for an empty widget or its `off` value (a top-k or a tile of 0), else `check(value)`."""
        if value is None or value == "" or (off is not None and value == off and not isinstance(value, bool)):
            return None
        return self.check(value)

    def words(self) -> str:
        """How the refusal says the bounds: 'a whole number from 1 to 8 on this page', 'a number above 0'."""
        if self.rule and not self.capped:
            return self.rule
        ends = []
        if self.low is not None:
            ends.append(f"{'above' if self.low_open else 'at least'} {_shown(self.low)}")
        if self.high is not None:
            ends.append(f"{'below' if self.high_open else 'at most'} {_shown(self.high)}")
        if len(ends) == 2 and not (self.low_open or self.high_open):
            ends = [f"from {_shown(self.low)} to {_shown(self.high)}"]  # type: ignore[arg-type]
        words = "a whole number" if self.whole else "a number"
        if ends:
            words += (" of " if ends[0].startswith("at ") else " ") + " and ".join(ends)
        return f"{words} on this page" if self.capped else words


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """`value` when it is one of `choices`, else a ReverieError naming them."""
    check_value(name, value, choices=tuple(choices))
    return value


def _shown(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


__all__ = ["Bound", "one_of"]
