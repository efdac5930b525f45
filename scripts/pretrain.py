"""Train a shipped model from its recipe (reverie.text.pretrained.RECIPES) and write it into the
package's model folder, at most 10 MB, with what rebuilds it recorded in its config.json.

    python scripts/pretrain.py shakespeare              # tiny-shakespeare (downloaded once, sha256 checked)
    python scripts/pretrain.py nietzsche
    python scripts/pretrain.py python                   # the running Python's standard library
    python scripts/english_corpus.py && python scripts/pretrain.py english   # from Debian's packages
    python scripts/pretrain.py shakespeare --steps 200 --into /tmp/models   # a quick try elsewhere
    python scripts/pretrain.py english --export-only    # a long run's best weights so far, shipped

Each recipe is a byte-level LSTM of 2x384 trained for 6,000 steps (about 10 minutes on a 2-core
CPU). Training goes into a run directory (--work, default runs/pretrain-NAME), so Ctrl-C
saves and `--resume` continues it; then the best weights are written into --into/NAME (default: the
package's reverie/models, or $REVERIE_MODELS) in float32, or in bfloat16 where float32 would pass
10 MB, with no optimizer state. Their validation loss is measured again as stored and recorded
beside the float32 one, with the exact command, the corpus (sources, sha256 of their bytes in order,
size), the seed and the steps, in config.json's "pretrained" section. Any `reverie train` option
overrides the recipe's (--steps, --hidden, --seed ...).
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import reverie
from reverie.cli import OneLineParser
from reverie.device import use_available_cores
from reverie.errors import ReverieError, require
from reverie.options import add_flags, given
from reverie.text import evaluation, pretrained, rundir
from reverie.text.batches import MAX_EVAL_TOKENS, evaluate
from reverie.text.corpus import load_corpus, resolve_sources, split_ids
from reverie.text.generator import restore_weights
from reverie.text.models import build_model
from reverie.text.options import TrainOptions


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="scripts/pretrain.py",
        description="Train a shipped model from its recipe and write it into the package's model folder.",
    )
    parser.add_argument("name", choices=sorted(pretrained.RECIPES), help="the shipped model to build")
    parser.add_argument(
        "--corpus", nargs="+", metavar="SOURCE", help="the text to train on instead of the recipe's"
    )
    parser.add_argument(
        "--into",
        type=Path,
        help="the folder to write NAME/ into (default: $REVERIE_MODELS, else reverie/models)",
    )
    parser.add_argument("--work", type=Path, help="the training run (default: runs/pretrain-NAME)")
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="write the model from --work's best weights so far, without training (a long run, "
        "stopped or still going, shipped as it stands; --resume continues it later)",
    )
    add_flags(parser, TrainOptions, skip=("base", "preset"))
    return parser


def corpus_record(sources: Sequence[str]) -> dict[str, Any]:
    """The sources as named, and the sha256 and size of their files' bytes, in order."""
    digest, size = hashlib.sha256(), 0
    paths = resolve_sources(list(sources))
    for path in paths:
        data = path.read_bytes()
        digest.update(data)
        size += len(data)
    return {"sources": list(sources), "sha256": digest.hexdigest(), "bytes": size, "files": len(paths)}


def measure_stored(run_dir: Path, sources: Sequence[str]) -> tuple[Any, float]:
    """A function of weights (as stored) to the validation loss (nats/token) of the run's model
    holding them, and the tokens per character of the validation text it scores (1 at char level)."""
    config = rundir.RunConfig.load(run_dir, training=True)
    options = config.options
    assert options is not None
    corpus = load_corpus(
        list(sources), encoding=options.encoding, errors=options.errors, tokenizer=config.tokenizer
    )
    _, val_ids = split_ids(corpus.ids, options.val_fraction)
    require(len(val_ids) > 1, "the recipe holds out no validation text; keep --val-fraction above 0")

    def measure(weights: dict[str, torch.Tensor]) -> float:
        model = build_model(config.model)
        restore_weights(model, weights, run_dir)
        return evaluate(model.float(), val_ids, options, torch.device("cpu"))

    scored = val_ids[: MAX_EVAL_TOKENS + 1]  # what evaluate reads
    return measure, evaluation.nats_per_char(1.0, config.tokenizer, scored)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        use_available_cores()
        return build(args, argv)
    except ReverieError as exc:
        print(f"pretrain: error: {exc}", file=sys.stderr)
        return exc.exit_code


def build(args: argparse.Namespace, argv: list[str]) -> int:
    recipe = pretrained.RECIPES[args.name]
    work = args.work or Path("runs") / f"pretrain-{recipe.name}"
    require(
        not args.export_only or (work / rundir.CONFIG).is_file(),
        f"--export-only: {work} holds no run; train it first (leave --export-only out)",
    )
    sources = list(args.corpus or recipe.corpus)
    try:
        resolve_sources(sources)
    except ReverieError as exc:
        if args.corpus or not recipe.prepare:
            raise
        raise ReverieError(f"{exc}; the {recipe.name} corpus is written by `{recipe.prepare}`") from None
    into = args.into or pretrained.models_dir()
    options = {**recipe.options, **given(args, TrainOptions)}
    started = time.monotonic()
    if not args.export_only:
        result = reverie.train(sources, work, **options)
        print(result.summary(), file=sys.stderr)
        if result.interrupted:
            print("pretrain: not written; continue with the same command and --resume", file=sys.stderr)
            return result.exit_code
    config = rundir.RunConfig.load(work, training=True)
    info = {
        "name": recipe.name,
        "about": recipe.about,
        "licence": recipe.licence,
        "prompt": recipe.prompt,
        "command": shlex.join(["python", "scripts/pretrain.py", *(a for a in argv if a != "--export-only")]),
        "corpus": corpus_record(sources),
        "seed": config.options.seed if config.options else None,
        "trained_s": round(config.state.elapsed_s if config.state else time.monotonic() - started, 1),
        "tokens_seen": config.state.tokens if config.state else None,
        "steps_planned": config.options.steps if config.options else None,  # more than done: --export-only
        "reverie": reverie.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),  # python-stdlib's text is this Python's
        "machine": platform.processor() or platform.machine(),
    }
    measure, info["tokens_per_char"] = measure_stored(work, sources)
    section = pretrained.export(work, Path(into) / recipe.name, info, measure)
    folder = Path(into) / recipe.name
    size = sum(entry.stat().st_size for entry in folder.iterdir())
    print(
        f"pretrain: wrote {folder}: {size / 1e6:.2f} MB, {section['dtype']} weights, {section['steps']} "
        f"steps, validation loss {section['val_loss']:.4f} nats/token as stored "
        f"({section['val_loss_float32']:.4f} in float32; "
        f"{section['val_loss'] * section['tokens_per_char']:.4f} nats/char)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
