"""The `reverie train`, `reverie generate` and `reverie models` subcommands: parse arguments, call the
Python API.

    reverie train shakespeare --out runs/shakespeare --minutes 5
    reverie train nietzsche --out runs/book --preset book
    reverie train nietzsche --out runs/book --resume
    reverie train my_poems.txt --from english --out runs/poems --minutes 2     # fine-tune
    reverie generate runs/shakespeare --prompt "ROMEO:" --temperature 0.2 0.5 1.0 1.2 --seed 0
    reverie generate shakespeare --prompt "ROMEO:"                            # a shipped model
    reverie models                                                            # the shipped models

The flags are generated from the options classes (TrainOptions, SamplingOptions), so the flags,
their help and the Python keyword arguments never drift apart. Options left out are not passed at
all, which is how a preset or a resumed run tells an explicit `--lr 0.002` from the default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reverie.device import add_device_flag
from reverie.errors import ReverieError
from reverie.options import add_flags, add_progress_flags, default_of, given


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train`, `generate` and `models` to the `reverie` command."""
    _add_train(subparsers)
    _add_generate(subparsers)
    _add_models(subparsers)


# ---- train ------------------------------------------------------------------------------------------


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    from reverie.text.corpus import CORPUS_NAMES
    from reverie.text.options import TrainOptions

    parser = subparsers.add_parser(
        "train",
        help="train a character- or word-level language model",
        description="Train a language model on text files, directories or a named corpus "
        f"({', '.join(CORPUS_NAMES)}). Ctrl-C stops, saves and prints the command that resumes.",
    )
    parser.add_argument(
        "corpus",
        nargs="+",
        metavar="CORPUS",
        help=f"text file, directory of text files, or one of: {', '.join(CORPUS_NAMES)}",
    )
    parser.add_argument(
        "--out", required=True, metavar="RUN_DIR", help="where to write the run (a directory)"
    )
    add_flags(parser, TrainOptions, skip=("progress",))
    add_progress_flags(parser, TrainOptions)
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> None:
    from reverie.distributed import ranks
    from reverie.text.options import TrainOptions
    from reverie.text.train import train

    result = train(args.corpus, args.out, **given(args, TrainOptions))
    if ranks().is_main:  # under torchrun every process returns the same result
        print(result.summary(), file=sys.stderr)
    if result.exit_code:
        sys.exit(result.exit_code)


# ---- generate ---------------------------------------------------------------------------------------


def _add_generate(subparsers: argparse._SubParsersAction) -> None:
    from reverie.text.sampling import SamplingOptions

    parser = subparsers.add_parser(
        "generate",
        help="write text with a trained model, streaming",
        description="Continue a prompt with a trained model. Sampling options follow Hugging Face "
        "generate(); --temperature 0 is greedy. Several temperatures print one block each.",
    )
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="a directory written by `reverie train`, or a shipped model's name (see `reverie models`)",
    )
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default="", help="text to continue (default: none)")
    prompt.add_argument("--prompt-file", metavar="FILE", help="read the prompt from a UTF-8 text file")
    add_flags(
        parser,
        SamplingOptions,
        overrides={
            "temperature": {"nargs": "+", "metavar": "T", "help": "one or more temperatures; 0 is greedy"},
            "stop": {
                "action": "append",
                "nargs": None,
                "metavar": "TEXT",
                "help": "end a sample at the first occurrence of TEXT, left out "
                "(repeatable; \\n is a new line)",
            },
        },
    )
    parser.add_argument(
        "--checkpoint",
        choices=("best", "latest"),
        default="best",
        help="the weights with the best validation loss, or the latest (default: best)",
    )
    add_device_flag(parser)
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile a transformer's one-token step (measure first)"
    )
    parser.set_defaults(handler=run_generate)


def run_generate(args: argparse.Namespace) -> None:
    from reverie.text.generator import join_samples, load
    from reverie.text.sampling import SamplingOptions
    from reverie.text.stops import unescape

    prompt = _read_prompt_file(args.prompt_file) if args.prompt_file else args.prompt
    model = load(args.run_dir, checkpoint=args.checkpoint, device=args.device, compile=args.compile)
    options = given(args, SamplingOptions)
    if "stop" in options:
        options["stop"] = [unescape(stop) for stop in options["stop"]]
    temperatures = options.pop("temperature", [default_of(SamplingOptions, "temperature")])
    samples = options.get("num_samples", 1)
    # Build every stream first: a bad value is refused before any text is printed.
    streams = [(t, model.stream_batch(prompt, temperature=t, **options)) for t in temperatures]
    headers = len(streams) > 1 or samples > 1
    out = sys.stdout
    for temperature, stream in streams:
        if samples == 1:
            if headers:
                out.write(f"--- temperature {temperature:g}\n")
            out.write(prompt)
            out.flush()
            for pieces in stream:
                out.write(pieces[0])
                out.flush()
            out.write("\n")
        else:
            for index, text in enumerate(join_samples(stream), start=1):
                out.write(f"--- temperature {temperature:g}, sample {index}\n{prompt}{text}\n")
            out.flush()


# ---- models -----------------------------------------------------------------------------------------


def _add_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the shipped pretrained models",
        description="The pretrained models shipped in the package: their corpus, size, validation loss "
        "and licence. Generate with `reverie generate NAME`, fine-tune with "
        "`reverie train TEXT --from NAME`.",
    )
    parser.set_defaults(handler=run_models, uses_torch=False)


def run_models(args: argparse.Namespace) -> None:
    from reverie.text.pretrained import format_listing, listing

    print(format_listing(listing()))


def _read_prompt_file(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise ReverieError(f"--prompt-file {path} does not exist; pass a text file")
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReverieError(
            f"--prompt-file {path} is not valid UTF-8 at byte {exc.start}; save it as UTF-8"
        ) from None
