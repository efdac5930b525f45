"""The page's two endpoints called as an API client would (gradio_client), against a live server."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from .conftest import MAX_SIZE, RUN_NAME, TINY_DREAM, TRANSFORMER_RUN_NAME

TEXT = {"temperature": 0.8, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0, "stop": ""}


def text_args(
    prompt: str, length: int, seed: int | None, num_samples: int = 1, run: str = RUN_NAME, **overrides
) -> list:
    """The /generate endpoint's inputs, in the page's order."""
    args = {**TEXT, **overrides}
    rules = [args[name] for name in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "stop")]
    return [run, prompt, *rules, length, num_samples, seed]


def generate(client, prompt: str, length: int, seed: int | None, **overrides) -> str:
    return client.predict(*text_args(prompt, length, seed, **overrides), api_name="/generate")


def dream(client, image: Path, **overrides):
    args = {**TINY_DREAM, **overrides}
    return client.predict(handle_file(str(image)), *args.values(), api_name="/dream")


def test_generate_returns_prompt_and_length_new_characters(client) -> None:
    text = generate(client, "ROMEO:", 60, seed=0)
    assert text.startswith("ROMEO:")
    assert len(text) == len("ROMEO:") + 60  # a character-level run: one character per token


def test_a_transformer_run_generates_streams_and_stops_like_any_other(client) -> None:
    """Past its 32-token context: the KV cache is re-run and generation goes on."""
    text = generate(client, "ROMEO:", 80, seed=0, run=TRANSFORMER_RUN_NAME)
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 80
    assert generate(client, "ROMEO:", 80, seed=0, run=TRANSFORMER_RUN_NAME) == text
    assert text != generate(client, "ROMEO:", 80, seed=0)  # another model: another text
    stop = text[len("ROMEO:") + 20 : len("ROMEO:") + 22]
    stopped = generate(client, "ROMEO:", 80, seed=0, run=TRANSFORMER_RUN_NAME, stop=stop)
    assert stopped == text[: text.index(stop, len("ROMEO:"))]
    job = client.submit(*text_args("ROMEO:", 300, 0, run=TRANSFORMER_RUN_NAME), api_name="/generate")
    assert len(job.result()) == len("ROMEO:") + 300 and len(job.outputs()) >= 2


def test_generate_streams_growing_text(client) -> None:
    job = client.submit(*text_args("ROMEO:", 300, 0), api_name="/generate")
    final = job.result()
    outputs = job.outputs()
    assert len(outputs) >= 2 and outputs[-1] == final  # the first piece is sent at once, then more
    assert outputs[0] == final[: len(outputs[0])] and len(outputs[0]) < len(final)


def test_generate_is_deterministic_with_a_seed(client) -> None:
    first = generate(client, "the ", 80, seed=3)
    assert generate(client, "the ", 80, seed=3) == first
    assert generate(client, "the ", 80, seed=4) != first


def test_generate_greedy_ignores_the_seed(client) -> None:
    assert generate(client, "A", 40, seed=1, temperature=0.0) == generate(
        client, "A", 40, seed=2, temperature=0.0
    )


def test_generate_several_samples_each_under_a_heading(client) -> None:
    text = generate(client, "", 30, seed=0, num_samples=3, top_k=5, top_p=0.9)
    parts = re.split(r"--- sample (\d) ---\n", text)  # ["", "1", text1 + "\n\n", "2", ...]
    assert parts[0] == "" and parts[1::2] == ["1", "2", "3"]
    samples = [body[:-2] for body in parts[2:-1:2]] + [parts[-1]]  # less the "\n\n" between samples
    assert [len(sample) for sample in samples] == [30, 30, 30]
    assert len(set(samples)) == 3


@pytest.mark.parametrize(
    ("prompt", "overrides", "message"),
    [
        ("ROMEO: \u2603", {}, "not in the model's vocabulary"),
        ("ROMEO:", {"top_p": 0.0}, "Value 0.0 is less than minimum value 0.01"),  # the widget's bounds
        ("ROMEO:", {"top_k": -2}, "Value -2 is less than minimum value 0"),
        ("ROMEO:", {"temperature": 2.5}, "Value 2.5 is greater than maximum value 2"),
    ],
)
def test_generate_shows_a_message_for_bad_input(client, prompt, overrides, message) -> None:
    with pytest.raises(AppError, match=message):
        generate(client, prompt, 10, seed=0, **overrides)


def test_generate_offers_every_sampling_rule_and_stop_sequences(client) -> None:
    free = generate(client, "ROMEO:", 200, seed=5)[len("ROMEO:") :]
    stop = free[20:22]
    cut = generate(client, "ROMEO:", 200, seed=5, stop=f"zzz\n{stop}")
    assert cut == "ROMEO:" + free[: free.index(stop)]
    assert generate(client, "ROMEO:", 200, seed=5, stop="\\n") == "ROMEO:" + free.split("\n")[0]
    greedy = generate(client, "ROMEO:", 50, seed=5, temperature=0.0)
    assert generate(client, "ROMEO:", 50, seed=5, min_p=1.0) == greedy  # only the most likely token is left
    looping = generate(client, "A", 80, seed=0, temperature=0.0)
    penalized = generate(client, "A", 80, seed=0, temperature=0.0, repetition_penalty=1.8)
    assert penalized != looping  # greedy text changes once repeated characters are penalized


def test_generate_refuses_a_run_that_is_not_in_the_runs_folder(client) -> None:
    with pytest.raises(AppError, match="no run named '../tiny'"):
        client.predict("../tiny", *text_args("a", 5, 0)[1:], api_name="/generate")


def test_dream_returns_a_dreamed_image_of_the_input_size(client, images) -> None:
    result, gallery, summary = dream(client, images["small"])
    dreamed = np.asarray(Image.open(result).convert("RGB"), dtype=np.float32)
    original = np.asarray(Image.open(images["small"]).convert("RGB"), dtype=np.float32)
    assert dreamed.shape == original.shape == (93, 80, 3)
    assert np.abs(dreamed - original).mean() > 1.0  # levels of 255: the image was changed
    assert len(gallery) == 1 and gallery[0]["caption"] == "octave 1: 80x93"
    assert summary.startswith("80x93, 1 octave(s), loss ")


def test_dream_shrinks_uploads_to_max_size(client, images) -> None:
    result, gallery, _ = dream(client, images["large"], octaves=2)
    assert Image.open(result).size == (82, MAX_SIZE)  # 128x150 shrunk to a longest side of 96
    assert [item["caption"] for item in gallery] == ["octave 1: 58x68", "octave 2: 82x96"]


def first_loss(summary: str) -> float:
    """The first step's loss from the page's summary line ("80x93, 1 octave(s), loss 1.23 → 4.56")."""
    return float(summary.rsplit("loss ", 1)[1].split(" ")[0])


def test_dream_uses_the_layer_weights_table(client, images) -> None:
    heavy = {"headers": ["layer", "weight"], "data": [["block2", 5.0]]}
    _, _, light_summary = dream(client, images["small"], iterations=1)
    _, _, heavy_summary = dream(client, images["small"], iterations=1, weights=heavy)
    assert first_loss(heavy_summary) == pytest.approx(5 * first_loss(light_summary), rel=1e-3)


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("huge", {}, "700x700 = 0.49 megapixels, over this page's cap of 0.4"),
        ("text", {}, "is not an image"),
        ("small", {"layers": ["nonsense"]}, "unknown layer 'nonsense' for efficientnet_lite0"),
        (
            "small",
            {"iterations": 2.5},
            "iterations must be a whole number from 0 to 50 on this page, got 2.5",
        ),
        ("small", {"model": "resnet"}, r"Value: resnet is not in the list of choices: \['inception_v3'"),
        (
            "small",
            {"weights": {"headers": ["layer", "weight"], "data": [["block2", "a lot"]]}},
            "weight of block2",
        ),
    ],
)
def test_dream_shows_a_message_for_bad_input(client, images, name, overrides, message) -> None:
    with pytest.raises(AppError, match=message):
        dream(client, images[name], **overrides)


def test_dream_refuses_an_upload_over_the_size_cap_and_keeps_serving(client, images) -> None:
    with pytest.raises(Exception, match="(?i)size|413"):
        dream(client, images["heavy"])
    assert generate(client, "A", 5, seed=0).startswith("A")


# ---- the page's helpers, without a server ----------------------------------------------------------


def test_check_upload_refuses_a_file_over_the_cap_also_when_gradio_did_not(tmp_path: Path, images) -> None:
    import gradio as gr

    from reverie.web.settings import WebSettings
    from reverie.web.uploads import check_upload

    settings = WebSettings(max_upload_mb=0.25, max_pixels=400_000)
    check_upload(str(images["small"]), settings)  # passes
    check_upload(str(images["text"]), settings)  # not an image: left to the API's own message
    with pytest.raises(gr.Error, match=r"the upload is 0\.\d MB, over this page's cap of 0.25 MB"):
        check_upload(str(images["heavy"]), settings)


def test_layer_weights_keep_typed_weights_and_default_to_one() -> None:
    from reverie.web.dream_tab import layer_weights, weight_rows

    table = [["block2", 3.0], ["block5", ""], ["stem", 9.0]]  # stem is no longer chosen
    assert layer_weights(["block2", "block5"], table) == {"block2": 3.0, "block5": 1.0}
    assert weight_rows(["block2", "block8"], table) == [["block2", 3.0], ["block8", 1.0]]
    assert layer_weights(["block2"], {"headers": ["layer", "weight"], "data": [["block2", "2.5"]]}) == {
        "block2": 2.5
    }


def test_find_runs_lists_run_folders_and_the_runs_folder_itself_if_it_is_one(
    runs_dir: Path, tmp_path
) -> None:
    from reverie.web.text_tab import find_runs

    assert find_runs(runs_dir) == sorted([RUN_NAME, TRANSFORMER_RUN_NAME])
    assert find_runs(runs_dir / RUN_NAME) == ["."]
    assert find_runs(tmp_path / "missing") == []


def test_a_preset_decides_everything_but_the_image_and_its_size(images) -> None:
    from reverie.web.app import Page
    from reverie.web.settings import WebSettings

    calls = []

    class FakeDreamers:
        """Records which model's dreamer each dream asks for and what it asks of it."""

        def get(self, model):
            def octaves(image, **options):
                calls.append({"model": model, **options})
                return SimpleNamespace(
                    image=Image.new("RGB", (4, 5)), octaves=[Image.new("RGB", (4, 5))], losses=[[]]
                )

            return SimpleNamespace(octaves=octaves)

    page = Page(WebSettings(max_size=64), dreamers=FakeDreamers())
    args = [str(images["small"]), "efficientnet_lite0", ["block2"], [], 3, 7, 0.05, 8, 0]
    _, gallery, summary = page.dream(*args, "book", progress=lambda *a, **k: None)
    _, _, own_summary = page.dream(*args, "(none)", progress=lambda *a, **k: None)
    assert all(callable(call.pop("stop")) for call in calls)  # the job's cancel flag and time limit
    assert calls[0] == {"model": "inception_v3", "preset": "book", "max_size": 64}  # the preset's model
    assert calls[1] == {
        "model": "efficientnet_lite0",
        "layers": {"block2": 1.0},
        "octaves": 3,
        "iterations": 7,
        "step": 0.05,
        "jitter": 8,
        "tile": None,
        "max_size": 64,
    }
    assert gallery[0][1] == "octave 1: 4x5" and summary == "4x5, 1 octave(s)"
    assert own_summary == "4x5, 1 octave(s) (the smaller ones were below the model's minimum size)"


