"""The page's bounds, met over HTTP as a client meets them: what one request may carry, one limit for
all heavy jobs, a queue share per client, a time limit per job, Cancel, and what errors may say."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from .conftest import MAX_UPLOAD_MB, RUN_NAME, TINY_DREAM, serve
from .test_app import dream, generate, text_args

WAIT_S = 120  # how long a test waits for the server to get somewhere before it fails


def until(condition: Callable[[], Any], what: str) -> Any:
    """Wait for `condition()` to be true (at most WAIT_S); its value."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"the server never got to: {what}")


def refusal(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["detail"]


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def dream_body(image: Any) -> dict:
    """A /call/dream request as curl would send it (the image as a file object)."""
    return {"data": [image, *TINY_DREAM.values()]}


# ---- what a request may carry -------------------------------------------------------------------


def test_an_image_sent_inline_as_a_data_url_is_refused_before_it_is_decoded(server, client, images) -> None:
    inline = {"url": data_url(Image.new("RGB", (64, 64))), "path": None, "meta": {"_type": "gradio.FileData"}}
    response = httpx.post(f"{server}gradio_api/call/dream", json=dream_body(inline), timeout=WAIT_S)
    status, message = refusal(response)
    assert status == 400 and message.startswith("images must be uploaded as files")
    inline["path"], inline["url"] = inline["url"], None  # a data: URL in place of the path
    assert refusal(httpx.post(f"{server}gradio_api/call/dream", json=dream_body(inline)))[0] == 400
    text = {"data": [RUN_NAME, "data: a prompt may say this", *text_args("", 5, 0)[2:]]}
    assert httpx.post(f"{server}gradio_api/call/generate", json=text).status_code == 200  # text is text
    assert dream(client, images["small"])[2].startswith("80x93")  # uploads as files still dream


def test_no_route_skips_the_queue_and_its_limits(server) -> None:
    """Gradio's /run routes call a function at once, outside the queue: closed (api_open=False)."""
    text = {"data": [RUN_NAME, "A", *text_args("", 5, 0)[2:]]}
    for name in ("generate", "dream"):
        body = text if name == "generate" else {"data": [None, *TINY_DREAM.values()]}
        assert httpx.post(f"{server}gradio_api/run/{name}", json=body, timeout=WAIT_S).status_code == 404


def test_a_body_over_the_cap_is_refused_whether_or_not_it_says_its_length(server, client) -> None:
    cap_mb = MAX_UPLOAD_MB + 1  # the upload cap and a margin for the form around it
    huge = {"data": [RUN_NAME, "x" * int(1.5 * cap_mb * 2**20), *text_args("", 5, 0)[2:]]}
    status, message = refusal(httpx.post(f"{server}gradio_api/call/generate", json=huge, timeout=WAIT_S))
    assert (status, message) == (
        413,
        f"the request is over this page's cap of {cap_mb:.3g} MB; send a smaller file",
    )

    def json_chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"data": ["'
        for _ in range(int(1.5 * cap_mb * 8)):
            yield b"x" * 2**17
        yield b'"]}'

    def form_chunks() -> Iterator[bytes]:  # files each under the upload cap, together over the body's
        for index in range(int(1.5 * cap_mb / (0.8 * MAX_UPLOAD_MB)) + 1):
            disposition = f'form-data; name="files"; filename="{index}.png"'
            yield f"--b\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            yield b"x" * int(0.8 * MAX_UPLOAD_MB * 2**20) + b"\r\n"
        yield b"--b--\r\n"

    for path, kind, chunks in (
        ("call/generate", "application/json", json_chunks),
        ("upload", "multipart/form-data; boundary=b", form_chunks),
    ):
        response = httpx.post(f"{server}gradio_api/{path}", content=chunks(), headers={"content-type": kind})
        assert refusal(response)[0] == 413, path
    assert generate(client, "A", 5, seed=0).startswith("A")


def test_an_upload_over_pillows_decompression_bomb_limit_is_one_line(client, images, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 80x93 is then a bomb (over 2 x 1000 pixels)
    with pytest.raises(AppError, match=r"^the image is too large, over this page's cap of 0.4 megapixels"):
        dream(client, images["small"])


def test_a_prompt_over_the_cap_is_refused(client) -> None:
    with pytest.raises(AppError, match="the prompt is 10,001 characters, over this page's cap of 10,000"):
        generate(client, "a" * 10_001, 5, seed=0)


@pytest.mark.parametrize("weight", ["nan", "inf", "-inf"])
def test_a_non_finite_layer_weight_is_refused_not_dreamed_black(client, images, weight) -> None:
    table = {"headers": ["layer", "weight"], "data": [["block2", weight]]}
    with pytest.raises(AppError, match=f"the weight of layer block2 must be a finite number, got {weight}"):
        dream(client, images["small"], weights=table)


# ---- what errors may say ------------------------------------------------------------------------


def test_an_internal_error_shows_a_generic_line_not_its_text(client, images, monkeypatch, capfd) -> None:
    from reverie.web import dream_tab, text_tab

    def broken(*args, **kwargs):
        raise RuntimeError("secret /srv/reverie/internal/path")

    monkeypatch.setattr(text_tab, "format_samples", broken)
    with pytest.raises(AppError) as error:
        generate(client, "A", 5, seed=0)
    assert "secret" not in str(error.value) and "the server failed on this request" in str(error.value)
    assert "secret /srv/reverie/internal/path" in capfd.readouterr().err  # the log keeps it
    monkeypatch.setattr(dream_tab, "saved", lambda image, path: "/srv/secret/missing.png")  # fails in Gradio
    with pytest.raises(AppError) as error:
        dream(client, images["small"])
    assert "secret" not in str(error.value)
    with pytest.raises(AppError, match="unknown layer 'nonsense'"):  # a user's mistake still says what
        dream(client, images["small"], layers=["nonsense"])


# ---- the heavy jobs ---------------------------------------------------------------------------------


class Busy:
    """How many of the page's text models and dreamers compute at once, at most (`most`)."""

    def __init__(self) -> None:
        self.now, self.most, self.lock = 0, 0, threading.Lock()

    def change(self, by: int) -> None:
        with self.lock:
            self.now += by
            self.most = max(self.most, self.now)

    def watching(self, loaded: Any) -> Watched:
        """`loaded` (the page's Loaded models or dreamers) with what it gives counted while busy."""
        return Watched(self, loaded)


class Watched:
    def __init__(self, busy: Busy, target: Any) -> None:
        self.busy, self.target = busy, target

    def get(self, key: Any) -> Watched:
        return Watched(self.busy, self.target.get(key))

    def octaves(self, *args: Any, **kwargs: Any) -> Any:
        self.busy.change(+1)
        try:
            return self.target.octaves(*args, **kwargs)
        finally:
            self.busy.change(-1)

    def stream_batch(self, *args: Any, **kwargs: Any) -> Iterator[list[str]]:
        steps = self.target.stream_batch(*args, **kwargs)

        def counted() -> Iterator[list[str]]:
            for step in steps:
                self.busy.change(+1)
                time.sleep(0.001)  # a step that takes a while
                self.busy.change(-1)
                yield step

        return counted()


def test_text_generations_and_dreams_share_one_concurrency_limit(served, server, images, monkeypatch) -> None:
    """Concurrency 1: of a generation and dreams sent together, never two compute at once."""
    page = served[0].reverie_page
    busy = Busy()
    monkeypatch.setattr(page, "models", busy.watching(page.models))
    monkeypatch.setattr(page, "dreamers", busy.watching(page.dreamers))
    clients = [Client(server, verbose=False) for _ in range(3)]
    jobs = [clients[0].submit(*text_args("A", 3000, 0), api_name="/generate")]
    for each in clients[1:]:
        jobs.append(each.submit(handle_file(str(images["small"])), *TINY_DREAM.values(), api_name="/dream"))
    results = [job.result(timeout=WAIT_S) for job in jobs]
    assert len(results[0]) == 3001 and all(Path(path).is_file() for path, _, _ in results[1:])
    assert busy.most == 1


def done(jobs: list, count: int) -> list:
    """The jobs that are done, once `count` of them are."""
    finished = [job for job in jobs if job.done()]
    return finished if len(finished) == count else []


def test_a_client_may_have_a_few_jobs_waiting_or_running_not_more(served, server) -> None:
    """jobs_per_client 4 (the default): a fifth and sixth are refused in one line; another client is not."""
    page = served[0].reverie_page
    mine, other = Client(server, verbose=False), Client(server, verbose=False)
    with page.jobs.slot():  # the server is busy: every job waits
        jobs = [mine.submit(*text_args("A", 5, seed), api_name="/generate") for seed in range(6)]
        refused = until(lambda: done(jobs, 2), "refusing the jobs over the limit")
        theirs = other.submit(*text_args("B", 5, 0), api_name="/generate")
        for job in refused:
            error = job.exception()
            assert isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 429
            assert error.response.json()["detail"] == (
                "you have 4 jobs waiting or running, this page's limit per client; "
                "wait for one to finish (or cancel one), then try again"
            )
    texts = [job.result(timeout=WAIT_S) for job in jobs if job not in refused]
    assert len(texts) == 4 and all(text.startswith("A") for text in texts)
    assert theirs.result(timeout=WAIT_S).startswith("B")
    assert mine.predict(*text_args("C", 5, 0), api_name="/generate").startswith("C")  # its share is back


@pytest.fixture(scope="module")
def hurried(runs_dir: Path) -> Iterator[str]:
    """A page whose jobs may run for a microsecond: every job meets the time limit at its first step."""
    with serve(runs_dir, job_seconds=1e-6) as (_, url):
        yield url


def test_a_generation_at_the_time_limit_ends_with_its_text_and_a_warning(hurried) -> None:
    job = Client(hurried, verbose=False).submit(*text_args("ROMEO:", 300, 0), api_name="/generate")
    text = job.result(timeout=WAIT_S)
    assert text.startswith("ROMEO:") and len(text) < len("ROMEO:") + 300  # what it had
    notes = []
    while not job.communicator.updates.empty():
        update = job.communicator.updates.get_nowait()
        if getattr(update, "log", None):
            notes.append(update.log)
    note = "the generation reached this page's time limit of 1e-06 s; this is the text so far"
    assert (note, "warning") in notes


def test_a_dream_at_the_time_limit_stops_with_a_message(hurried, images) -> None:
    message = r"^the dream reached this page's time limit of 1e-06 s and was stopped; use fewer octaves"
    with pytest.raises(AppError, match=message):
        dream(Client(hurried, verbose=False), images["small"])


@pytest.fixture(scope="module")
def slow_dreams(runs_dir: Path, tmp_path_factory) -> Iterator[tuple[Any, str, Path]]:
    """A page dreaming large images (minutes of work on a CPU), and one such image."""
    photo = tmp_path_factory.mktemp("slow") / "photo.png"
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).resize((1024, 1024)).save(photo)
    with serve(runs_dir, max_size=1024, max_upload_mb=8, max_pixels=2_000_000) as (app, url):
        yield app, url, photo


LONG_DREAM = {
    **TINY_DREAM,
    "layers": ["block10"],
    "weights": {"headers": ["layer", "weight"], "data": [["block10", 1.0]]},
    "octaves": 3,
    "iterations": 50,
}


def test_cancel_stops_a_running_dream_between_steps_and_frees_the_server(slow_dreams) -> None:
    app, url, photo = slow_dreams
    page, client = app.reverie_page, Client(url, verbose=False)
    job = client.submit(handle_file(str(photo)), *LONG_DREAM.values(), api_name="/dream")
    running = until(lambda: [each for each in page.jobs.running() if each.kind == "dream"], "a running dream")
    job.cancel()  # what the page's Cancel button sends too (test_browser)
    until(lambda: not page.jobs.running(), "the cancelled dream ending")
    assert running[0].cancelled.is_set() and not running[0].expired()
    assert client.predict(*text_args("A", 5, 0), api_name="/generate").startswith("A")
