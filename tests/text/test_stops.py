"""Stop sequences: text is released up to the first stop string, held back while it may begin one."""

from __future__ import annotations

import pytest

from reverie.errors import ReverieError
from reverie.text.stops import StopText, unescape


def feed_all(stop: StopText, pieces: list[str]) -> tuple[list[str], bool]:
    released = [stop.feed(piece) for piece in pieces]
    if not stop.done:
        released.append(stop.flush())
    return released, stop.done


def test_text_up_to_the_stop_is_released_and_the_stop_left_out():
    released, done = feed_all(StopText(["END"]), ["the ", "E", "N", "D", " more"])
    assert done and "".join(released) == "the "
    assert released == ["the ", "", "", "", ""]  # "E" and "EN" were held back: they may begin "END"


def test_a_false_start_is_released_once_it_cannot_be_a_stop():
    released, done = feed_all(StopText(["END"]), ["E", "N", "x", "y"])
    assert not done and released == ["", "", "ENx", "y", ""]


def test_the_earliest_of_several_stops_wins():
    released, done = feed_all(StopText(["\n\n", "b"]), ["aab\n\nc"])
    assert done and "".join(released) == "aa"


def test_held_back_text_comes_out_when_the_stream_ends():
    released, done = feed_all(StopText(["xyz"]), ["abc", "x", "y"])
    assert not done and "".join(released) == "abcxy" and released[-1] == "xy"


def test_no_stops_passes_everything_through():
    released, done = feed_all(StopText(), ["a", "b"])
    assert released == ["a", "b", ""] and not done


@pytest.mark.parametrize("stops", [[""], [3], ["ok", None]])
def test_bad_stops_are_refused(stops):
    with pytest.raises(ReverieError, match="stop sequences must be non-empty strings"):
        StopText(stops)


@pytest.mark.parametrize(
    "typed, meant",
    [
        ("\\n\\n", "\n\n"),
        ("a\\tb", "a\tb"),
        ("c:\\\\x", "c:\\x"),
        ("end\\", "end\\"),
        ("\\q", "\\q"),
        ("plain", "plain"),
    ],
)
def test_typed_stops_read_backslash_n_as_a_new_line(typed, meant):
    assert unescape(typed) == meant
