"""The page's Fine-tune and Video tabs: through the Page's endpoints and over HTTP as a client would.

A tiny shipped model (scripts/pretrain.py, about a second) is the base; fine-tuning runs for a few
seconds; clips are a handful of 64x48 frames dreamed at one octave and one step.

python -m pytest -q tests/web/test_tabs.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from helpers import NIETZSCHE, shakespeare_slice

from .conftest import RUN_NAME, serve

SAMPLING = [0.8, 0, 1.0, 0.0, 1.0, ""]  # temperature, top_k, top_p, min_p, repetition penalty, stop
QUICK_MINUTES = 0.05  # three seconds of fine-tuning
FRAMES = 4
# the Video tab's inputs after the clip: model, layers, preset, motion, blend, octaves, iterations
TINY_VIDEO = ["efficientnet_lite0", ["block2"], "(none)", "flow (follow the motion)", 0.5, 1, 1]


def poems(path: Path, n_chars: int = 6000) -> Path:
    """A small text with characters the Shakespeare base never saw (Nietzsche's, with accents)."""
    text = NIETZSCHE.read_text(encoding="utf-8")[:n_chars] + "\nÜbermensch — déjà vu\n"
    path.write_text(text, encoding="utf-8")
    return path


def moving_clip(path: Path, count: int = FRAMES) -> Path:
    """A clip of `count` 64x48 frames: a bright square moving 2 pixels a frame over a gradient."""
    from fractions import Fraction

    from reverie.deepdream.videoio import write_video

    ys, xs = np.mgrid[0:48, 0:64]
    frames = []
    for t in range(count):
        frame = np.stack([xs * 3, ys * 4, 255 - xs * 3], -1).astype(np.uint8)
        frame[10:26, 8 + 2 * t : 24 + 2 * t] = 230
        frames.append(frame)
    write_video(frames, path, Fraction(8))
    return path


def quiet(*_: Any, **__: Any) -> None:
    """A progress tracker that shows nothing (the page's own is Gradio's)."""


def page_for(runs: Path, **settings: Any):
    from reverie.web.app import Page
    from reverie.web.settings import WebSettings

    return Page(WebSettings(runs=runs, **settings))


# ---- Fine-tune -------------------------------------------------------------------------------------


def test_finetune_streams_the_curve_and_samples_and_the_run_generates_in_the_text_tab(
    shipped_models: Path, tmp_path: Path
) -> None:
    from reverie.web.text_tab import SHIPPED, find_runs, text_choices

    page = page_for(tmp_path / "runs")
    views = list(
        page.finetune(str(poems(tmp_path / "poems.txt")), SHIPPED + "shakespeare", QUICK_MINUTES, "")
    )
    assert len(views) >= 2  # updates while it trains, then the summary
    curve, samples, status = views[-1]
    assert status.startswith("poems: ") and "validation loss" in status and "Text tab" in status
    assert Path(curve).stat().st_size > 0 and samples.startswith("=== step ")
    assert "--- temperature 0.5" in samples
    assert any(view[2].startswith("step ") for view in views[:-1])  # the steps were shown as they came
    assert find_runs(tmp_path / "runs") == ["poems"]
    assert ("poems", "poems") in text_choices(tmp_path / "runs")
    text = list(page.generate("poems", "Über", *SAMPLING, 30, 1, 0))[-1]
    assert text.startswith("Über") and len(text) > len("Über")  # bytes the base never saw


def test_finetune_stops_at_cancel_and_keeps_the_run(shipped_models: Path, tmp_path: Path) -> None:
    from reverie.web.text_tab import SHIPPED, find_runs

    page = page_for(tmp_path / "runs")
    views = page.finetune(str(poems(tmp_path / "mine.txt")), SHIPPED + "shakespeare", 2.0, "mine")
    for _, _, status in views:
        if status.startswith("step "):
            assert page.jobs.cancel("local", "finetune") == 1  # what the Finish now button's cancel does
            break
    *_, (_, _, status) = views
    assert "stopped (cancelled or at the time limit)" in status
    assert find_runs(tmp_path / "runs") == ["mine"]


def test_finetune_refuses_bad_input_in_one_line(shipped_models: Path, tmp_path: Path) -> None:
    from reverie.web.text_tab import SHIPPED

    runs = tmp_path / "runs"
    page = page_for(runs, max_text_mb=0.01, job_seconds=60)
    text = str(poems(tmp_path / "ok.txt", 4000))
    big = str(poems(tmp_path / "big.txt", 20_000))
    binary = tmp_path / "photo.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    (runs / "taken").mkdir(parents=True)
    cases = [
        ((None, SHIPPED + "shakespeare", 1, ""), "upload a text file"),
        ((big, SHIPPED + "shakespeare", 1, ""), r"big.txt is 0.02 MB, over this page's cap of 0.01 MB"),
        ((str(binary), SHIPPED + "shakespeare", 1, ""), "photo.txt is not UTF-8 text"),
        ((text, SHIPPED + "nietzsche", 1, ""), "no run named 'shipped:nietzsche'"),
        (
            (text, SHIPPED + "shakespeare", 2, ""),
            "minutes must be a number above 0 and at most 1 on this page, got 2",
        ),
        ((text, SHIPPED + "shakespeare", 0, ""), "minutes must be a number above 0"),
        ((text, SHIPPED + "shakespeare", 1, "../up"), "the run name '../up' is not a plain name"),
        ((text, SHIPPED + "shakespeare", 1, "taken"), "already holds 'taken'; choose another run name"),
    ]
    for args, message in cases:
        with pytest.raises(gr.Error, match=message):
            list(page.finetune(*args))
    assert sorted(path.name for path in runs.iterdir()) == ["taken"]  # nothing was written


def test_finetune_over_http_from_a_run_keeps_its_tokenizer(runs_dir: Path, tmp_path: Path) -> None:
    """Through the served page's queue and limits: a char-level run as the base, its vocabulary kept
    (a character it never saw is refused in one line, as on the command line)."""
    import shutil

    from gradio_client import Client

    runs = Path(shutil.copytree(runs_dir / RUN_NAME, tmp_path / "runs" / RUN_NAME)).parent
    text = shakespeare_slice(tmp_path / "more.txt", 3000)
    with serve(runs) as (_, url):
        client = Client(url, verbose=False)
        curve, _, status = client.predict(
            handle_file(str(text)), RUN_NAME, QUICK_MINUTES, "more", api_name="/finetune"
        )
        assert status.startswith("more: ") and Path(curve).is_file()
        assert client.predict("more", "ROMEO:", *SAMPLING, 20, 1, 0, api_name="/generate").startswith(
            "ROMEO:"
        )
        with pytest.raises(
            AppError, match=r"not in the vocabulary: .* of the base model tiny \(a char-level"
        ):
            client.predict(
                handle_file(str(poems(tmp_path / "p.txt"))), RUN_NAME, 0.05, "", api_name="/finetune"
            )
    assert (runs / "more" / "config.json").is_file()


# ---- Video -----------------------------------------------------------------------------------------


def test_video_dreams_every_frame_into_a_playable_mp4_over_http(client, tmp_path: Path) -> None:
    from reverie.deepdream.videoio import probe

    source = moving_clip(tmp_path / "clip.mp4")
    video, summary = client.predict(handle_file(str(source)), *TINY_VIDEO, api_name="/dream_video")
    path = Path(video["video"] if isinstance(video, dict) else video)
    info = probe(path)
    assert path.suffix == ".mp4" and info.frames == FRAMES and (info.width, info.height) == (64, 48)
    assert summary == f"{FRAMES} frames at 64x48, 8 frames/s, flow"


@pytest.mark.parametrize(
    ("motion", "word"),
    [("blend with the previous frame", "blend"), ("independent (flickers)", "independent")],
)
def test_video_motion_choices_and_gif_in_and_out(tmp_path: Path, motion: str, word: str) -> None:
    from reverie.deepdream.videoio import probe

    source = moving_clip(tmp_path / "clip.gif", 3)
    args = [*TINY_VIDEO[:3], motion, *TINY_VIDEO[4:]]
    output, summary = page_for(tmp_path / "runs").dream_clip(str(source), *args, progress=quiet)
    assert output.endswith(".gif") and probe(output).frames == 3 and summary.endswith(word)


def test_video_refuses_bad_clips_in_one_line(tmp_path: Path) -> None:
    page = page_for(tmp_path / "runs", max_video_frames=3, max_upload_mb=0.01)
    long_clip = moving_clip(tmp_path / "long.mp4", 4)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(20_000))
    cases = [
        (None, "upload a video clip first"),
        (str(long_clip), "the clip has 4 frames, over this page's cap of 3; trim it first"),
        (str(text), "notes.mp4"),
        (str(noise), "noise.mp4 is 0.02 MB, over this page's cap of 0.01 MB"),
    ]
    for clip, message in cases:
        with pytest.raises(gr.Error, match=message) as refused:
            page.dream_clip(clip, *TINY_VIDEO, progress=quiet)
        assert str(tmp_path) not in str(refused.value)  # the upload's name, never the server's path
    with pytest.raises(gr.Error, match="unknown motion 'sideways'; choose one of flow"):
        page.dream_clip(str(long_clip), *TINY_VIDEO[:3], "sideways", *TINY_VIDEO[4:], progress=quiet)


def test_video_stops_at_the_time_limit(tmp_path: Path) -> None:
    page = page_for(tmp_path / "runs", job_seconds=0.001)
    with pytest.raises(gr.Error, match="the video reached this page's time limit of 0.001 s"):
        page.dream_clip(str(moving_clip(tmp_path / "clip.mp4")), *TINY_VIDEO, progress=quiet)


def test_both_tabs_are_heavy_jobs_under_the_page_limits(served) -> None:
    """The per-client cap and the cancel flags (reverie.web.limits.Guard) cover the new endpoints."""
    from reverie.web.limits import Guard

    app, _ = served
    guard = Guard(app, app.reverie_page.jobs, 2**20, 1)
    for name in ("finetune", "dream_video", "generate", "dream"):
        assert guard.heavy_fn(api_name=name) is not None, name
