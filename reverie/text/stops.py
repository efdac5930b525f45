"""Stop sequences: end a stream of generated text at the first occurrence of any stop string.

    stop = StopText(["\\n\\n", "THE END"])
    for piece in pieces:
        print(stop.feed(piece), end="")     # text is held back while it may begin a stop string
        if stop.done:
            break
    print(stop.flush(), end="")           # what was held back, when the stream ended without a stop

The stop string itself is not part of the text (as in the OpenAI API; Hugging Face keeps it).
Only the generated text is searched, not the prompt. Where a stop is typed (the command line, the
page), `unescape` reads `\\n` as a new line and `\\t` as a tab.
"""

from __future__ import annotations

from collections.abc import Sequence

from reverie.errors import require

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(typed: str) -> str:
    """A stop sequence as typed: `\\n` is a new line, `\\t` a tab, `\\\\` a backslash; any other
    character stands for itself."""
    out, chars = [], iter(typed)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(_ESCAPES.get(following, char + following))
        else:
            out.append(char)
    return "".join(out)


class StopText:
    """A filter over text pieces that releases text up to the first stop string."""

    def __init__(self, stops: Sequence[str] = ()) -> None:
        stops = (stops,) if isinstance(stops, str) else tuple(stops)
        require(
            all(isinstance(s, str) and s for s in stops),
            f"stop sequences must be non-empty strings, got {list(stops)!r}",
        )
        self.stops = stops
        self.pending = ""
        self.done = False

    def feed(self, piece: str) -> str:
        """The text that can be released once `piece` is added ("" after a stop)."""
        if self.done:
            return ""
        if not self.stops:
            return piece
        text = self.pending + piece
        found = [index for index in (text.find(stop) for stop in self.stops) if index >= 0]
        if found:
            self.done, self.pending = True, ""
            return text[: min(found)]
        held = self._held_back(text)
        self.pending = text[len(text) - held :]
        return text[: len(text) - held]

    def flush(self) -> str:
        """The text still held back (the stream ended without reaching a stop)."""
        rest, self.pending = self.pending, ""
        return rest

    def _held_back(self, text: str) -> int:
        """Length of the longest end of `text` that some stop string begins with."""
        longest = min(len(text), max(len(stop) for stop in self.stops) - 1)
        for size in range(longest, 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self.stops):
                return size
        return 0
