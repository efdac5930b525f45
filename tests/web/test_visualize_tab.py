"""The Dream tab's Visualize mode (Page.visualize, /visualize): the labelled sheet of a layer's channels
that `reverie visualize ... --grid` writes, under the page's caps, queue and stop.

Tiles are 32 px of efficientnet_lite0's shallow block2 optimized for two steps: a second or two.

python -m pytest -q tests/web/test_visualize_tab.py
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pytest
from gradio_client.exceptions import AppError
from PIL import Image

MODEL, LAYER = "efficientnet_lite0", "block2"  # block2 has 24 channels
TILE, STEPS = 32, 2
LABEL_STRIP = 14  # reverie.deepdream.visualize.grid's label under each tile


def quiet(*_: Any, **__: Any) -> None:
    """A progress tracker that shows nothing (the page's own is Gradio's)."""


def page_for(tmp_path: Path, **settings: Any):
    from reverie.web.app import Page
    from reverie.web.settings import WebSettings

    return Page(WebSettings(runs=tmp_path / "runs", **settings))


def sheet_size(columns: int, rows: int, tile: int = TILE) -> tuple[int, int]:
    """The grid's size: tiles with 2 px gaps, a label strip under each."""
    return 2 + columns * (tile + 2), 2 + rows * (tile + LABEL_STRIP + 2)


def test_visualize_over_http_returns_the_command_lines_sheet(served) -> None:
    """Through the page's queue: two channels side by side, labelled, pixel for pixel what
    reverie.visualize_channels draws with the same dreamer (what `reverie visualize --grid` writes)."""
    from gradio_client import Client

    import reverie

    app, url = served
    client = Client(url, verbose=False)
    path, summary = client.predict(MODEL, LAYER, "3,12", TILE, STEPS, api_name="/visualize")
    sheet = Image.open(path)
    assert sheet.size == sheet_size(2, 1) == (70, 50)
    assert Path(path).name == f"{MODEL}-{LAYER}.png"
    assert summary == (
        f"2 channel(s) of {LAYER}, {TILE} px, {STEPS} steps: a 70x50 sheet, as "
        f"`reverie visualize {MODEL} {LAYER} --channels 3,12 --grid --size {TILE} --steps {STEPS}` draws it"
    )
    dreamer = app.reverie_page.dreamers.get(MODEL)
    expected = reverie.visualize_channels(dreamer, LAYER, [3, 12], size=TILE, steps=STEPS, progress=False)
    assert np.array_equal(np.asarray(sheet.convert("RGB")), np.asarray(expected.sheet))
    tiles = np.asarray(sheet.convert("RGB"), dtype=np.float32)[2 : 2 + TILE, 2 : 2 + TILE]
    assert tiles.std() > 1.0  # rendered, not a blank tile


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((MODEL, LAYER, "", TILE, STEPS), "type the channels to visualize, e.g. 0-7 or 3,12,97"),
        ((MODEL, LAYER, "one,two", TILE, STEPS), r"channels are written 0-63,70 \(whole numbers\)"),
        ((MODEL, LAYER, "5-2", TILE, STEPS), "the channel range '5-2' runs backwards"),
        ((MODEL, LAYER, "0-16", TILE, STEPS), "'0-16' names 17 channels; at most 16 per sheet"),
        ((MODEL, LAYER, "0-999999999", TILE, STEPS), "names 1,000,000,000 channels; at most 16"),
        ((MODEL, LAYER, "0,99", TILE, STEPS), "channel 99 is out of range for layer block2: .*0..23"),
        ((MODEL, "nonsense", "0", TILE, STEPS), "unknown layer 'nonsense' for efficientnet_lite0"),
        ((MODEL, None, "0", TILE, STEPS), "pick a layer to visualize"),
        ((MODEL, LAYER, "0", 200, STEPS), "size must be a whole number from 16 to 128 on this page, got 200"),
        ((MODEL, LAYER, "0", 8, STEPS), "size must be a whole number from 16 to 128"),
        ((MODEL, LAYER, "0", TILE, 129), "steps must be a whole number from 1 to 128 on this page, got 129"),
        ((MODEL, LAYER, "0", TILE, 2.5), "steps must be a whole number from 1 to 128 on this page, got 2.5"),
    ],
)
def test_visualize_refuses_bad_input_in_one_line(tmp_path: Path, args, message) -> None:
    page = page_for(tmp_path)
    with pytest.raises(gr.Error, match=message) as refused:
        page.visualize(*args, progress=quiet)
    assert "\n" not in str(refused.value) and not page.jobs.running()


def test_visualize_caps_come_from_the_settings(tmp_path: Path) -> None:
    page = page_for(tmp_path, max_visualize_size=48, max_visualize_steps=3, max_visualize_channels=2)
    for args, message in [
        (("0", 64, 1), "size must be a whole number from 16 to 48"),
        (("0", TILE, 4), "steps must be a whole number from 1 to 3"),
        (("0-2", TILE, 1), "names 3 channels; at most 2 per sheet"),
    ]:
        with pytest.raises(gr.Error, match=message):
            page.visualize(MODEL, LAYER, args[0], *args[1:], progress=quiet)
    path, _ = page.visualize(MODEL, LAYER, "0-1", 48, 1, progress=quiet)  # at the caps: drawn
    assert Image.open(path).size == sheet_size(2, 1, 48)


def test_over_http_the_widgets_refuse_values_over_the_caps(client) -> None:
    with pytest.raises(AppError, match="Value 200 is greater than maximum value 128"):
        client.predict(MODEL, LAYER, "0", 200, STEPS, api_name="/visualize")
    with pytest.raises(AppError, match="channel 99 is out of range for layer block2"):
        client.predict(MODEL, LAYER, "99", TILE, STEPS, api_name="/visualize")


def test_visualize_stops_at_the_time_limit(tmp_path: Path) -> None:
    page = page_for(tmp_path, job_seconds=0.001)
    with pytest.raises(gr.Error, match="the visualization reached this page's time limit of 0.001 s"):
        page.visualize(MODEL, LAYER, "0-1", TILE, STEPS, progress=quiet)
    assert not page.jobs.running()


def test_a_cancel_stops_a_running_visualization(tmp_path: Path) -> None:
    """What the Stop visualizing button's cancel does (the request guard sets the job's flag)."""
    page = page_for(tmp_path)
    ended: list[BaseException] = []

    def work() -> None:
        try:
            page.visualize(MODEL, LAYER, "0-15", TILE, 128, progress=quiet)  # minutes if not stopped
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            ended.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    while not page.jobs.running() and thread.is_alive():
        thread.join(0.01)
    assert page.jobs.cancel("local", "visualize") == 1
    thread.join(60)
    assert not thread.is_alive()
    assert isinstance(ended[0], gr.Error) and "the visualization was cancelled" in str(ended[0])


def test_visualize_is_a_heavy_job_under_the_page_limits(served) -> None:
    """The per-client cap and the cancel flags (reverie.web.limits.Guard) cover /visualize."""
    from reverie.web.limits import Guard

    app, _ = served
    guard = Guard(app, app.reverie_page.jobs, 2**20, 1)
    assert guard.heavy_fn(api_name="visualize") is not None


def test_channel_text_writes_channels_as_the_command_line_reads_them() -> None:
    from reverie.deepdream.visualize import parse_indices
    from reverie.web.visualize_tab import channel_text

    for indices in ([0], [0, 1, 2, 3, 7], [3, 12, 97], [5, 6, 1, 2]):
        assert parse_indices(channel_text(indices)) == indices
    assert channel_text([0, 1, 2, 3, 7]) == "0-3,7"
