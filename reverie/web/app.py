"""The browser page: a Gradio app with Text, Fine-tune, Dream and Video tabs, over reverie's public API.

    reverie serve --runs runs/ --port 7860

    from reverie.web.app import launch
    app, url = launch(WebSettings(runs=Path("runs")))      # serving in the background; app.close() stops

This module only assembles the page: each tab is a module of its own (text_tab, dream_tab and its
other mode visualize_tab, finetune_tab, video_tab), over reverie.web.jobs (the shared slots, time
limits, cancel flags, one-line errors) and reverie.web.uploads (upload caps and refusals). All of
them run through Gradio's queue and share its `concurrency` slots (the others see their place in
line); each job stops at `job_seconds`, and a client may have `jobs_per_client` of them waiting or
running (reverie.web.limits, which also caps what a request may carry). Every number and choice a
handler takes is checked on the server against the bounds its widget shows (reverie.web.inputs)
before a job starts, whatever a client posts past the widgets. Bad input of any kind becomes a
one-line message in the page (gr.Error), never a crash; an internal error shows a generic line, its
details only in the server's log.

Nothing here knows how a model works; the page only turns widgets into API arguments. It also
works with no internet: telemetry is off (reverie.web's __init__) and the theme uses the system's
fonts (no CDN).
"""

from __future__ import annotations

import gradio as gr
from starlette.middleware import Middleware

from reverie.errors import ReverieError
from reverie.web import dream_tab, finetune_tab, text_tab, video_tab, visualize_tab
from reverie.web.dream_tab import DreamTab
from reverie.web.finetune_tab import FinetuneTab
from reverie.web.jobs import CACHE_KEEP_S
from reverie.web.limits import Guard, RequestGuard
from reverie.web.settings import WebSettings
from reverie.web.text_tab import TextTab
from reverie.web.video_tab import VideoTab
from reverie.web.visualize_tab import VisualizeTab

QUEUE_SIZE = 100  # waiting jobs beyond this are told the queue is full
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
SYSTEM_MONO_FONTS = ["ui-monospace", "Consolas", "monospace"]


class Page(TextTab, DreamTab, VisualizeTab, FinetuneTab, VideoTab):
    """What one server's page works with (reverie.web.jobs.Workspace: its settings, the loaded text
    models and dreamers, the heavy jobs running now) and its endpoints, one tab's each: `generate`,
    `dream`, `visualize`, `finetune` and `dream_clip`."""


def build_app(settings: WebSettings) -> gr.Blocks:
    """The page, with its queue set up; `launch` starts serving it. `app.reverie_page` is its Page
    (the loaded models, the running jobs)."""
    settings.validate()
    page = Page(settings)

    with gr.Blocks(
        title="reverie", analytics_enabled=False, delete_cache=(CACHE_KEEP_S, CACHE_KEEP_S)
    ) as app:
        gr.Markdown(
            "# reverie\nGenerate text with a trained language model, fine-tune one on your text, "
            "or DeepDream a photo or a clip."
        )
        with gr.Tab("Text", id="text"):
            run, hint = text_tab.build(app, page)
        with gr.Tab("Dream", id="dream"):
            mode, dream_mode = dream_tab.build(page)
            dream_tab.switch_modes(mode, dream_mode, visualize_tab.build(page))
        with gr.Tab("Fine-tune", id="finetune"):
            finetune_tab.build(app, page, run, hint)
        with gr.Tab("Video", id="video"):
            video_tab.build(page)

    # api_open=False: Gradio's /run routes, which skip the queue and its limits, are closed
    app.queue(max_size=QUEUE_SIZE, api_open=False)
    app.reverie_page = page
    return app


def launch(settings: WebSettings) -> tuple[gr.Blocks, str]:
    """Build the page and start serving it on settings.host:port in the background; returns (app, url).

    `app.block_thread()` then waits until Ctrl-C; `app.close()` stops the server.
    """
    app = build_app(settings)
    guard = Guard(app, app.reverie_page.jobs, settings.max_request_bytes, settings.jobs_per_client)
    host, port = settings.host, settings.port
    try:
        _, url, _ = app.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            share=False,
            ssr_mode=False,
            show_error=False,  # internal errors' text (paths, tracebacks) stays in the server's log
            max_file_size=settings.max_upload_bytes,
            app_kwargs={"middleware": [Middleware(RequestGuard, guard=guard)]},
            theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO_FONTS),
        )
    except OSError as exc:
        raise ReverieError(
            f"cannot serve on {host}:{port} ({str(exc).splitlines()[0]}); pass another --port or --host"
        ) from None
    return app, url
