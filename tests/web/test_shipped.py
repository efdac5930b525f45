"""The page's Text tab offers the shipped models beside the runs, and generates from them.

python -m pytest -q tests/web/test_shipped.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import pytest
from helpers import stored_file

from reverie.text import pretrained

SAMPLING = [0.8, 0, 1.0, 0.0, 1.0, ""]  # temperature, top_k, top_p, min_p, repetition penalty, stop


def test_the_text_tab_lists_shipped_models_with_no_run_and_generates_from_them(
    shipped_models: Path, tmp_path: Path
) -> None:
    from reverie.web.app import Page, build_app
    from reverie.web.settings import WebSettings
    from reverie.web.text_tab import SHIPPED, text_choices

    settings = WebSettings(runs=tmp_path / "runs")  # no run trained yet
    assert text_choices(settings.runs) == [("shakespeare (shipped)", SHIPPED + "shakespeare")]
    app = build_app(settings)
    menu = next(block for block in app.blocks.values() if isinstance(block, gr.Dropdown))
    assert menu.value == SHIPPED + "shakespeare"  # the page works out of the box
    page = Page(settings)
    texts = list(page.generate(SHIPPED + "shakespeare", "ROMEO:", *SAMPLING, 40, 1, 0))
    assert texts[-1].startswith("ROMEO:") and len(texts[-1]) > len("ROMEO:")
    assert list(page.generate(SHIPPED + "shakespeare", "ROMEO:", *SAMPLING, 40, 1, 0))[-1] == texts[-1]
    with pytest.raises(gr.Error, match="no run named 'shipped:nietzsche'"):  # a recipe not built
        list(page.generate(SHIPPED + "nietzsche", "A", *SAMPLING, 5, 1, 0))


def test_a_damaged_shipped_model_is_refused_in_one_line_in_the_page(
    shipped_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reverie.web.app import Page
    from reverie.web.settings import WebSettings
    from reverie.web.text_tab import SHIPPED

    copy = Path(shutil.copytree(shipped_models, tmp_path / "models"))
    weights = stored_file(copy / "shakespeare")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    monkeypatch.setenv(pretrained.MODELS_ENV, str(copy))
    page = Page(WebSettings(runs=tmp_path / "runs"))
    with pytest.raises(gr.Error, match="shipped model 'shakespeare' is damaged"):
        list(page.generate(SHIPPED + "shakespeare", "A", *SAMPLING, 5, 1, 0))
