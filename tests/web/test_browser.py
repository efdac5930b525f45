"""The page in a real browser: Debian's headless Chromium driven by Playwright (no browser download).

`make test` installs /usr/bin/chromium (Debian packages chromium, chromium-driver) when it is missing.
Every page also records the requests it makes: nothing may leave the server (no fonts, no telemetry).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from .conftest import MAX_SIZE, RUN_NAME, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 60_000  # generous for a loaded CI machine; a passing run takes a fraction of it
DEFAULT_LENGTH = 400  # the page's starting value


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


class Page:
    """A fresh browser tab on the page at `url`, with the requests it sent elsewhere."""

    def __init__(self, browser, url: str) -> None:
        self.url = url
        self.offsite: list[str] = []
        self.context = browser.new_context(viewport=VIEWPORT)
        self.tab = self.context.new_page()
        self.tab.set_default_timeout(TIMEOUT_MS)
        self.tab.on("request", self._record)
        self.tab.goto(url)

    def _record(self, request) -> None:
        if not request.url.startswith((self.url, "data:", "blob:")):
            self.offsite.append(request.url)

    def set_number(self, label: str, value: float) -> None:
        """Type `value` into the number box of the slider or number field labelled `label`."""
        box = self.tab.get_by_label(label, exact=True)
        if box.count() != 1:
            box = self.tab.locator(f"input[aria-label='number input for {label}']")
        box.fill(str(value))
        box.press("Enter")

    def text(self) -> str:
        return self.tab.locator("#text-output textarea").input_value()

    def wait_for_text(self, at_least: int = 1, exactly: int | None = None) -> None:
        """Until the text box holds at least `at_least` characters, or exactly `exactly`."""
        self.tab.wait_for_function(
            "([least, exact]) => { const n = document.querySelector('#text-output textarea').value.length;"
            " return exact === null ? n >= least : n === exact; }",
            arg=[at_least, exactly],
        )

    def wait_until_idle(self, elem_id: str) -> None:
        """Until the component's status tracker says no event is running for it."""
        self.tab.wait_for_function(
            "id => !document.querySelector(`#${id} [data-testid=status-tracker]`)"
            ".classList.contains('generating')"
            " && !document.querySelector(`#${id} [data-testid=status-tracker]`)"
            ".classList.contains('pending')",
            arg=elem_id,
        )

    def tiny_dream_settings(self) -> None:
        self.tab.get_by_role("tab", name="Dream").click()
        self.set_number("Octaves", 1)
        self.set_number("Iterations", 2)
        layers = self.tab.get_by_label("Layers (none: the model's own choice)")
        layers.click()
        self.tab.get_by_role("option", name="block2 (24 ch, stride 4)").click()
        self.tab.keyboard.press("Escape")

    def dreamed_size(self) -> tuple[int, int]:
        """Click Dream and wait for the result; its size in pixels."""
        self.tab.get_by_role("button", name="Dream", exact=True).click()
        image = self.tab.locator("#dream-output img")
        image.wait_for(state="visible")
        self.tab.wait_for_function("() => document.querySelector('#dream-output img').naturalWidth > 0")
        return image.evaluate("img => [img.naturalWidth, img.naturalHeight]")

    def screenshot(self, path: Path) -> None:
        self.tab.screenshot(path=path, full_page=True)
        assert Image.open(path).size[0] == VIEWPORT["width"]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser, server: str) -> Iterator[Page]:
    tab = Page(browser, server)
    yield tab
    tab.close()
    assert tab.offsite == [], f"the page reached outside the server: {tab.offsite}"


def test_text_tab_streams_generated_text(page: Page, tmp_path: Path) -> None:
    page.tab.get_by_label("Prompt").fill("ROMEO:")
    page.tab.get_by_role("button", name="Generate").click()
    page.wait_for_text(exactly=len("ROMEO:") + DEFAULT_LENGTH)
    page.wait_until_idle("text-output")
    text = page.text()
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + DEFAULT_LENGTH
    page.screenshot(tmp_path / "text-tab.png")


def test_stop_ends_a_generation(page: Page) -> None:
    page.tab.get_by_label("Prompt").fill("A")
    page.set_number("Length (tokens)", 100_000)  # seconds of work even on a fast machine
    page.tab.get_by_role("button", name="Generate").click()
    page.wait_for_text(at_least=10)
    page.tab.get_by_role("button", name="Stop").click()
    page.wait_until_idle("text-output")
    assert 10 <= len(page.text()) < 1 + 100_000
    page.set_number("Length (tokens)", 20)  # the server answers the next one
    page.tab.get_by_role("button", name="Generate").click()
    page.wait_for_text(exactly=21)  # replaces the stopped text


