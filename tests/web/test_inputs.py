"""The page checks what it is sent: every number and choice each handler takes is checked on the
server against the bounds its widget shows (reverie.web.inputs), before any job starts, whatever a
client posts past the widgets (gradio_client, a raw POST to the queue).

python -m pytest -q tests/web/test_inputs.py
"""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from .conftest import RUN_NAME, TINY_DREAM

# each tab's handler arguments that are fine, in the page's order
TEXT = {
    "run": RUN_NAME,
    "prompt": "ROMEO:",
    "temperature": 0.8,
    "top_k": 0,
    "top_p": 1.0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "stop": "",
    "length": 10,
    "num_samples": 1,
    "seed": 0,
}
VISUAL = {"model": "efficientnet_lite0", "layer": "block2", "channels": "0-1", "size": 32, "steps": 2}
VIDEO = {
    "model": "efficientnet_lite0",
    "layers": ["block2"],
    "preset": "(none)",
    "motion": "flow (follow the motion)",
    "blend": 0.5,
    "octaves": 1,
    "iterations": 1,
}
NAN = math.nan


def quiet(*_: Any, **__: Any) -> None:
    """A progress tracker that shows nothing."""


@pytest.fixture
def watched(runs_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """A Page over the test runs and what it started: jobs, model loads, trainings, videos, sheets.
    Every load and every API call is refused, so a refusal that came too late shows as a failure."""
    import reverie
    from reverie.web.app import Page
    from reverie.web.jobs import Loaded
    from reverie.web.settings import WebSettings

    ran: list[str] = []

    def never(what: str):
        def called(*args: Any, **kwargs: Any) -> Any:
            ran.append(what)
            raise AssertionError(f"{what} ran on a refused input")

        return called

    for name in ("train", "dream_video", "visualize_channels"):
        monkeypatch.setattr(reverie, name, never(name))
    page = Page(
        WebSettings(runs=runs_dir), models=Loaded(never("load")), dreamers=Loaded(never("load_dreamer"))
    )
    job = page.jobs.job

    def counted(client: str, kind: str):
        ran.append(f"job {kind}")
        return job(client, kind)

    monkeypatch.setattr(page.jobs, "job", counted)
    return page, ran


def refused(call, message: str, ran: list[str]) -> None:
    """`call` is refused with `message` in one line of the page's, and started nothing."""
    with pytest.raises(gr.Error, match=message) as refusal:
        call()
    assert "\n" not in str(refusal.value)
    assert ran == [], ran


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", 2.5, "temperature must be a number from 0 to 2 on this page, got 2.5"),
        ("temperature", -0.1, "temperature must be a number from 0 to 2 on this page, got -0.1"),
        ("temperature", NAN, "temperature must be a number from 0 to 2 on this page, got nan"),
        ("top_k", -2, "top-k must be a whole number of at least 1, got -2"),
        ("top_k", 2.5, "top-k must be a whole number of at least 1, got 2.5"),
        ("top_p", 0.0, "top-p must be a number above 0 and at most 1, got 0.0"),
        ("top_p", 1.5, "top-p must be a number above 0 and at most 1, got 1.5"),
        ("min_p", -0.5, "min-p must be a number from 0 to 1, got -0.5"),
        ("repetition_penalty", 0.0, r"repetition penalty must be positive \(1 = none\), got 0.0"),
        ("length", -5, "length must be a whole number from 1 to 100000 on this page, got -5"),
        ("length", 10**6, "length must be a whole number from 1 to 100000 on this page, got 1000000"),
        ("num_samples", 9, "samples must be a whole number from 1 to 8 on this page, got 9"),
        ("num_samples", 0, "samples must be a whole number from 1 to 8 on this page, got 0"),
        ("seed", -1, r"seed must be a whole number in \[0, 2\*\*63 - 1\], got -1"),
        ("seed", 2**63, r"seed must be a whole number in \[0, 2\*\*63 - 1\], got 9223372036854775808"),
        ("run", "../tiny", "no run named '../tiny'"),
        ("prompt", "x" * 10_001, "the prompt is 10,001 characters, over this page's cap of 10,000"),
    ],
)
def test_the_text_tab_refuses_out_of_range_values_before_any_job(watched, field, value, message) -> None:
    page, ran = watched
    args = {**TEXT, field: value}
    refused(lambda: list(page.generate(*args.values())), message, ran)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("octaves", 9, "octaves must be a whole number from 1 to 8 on this page, got 9"),
        ("octaves", 0, "octaves must be a whole number from 1 to 8 on this page, got 0"),
        ("octaves", NAN, "octaves must be a whole number from 1 to 8 on this page, got nan"),
        ("iterations", 51, "iterations must be a whole number from 0 to 50 on this page, got 51"),
        ("iterations", -1, "iterations must be a whole number from 0 to 50 on this page, got -1"),
        ("step", 0.0, "step must be a number above 0 and at most 0.1 on this page, got 0.0"),
        ("step", 5.0, "step must be a number above 0 and at most 0.1 on this page, got 5.0"),
        ("jitter", 65, "jitter must be a whole number from 0 to 64 on this page, got 65"),
        ("tile", 10, "tile must be a whole number of at least 64, got 10"),
        ("model", "resnet", "unknown model 'resnet'; choose one of "),
        ("preset", "nonsense", r"unknown preset 'nonsense'; choose one of \(none\), book"),
        ("layers", [3], "layers are given by their names, e.g. block2"),
        ("weights", [["block2", "inf"]], "the weight of layer block2 must be a finite number, got inf"),
        ("weights", [["block2", 0]], "every layer weight is 0, so there is nothing to dream"),
        ("weights", [["block2", "a lot"]], "the weight of block2 must be a number, got 'a lot'"),
    ],
)
def test_the_dream_tab_refuses_out_of_range_values_before_any_job(
    watched, images, field, value, message
) -> None:
    page, ran = watched
    args = {**TINY_DREAM, field: value}
    refused(lambda: page.dream(str(images["small"]), *args.values(), progress=quiet), message, ran)


