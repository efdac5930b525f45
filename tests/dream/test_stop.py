"""`stop=` of reverie.dream and reverie.visualize: a threading.Event (or anything with is_set()),
asked once before every step; once set, the job ends between two steps with DreamStopped, as a
stop function's True always did. The video's `stop=` is tested with the videos (test_video.py)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import reverie
from reverie.deepdream.octaves import DreamStopped
from reverie.errors import ReverieError

from .conftest import smooth_image


class SetOnAsking(threading.Event):
    """An Event that counts how often it is asked and sets itself at the `at`-th time (as another
    thread's cancel would, between two steps)."""

    def __init__(self, at: int | None = None) -> None:
        super().__init__()
        self.at = at
        self.asked = 0

    def is_set(self) -> bool:
        self.asked += 1
        if self.asked == self.at:
            self.set()
        return super().is_set()


def test_an_event_ends_a_dream_between_two_steps_asked_once_per_step(tiny):
    image = smooth_image(40, 40)
    options = {"model": tiny, "octaves": 2, "iterations": 5, "progress": False}
    event = SetOnAsking(at=7)
    with pytest.raises(DreamStopped, match="stopped before step 2 of 5 of octave 2"):
        reverie.dream(image, stop=event, **options)
    assert event.asked == 7  # once per step, and no step after it was set
    never = SetOnAsking()
    kept_going = reverie.dream(image, stop=never, **options)
    assert never.asked == 10  # 2 octaves x 5 steps
    assert np.array_equal(np.asarray(kept_going), np.asarray(reverie.dream(image, **options)))
    dreamer = reverie.load_dreamer(tiny, device="cpu")
    with pytest.raises(DreamStopped, match="before step 1 of"):
        dreamer.dream(image, stop=SimpleNamespace(is_set=lambda: True), **options)  # any is_set()
    with pytest.raises(ReverieError, match="stop= takes a function of no arguments"):
        reverie.dream(image, stop=3, **options)


def test_an_event_ends_a_visualization_between_two_steps(tiny):
    layer = tiny.layer_table()[0].name
    quick = {"size": 32, "steps": 6, "progress": False}
    event = SetOnAsking(at=4)
    with pytest.raises(DreamStopped, match="stopped before step 4 of 6"):
        reverie.visualize(tiny, layer, stop=event, **quick)
    assert event.asked == 4
    never = SetOnAsking()
    free = reverie.visualize(tiny, layer, **quick)
    asked = reverie.visualize(tiny, layer, stop=never, **quick)
    assert never.asked == 6 and torch.equal(free.tensor, asked.tensor)
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(DreamStopped, match="before step 1 of 6"):
        reverie.visualize_channels(tiny, layer, [0, 1], stop=cancelled, **quick)
    with pytest.raises(ReverieError, match="stop= takes a function"):
        reverie.visualize(tiny, layer, stop="soon", **quick)