def test_dream_tab_dreams_an_uploaded_image(page: Page, images, tmp_path: Path) -> None:
    page.tiny_dream_settings()
    page.tab.locator("#dream-input input[type=file]").set_input_files(images["small"])
    page.tab.locator("#dream-input img").wait_for(state="visible")
    assert page.dreamed_size() == [80, 93]
    assert page.tab.get_by_text("80x93, 1 octave(s), loss").is_visible()
    page.screenshot(tmp_path / "dream-tab.png")


def test_sample_photo_is_shrunk_to_max_size_and_dreamed(page: Page) -> None:
    page.tiny_dream_settings()
    page.tab.locator("#sample-photo button").first.click()  # the example's thumbnail
    page.tab.locator("#dream-input img").wait_for(state="visible")
    assert page.dreamed_size() == [82, MAX_SIZE]  # grace_hopper.jpg is 512x600


def test_bad_uploads_show_an_error_and_the_page_keeps_working(page: Page, images) -> None:
    page.tiny_dream_settings()
    upload = page.tab.locator("#dream-input input[type=file]")
    upload.set_input_files(images["heavy"])
    page.tab.get_by_text("exceed the maximum allowed size").wait_for(state="visible")
    upload.set_input_files(images["text"])
    page.tab.get_by_role("button", name="Dream", exact=True).click()
    page.tab.get_by_text("text.png is not an image").wait_for(state="visible")
    page.tab.get_by_label("Clear").first.click()
    upload.set_input_files(images["small"])
    page.tab.locator("#dream-input img").wait_for(state="visible")
    assert page.dreamed_size() == [80, 93]


def test_without_runs_the_text_tab_shows_the_train_command_until_one_appears(
    browser, runs_dir: Path, tmp_path: Path
) -> None:
    from reverie.web.app import launch
    from reverie.web.settings import WebSettings

    empty = tmp_path / "runs"
    app, url = launch(WebSettings(runs=empty, port=free_port()))
    page = Page(browser, url)
    try:
        command = f"reverie train python-stdlib --out {empty}/python-stdlib --minutes 5"
        page.tab.get_by_text(command).wait_for(state="visible")
        shutil.copytree(runs_dir / RUN_NAME, empty / RUN_NAME)  # as if training just finished
        page.tab.get_by_role("button", name="Refresh").click()
        page.tab.get_by_text(command).wait_for(state="hidden")
        page.tab.get_by_role("button", name="Generate").click()
        page.wait_for_text(exactly=DEFAULT_LENGTH)
        assert page.offsite == []
    finally:
        page.close()
        app.close()


def test_cancel_stops_a_running_dream_and_the_next_one_runs(browser, runs_dir: Path, tmp_path: Path) -> None:
    import re

    import numpy as np

    from .conftest import serve

    photo = tmp_path / "large.png"
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).resize((1024, 1024)).save(photo)  # minutes of dreaming on a CPU
    with serve(runs_dir, max_size=1024, max_upload_mb=8, max_pixels=2_000_000) as (app, url):
        jobs = app.reverie_page.jobs
        page = Page(browser, url)
        try:
            page.tab.get_by_role("tab", name="Dream").click()
            page.set_number("Octaves", 3)
            page.set_number("Iterations", 50)
            page.tab.get_by_label("Layers (none: the model's own choice)").click()
            page.tab.get_by_role("option", name=re.compile(r"^block10 ")).click()
            page.tab.keyboard.press("Escape")
            page.tab.locator("#dream-input input[type=file]").set_input_files(photo)
            page.tab.locator("#dream-input img").wait_for(state="visible")
            page.tab.get_by_role("button", name="Dream", exact=True).click()
            running = wait_for(lambda: jobs.running(), "a running dream")
            page.tab.get_by_role("button", name="Cancel").click()
            wait_for(lambda: not jobs.running(), "the cancelled dream ending")
            assert running[0].cancelled.is_set() and not running[0].expired()
            page.set_number("Octaves", 1)
            page.set_number("Iterations", 1)
            assert page.dreamed_size() == [1024, 1024]  # the server is free for the next one
            assert page.offsite == []
        finally:
            page.close()


def wait_for(condition, what: str, timeout_s: float = TIMEOUT_MS / 1000):
    """`condition()` once it is true (at most `timeout_s`)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"the server never got to: {what}")
