"""The `reverie` command: a thin shell over the Python API.

    reverie train CORPUS... --out RUN_DIR      train a language model
    reverie generate RUN_DIR --prompt TEXT     sample from it, streaming
    reverie models                             list the shipped models (generate NAME, train --from NAME)
    reverie dream INPUT [OUTPUT]               DeepDream an image
    reverie layers MODEL                       list a convnet's layer names
    reverie visualize MODEL LAYER[:CHANNEL]    render what a convnet's channel wants, from noise
    reverie serve [--runs DIR] [--port 7860]   the browser page for both (needs reverie[web])
    reverie doctor                             what a bug report needs: versions, devices, measured speed

Each feature registers its subcommands from its own `command` module; this file only builds the
parser and turns a ReverieError (bad input) into one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reverie.errors import ReverieError, disk_error


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from reverie import doctor
    from reverie.deepdream import command as dream_command
    from reverie.text import command as text_command
    from reverie.web import command as web_command  # imports gradio only when `serve` runs

    parser = OneLineParser(
        prog="reverie", description="Generative deep learning: text generation and DeepDream."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    text_command.register(subparsers)
    dream_command.register(subparsers)
    web_command.register(subparsers)
    doctor.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "uses_torch", True):
            from reverie.device import use_available_cores

            use_available_cores()
        args.handler(args)
    except ReverieError as exc:
        print(f"reverie: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("reverie: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()  # `reverie generate ... | head` is fine
        sys.exit(0)
    except OSError as exc:  # a full disk or a read-only folder met outside reverie's own writers
        error = disk_error(exc)
        if error is None:
            raise
        print(f"reverie: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