def test_a_preset_does_not_let_the_values_it_replaces_through(watched, images) -> None:
    """The preset decides the dream, but what a client sent beside it is still checked."""
    page, ran = watched
    args = {**TINY_DREAM, "preset": "book", "octaves": 99}
    message = "octaves must be a whole number from 1 to 8 on this page, got 99"
    refused(lambda: page.dream(str(images["small"]), *args.values(), progress=quiet), message, ran)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("size", 4096, "size must be a whole number from 16 to 128 on this page, got 4096"),
        ("size", -32, "size must be a whole number from 16 to 128 on this page, got -32"),
        ("steps", 10**6, "steps must be a whole number from 1 to 128 on this page, got 1000000"),
        ("model", "resnet", "unknown model 'resnet'; choose one of "),
        ("channels", "0-99", "'0-99' names 100 channels; at most 16 per sheet"),
        ("channels", 7, "type the channels to visualize"),
    ],
)
def test_the_visualize_mode_refuses_out_of_range_values_before_any_job(
    watched, field, value, message
) -> None:
    page, ran = watched
    args = {**VISUAL, field: value}
    refused(lambda: page.visualize(*args.values(), progress=quiet), message, ran)


@pytest.mark.parametrize(
    ("minutes", "base", "message"),
    [
        (999, "shipped:shakespeare", "minutes must be a number above 0 and at most 5 on this page, got 999"),
        (-1, "shipped:shakespeare", "minutes must be a number above 0 and at most 5 on this page, got -1"),
        (NAN, "shipped:shakespeare", "minutes must be a number above 0 and at most 5 on this page, got nan"),
        (
            "soon",
            "shipped:shakespeare",
            "minutes must be a number above 0 and at most 5 on this page, got 'soon'",
        ),
        (1, "shipped:nonsense", "no run named 'shipped:nonsense'"),
    ],
)
def test_the_finetune_tab_refuses_out_of_range_values_before_any_job(
    watched, shipped_models, tmp_path, minutes, base, message
) -> None:
    page, ran = watched
    text = tmp_path / "poems.txt"
    text.write_text("a few lines of text\n" * 20, encoding="utf-8")
    refused(lambda: list(page.finetune(str(text), base, minutes, "poems")), message, ran)
    assert not (page.settings.runs / "poems").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("octaves", 99, "octaves must be a whole number from 1 to 8 on this page, got 99"),
        ("iterations", -1, "iterations must be a whole number from 0 to 50 on this page, got -1"),
        ("blend", 1.5, "blend must be a number from 0 to 1, got 1.5"),
        ("motion", "sideways", "unknown motion 'sideways'; choose one of flow"),
        ("model", "resnet", "unknown model 'resnet'; choose one of "),
        ("preset", "nonsense", "unknown preset 'nonsense'"),
    ],
)
def test_the_video_tab_refuses_out_of_range_values_before_any_job(
    watched, tmp_path, field, value, message
) -> None:
    page, ran = watched
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 100)  # never read: the values are refused first
    args = {**VIDEO, field: value}
    refused(lambda: page.dream_clip(str(clip), *args.values(), progress=quiet), message, ran)


