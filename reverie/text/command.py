"""The `reverie train` and `reverie generate` subcommands: parse arguments, call the Python API.

    reverie train shakespeare --out runs/shakespeare --minutes 5
    reverie train nietzsche --out runs/book --preset book
    reverie train nietzsche --out runs/book --resume
    reverie generate runs/shakespeare --prompt "ROMEO:" --temperature 0.2 0.5 1.0 1.2 --seed 0

`train`'s options are generated from reverie.text.train.TrainOptions, so the flags, their help and
the Python keyword arguments never drift apart. Options left out are not passed at all, which is
how a preset or a resumed run tells an explicit `--lr 0.002` from the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from reverie.errors import ReverieError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` and `generate` to the `reverie` command."""
    _add_train(subparsers)
    _add_generate(subparsers)


# ---- train ------------------------------------------------------------------------------------------


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    from reverie.text.corpus import CORPUS_NAMES
    from reverie.text.options import TrainOptions, flag

    parser = subparsers.add_parser(
        "train",
        help="train a character- or word-level language model",
        description="Train a language model on text files, directories or a named corpus "
        f"({', '.join(CORPUS_NAMES)}). Ctrl-C stops, saves and prints the command that resumes.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "corpus",
        nargs="+",
        metavar="CORPUS",
        help=f"text file, directory of text files, or one of: {', '.join(CORPUS_NAMES)}",
    )
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="directory that receives the run")
    for option in dataclasses.fields(TrainOptions):
        meta = dict(option.metadata)
        help_text = meta.pop("help")
        if option.type in ("bool", bool):
            action = (
                "store_true"
                if option.default is False and option.name in ("resume", "overwrite")
                else argparse.BooleanOptionalAction
            )
            parser.add_argument(flag(option.name), action=action, help=help_text)
            continue
        default = option.default
        shown = (
            f" (default: {' '.join(map(str, default)) if isinstance(default, tuple) else default})"
            if default is not None
            else ""
        )
        meta.setdefault("metavar", option.name.upper() if "choices" not in meta else None)
        if meta["metavar"] is None:
            meta.pop("metavar")
        parser.add_argument(flag(option.name), help=help_text + shown, **meta)
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> None:
    from reverie.distributed import ranks
    from reverie.text.options import OPTION_NAMES
    from reverie.text.train import train

    options = {name: value for name, value in vars(args).items() if name in OPTION_NAMES}
    result = train(args.corpus, args.out, **options)
    reasons = {
        "epochs": "its --epochs",
        "steps": "its --steps",
        "minutes": "its --minutes",
        "interrupted": "Ctrl-C",
    }
    summary = (
        f"reverie: {result.step} steps ({result.epoch:.2f} epochs), stopped by {reasons[result.stop_reason]}"
    )
    if result.val_loss is not None:
        summary += (
            f"; validation loss {result.val_loss:.4f} nats/token ({result.val_bits:.4f} bits), "
            f"best {result.best_val_loss:.4f}"
        )
    if ranks().is_main:  # under torchrun every process returns the same result
        print(f"{summary}; run saved in {result.run_dir}", file=sys.stderr)
    if result.interrupted:
        sys.exit(130)


# ---- generate ---------------------------------------------------------------------------------------


def _add_generate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="write text with a trained model, streaming",
        description="Continue a prompt with a trained model. Sampling options follow Hugging Face "
        "generate(); --temperature 0 is greedy. Several temperatures print one block each.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `reverie train`")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default="", help="text to continue (default: none)")
    prompt.add_argument("--prompt-file", metavar="FILE", help="read the prompt from a UTF-8 text file")
    parser.add_argument("--length", type=int, default=400, help="tokens to generate (default: 400)")
    parser.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=[1.0],
        metavar="T",
        help="one or more sampling temperatures; 0 is greedy (default: 1.0)",
    )
    parser.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    parser.add_argument(
        "--top-p",
        type=float,
        help="sample among the most likely tokens whose probabilities "
        "sum to p (nucleus sampling), 0 < p <= 1",
    )
    parser.add_argument(
        "--min-p", type=float, help="drop tokens less likely than min_p times the most likely"
    )
    parser.add_argument(
        "--repetition-penalty",
        type=float,
        metavar="R",
        help="divide the logits of tokens already present by R (> 1 repeats less)",
    )
    parser.add_argument(
        "--num-samples", type=int, default=1, metavar="K", help="independent samples, run as one batch"
    )
    parser.add_argument("--seed", type=int, help="random seed: the same seed gives the same text")
    parser.add_argument(
        "--checkpoint",
        choices=("best", "latest"),
        default="best",
        help="the weights with the best validation loss, or the latest (default: best)",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="where to run"
    )
    parser.set_defaults(handler=run_generate)


def run_generate(args: argparse.Namespace) -> None:
    from reverie.text.generator import load

    prompt = _read_prompt_file(args.prompt_file) if args.prompt_file else args.prompt
    model = load(args.run_dir, checkpoint=args.checkpoint, device=args.device)
    sampling: dict[str, Any] = {
        "top_k": args.top_k,
        "top_p": args.top_p,
        "min_p": args.min_p,
        "repetition_penalty": args.repetition_penalty,
        "num_samples": args.num_samples,
        "seed": args.seed,
    }
    # Build every stream first: a bad value is refused before any text is printed.
    streams = [(t, model.stream(prompt, args.length, temperature=t, **sampling)) for t in args.temperature]
    headers = len(streams) > 1 or args.num_samples > 1
    out = sys.stdout
    for temperature, stream in streams:
        if args.num_samples == 1:
            if headers:
                out.write(f"--- temperature {temperature:g}\n")
            out.write(prompt)
            out.flush()
            for piece in stream:
                out.write(piece)
                out.flush()
            out.write("\n")
        else:
            texts = [""] * args.num_samples
            for pieces in stream:
                texts = [text + piece for text, piece in zip(texts, pieces)]
            for index, text in enumerate(texts, start=1):
                out.write(f"--- temperature {temperature:g}, sample {index}\n{prompt}{text}\n")
            out.flush()


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