def test_each_dream_job_folder_is_removed_once_older_than_the_cache(tmp_path, monkeypatch) -> None:
    import os
    import tempfile

    from reverie.web.jobs import CACHE_KEEP_S, JOB_DIR_PREFIX, new_job_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old, recent = tmp_path / f"{JOB_DIR_PREFIX}old", tmp_path / f"{JOB_DIR_PREFIX}recent"
    for folder in (old, recent):
        folder.mkdir()
        (folder / "dream.png").write_bytes(b"png")
    hour_ago = os.stat(recent).st_mtime - CACHE_KEEP_S - 1
    os.utime(old, (hour_ago, hour_ago))
    fresh = new_job_dir()
    assert fresh.is_dir() and fresh.parent == tmp_path and fresh.name.startswith(JOB_DIR_PREFIX)
    assert not old.exists() and recent.exists()


def test_the_image_input_refuses_data_urls_and_bombs_wherever_the_page_is_served(images, monkeypatch) -> None:
    """The request guard refuses data: URLs at the door; the page's image input refuses them too (and
    images over Pillow's decompression-bomb limit) in one line, for a page mounted without the guard."""
    import gradio as gr
    from gradio.data_classes import ImageData

    from reverie.web.settings import WebSettings
    from reverie.web.uploads import check_upload, refuse_non_images

    settings = WebSettings(max_pixels=400_000)
    component = refuse_non_images(gr.Image(type="filepath", image_mode=None), settings)
    with pytest.raises(gr.Error, match="images must be uploaded as files"):
        component.preprocess(ImageData(url="data:image/png;base64,iVBORw0KGgo=", path=None))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for check in (
        lambda: component.preprocess(ImageData(path=str(images["small"]))),
        lambda: check_upload(str(images["small"]), settings),
    ):
        with pytest.raises(gr.Error, match="the image is too large, over this page's cap of 0.4 megapixels"):
            check()