def test_over_http_values_the_widgets_let_through_are_refused_by_the_page(server, client, images) -> None:
    """What Gradio's own checks of the widgets pass (a NaN in a raw POST, a tile under the API's
    smallest, a weight that is no number) reaches the handler, which refuses it in its own words."""
    body = json.dumps({"data": list({**TEXT, "temperature": NAN}.values())}).encode()  # NaN: not JSON
    request = urllib.request.Request(
        f"{server.rstrip('/')}/gradio_api/call/generate",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        event = json.loads(answer.read())["event_id"]
    with urllib.request.urlopen(
        f"{server.rstrip('/')}/gradio_api/call/generate/{event}", timeout=60
    ) as answer:
        events = answer.read().decode()
    assert (
        "event: error" in events
        and "temperature must be a number from 0 to 2 on this page, got nan" in events
    )
    small = handle_file(str(images["small"]))
    cases = [
        ({"tile": 10}, "tile must be a whole number of at least 64, got 10"),
        (
            {"weights": {"headers": ["layer", "weight"], "data": [["block2", "nan"]]}},
            "weight of layer block2",
        ),
    ]
    for overrides, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(small, *{**TINY_DREAM, **overrides}.values(), api_name="/dream")


def test_the_widgets_show_the_bounds_the_handlers_check(runs_dir: Path) -> None:
    """One definition of each bound: each endpoint's sliders and numbers end where its check does."""
    from reverie.deepdream.options import PRESETS
    from reverie.web import dream_tab, text_tab, video_tab
    from reverie.web.app import build_app
    from reverie.web.settings import WebSettings

    blocks = build_app(WebSettings(runs=runs_dir, max_visualize_size=64, job_seconds=120))
    page = blocks.reverie_page
    expected = {
        "generate": {
            2: text_tab.TEMPERATURE,
            4: text_tab.TOP_P,
            5: text_tab.MIN_P,
            8: text_tab.LENGTH,
            9: text_tab.SAMPLES,
            10: text_tab.SEED,
        },
        "dream": {4: dream_tab.OCTAVES, 5: dream_tab.ITERATIONS, 6: dream_tab.STEP, 7: dream_tab.JITTER},
        "visualize": {3: page.visualize_size, 4: page.visualize_steps},
        "finetune": {2: page.minutes},
        "dream_video": {5: video_tab.BLEND, 6: dream_tab.OCTAVES, 7: dream_tab.ITERATIONS},
    }
    fns = {fn.api_name: fn for fn in blocks.fns.values()}
    for api_name, bounds in expected.items():
        for index, bound in bounds.items():
            widget = fns[api_name].inputs[index]
            step = widget.step if isinstance(widget, gr.Slider) else 0
            assert (widget.minimum, widget.maximum) == bound.range(step), (api_name, bound.name)
    assert page.visualize_size.high == 64 and page.minutes.high == 2
    assert [choice[1] for choice in fns["dream"].inputs[9].choices] == ["(none)", *PRESETS]


def test_the_visualize_mode_names_its_sheet_and_command_as_the_command_line(tmp_path: Path) -> None:
    """The page's file name is `reverie visualize`'s default output, and the command it shows parses
    back, with the CLI's own parser, into the same model, layer, channels, size and steps."""
    import shlex

    from reverie.cli import build_parser
    from reverie.deepdream.command import visualize_command, visualize_output
    from reverie.deepdream.visualize import parse_indices
    from reverie.web.app import Page
    from reverie.web.settings import WebSettings

    page = Page(WebSettings(runs=tmp_path / "runs"))
    path, summary = page.visualize("efficientnet_lite0", "block2", "3,1-2", 16, 1, progress=quiet)
    assert (
        Path(path).name
        == visualize_output("efficientnet_lite0", "block2").name
        == "efficientnet_lite0-block2.png"
    )
    command = visualize_command("efficientnet_lite0", "block2", "3,1-2", size=16, steps=1)
    assert f"`{command}`" in summary
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.model, args.target, parse_indices(args.channels), args.size, args.steps, args.grid) == (
        "efficientnet_lite0",
        "block2",
        [3, 1, 2],
        16,
        1,
        True,
    )
    assert visualize_output("my_pkg.nets:build", "features/3") == Path("my_pkg.nets:build-features_3.png")
