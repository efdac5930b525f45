"""Fuzzing what the page's handlers are posted: every number and choice of the options the page takes,
checked by reverie.web.inputs (Bound, one_of) before a job starts, as any JSON a client can post past
the widgets (wrong types, huge numbers, NaN, nesting). Each value ends as a number within the bounds
or a one-line ReverieError. Pure Python (a parsed JSON value in, a check out): run in this process.

    REVERIE_FUZZ_EXAMPLES=2000 python -m pytest -q tests/fuzz/test_page_inputs.py
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reverie.deepdream.options import DreamOptions
from reverie.deepdream.videooptions import VideoOptions
from reverie.deepdream.visualize import VisualizeOptions
from reverie.errors import ReverieError
from reverie.options import options_of
from reverie.text.options import TrainOptions
from reverie.text.sampling import SamplingOptions
from reverie.web.inputs import Bound, one_of

from .harness import FUZZ
from .strategies import field_values

OPTIONS = (DreamOptions, VideoOptions, VisualizeOptions, SamplingOptions, TrainOptions)
NUMBERS = [
    (options, name)
    for options in OPTIONS
    for name, found in options_of(options).items()
    if found.base in (int, float) and found.meta.get("choices") is None
]
CHOICES = [
    (options, name, found.meta["choices"])
    for options in OPTIONS
    for name, found in options_of(options).items()
    if found.meta.get("choices")
]
CAPS = st.one_of(st.none(), st.sampled_from([1, 8, 0.5, 1e6, 2**63]))
# what a client can post: JSON as the server parses it (Infinity and NaN included)
posted = field_values.map(lambda value: json.loads(json.dumps(value, allow_nan=True)))


def _one_line(check: Any, value: Any) -> Any:
    try:
        return check(value)
    except ReverieError as exc:
        assert str(exc).strip() and "\n" not in str(exc), repr(str(exc))
        return exc


@FUZZ
@given(number=st.sampled_from(NUMBERS), cap=CAPS, value=posted, off=st.sampled_from([None, 0]))
def test_a_number_posted_to_the_page(number: tuple[type, str], cap: Any, value: Any, off: Any) -> None:
    options, name = number
    bound = Bound.of(options, name, name, high=cap)
    bound.range(1)
    bound.words()
    for check in (bound.check, lambda posted: bound.check_or_none(posted, off)):
        result = _one_line(check, value)
        if isinstance(result, ReverieError) or result is None:
            continue
        assert isinstance(result, int if bound.whole else float) and not isinstance(result, bool)
        assert bound.whole or math.isfinite(result)
        assert bound.low is None or result >= bound.low
        assert bound.high is None or result <= bound.high


@FUZZ
@given(
    choice=st.sampled_from(CHOICES),
    value=st.one_of(posted, st.sampled_from([c for *_, cs in CHOICES for c in cs])),
)
def test_a_choice_posted_to_the_page(choice: tuple[type, str, tuple[Any, ...]], value: Any) -> None:
    _, name, choices = choice
    result = _one_line(lambda posted: one_of(name, posted, choices), value)
    assert isinstance(result, ReverieError) or result in choices
