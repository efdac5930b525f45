"""The `reverie serve` subcommand: start the browser page and print its URL.

    reverie serve                                   # http://127.0.0.1:7860, runs from runs/
    reverie serve --runs experiments --port 8000 --max-size 768
    reverie serve --host 0.0.0.0                    # reachable from other machines: think first

The flags come from reverie.web.settings.WebSettings. Gradio is imported only when the command runs,
so `reverie train` never pays for it; without the web extra the command says how to install it.
"""

from __future__ import annotations

import argparse

from reverie.errors import ReverieError
from reverie.options import add_flags, given
from reverie.web.settings import WebSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve` to the `reverie` command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the browser page (text generation, fine-tuning, DeepDream on photos and videos)",
        description="Serve a Gradio page with a Text tab (runs trained into --runs and shipped models), a "
        "Fine-tune tab (new runs into --runs), a Dream tab and a Video tab. "
        "Needs the web extra: pip install 'reverie[web]'.",
    )
    add_flags(parser, WebSettings)
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> None:
    settings = WebSettings(**given(args, WebSettings))
    settings.validate()  # bad settings are refused before Gradio is imported
    try:
        from reverie.web.app import launch
    except ImportError as exc:
        raise ReverieError(
            f"the browser page needs the web extra ({exc.name} is missing); pip install 'reverie[web]'"
        ) from None
    app, url = launch(settings)
    print(f"Serving the reverie page on {url} (Ctrl-C stops)", flush=True)
    app.block_thread()  # returns on Ctrl-C, with the server closed
