"""The `reverie serve` subcommand: start the browser page and print its URL.

    reverie serve                                   # http://127.0.0.1:7860, runs from runs/
    reverie serve --runs experiments --port 8000 --max-size 768
    reverie serve --host 0.0.0.0                    # reachable from other machines: think first

Gradio is imported only when the command runs, so `reverie train` never pays for it; without the
web extra the command says how to install it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reverie.errors import ReverieError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve` to the `reverie` command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the browser page (text generation and DeepDream)",
        description="Serve a Gradio page with a Text tab (runs trained into --runs) and a Dream tab. "
        "Needs the web extra: pip install 'reverie[web]'.",
    )
    parser.add_argument(
        "--runs", type=Path, default=Path("runs"), help="folder of trained runs (default: runs)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    parser.add_argument(
        "--max-size",
        type=int,
        default=1024,
        metavar="PIXELS",
        help="images are shrunk to this longest side before dreaming (default: 1024)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=20.0,
        metavar="MB",
        help="largest upload accepted (default: 20)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=50_000_000,
        metavar="N",
        help="uploads with more pixels are refused (default: 50000000)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        metavar="N",
        help="jobs of each kind run at once, the rest wait in the queue (default: 1; raise it on a GPU)",
    )
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> None:
    try:
        from reverie.web.app import WebSettings, launch
    except ImportError as exc:
        raise ReverieError(
            f"the browser page needs the web extra ({exc.name} is missing); pip install 'reverie[web]'"
        ) from None
    settings = WebSettings(
        runs=args.runs,
        max_size=args.max_size,
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
        concurrency=args.concurrency,
    )
    app, url = launch(settings, host=args.host, port=args.port)
    print(f"Serving the reverie page on {url} (Ctrl-C stops)", flush=True)
    app.block_thread()  # returns on Ctrl-C, with the server closed
