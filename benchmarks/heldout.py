"""How well models know a text none of them was trained on: nats per character of each model (a run
directory or a shipped model's name) on the start of a held-out text, so models of any tokenization
(char, byte, bpe) compare on one scale.

    python benchmarks/heldout.py english runs/mine --text corpora/english-heldout.txt
    python benchmarks/heldout.py english --text corpora/english-heldout.txt --chars 50000

The held-out text of the shipped `english` model is corpora/english-heldout.txt (Flask's documentation,
written by scripts/english_corpus.py, in none of its corpus). Each model reads the first --chars
characters as it was trained to read (streams with their state carried, or its windows), in float32,
with its best weights; the loss is in nats per token times tokens per character.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

import reverie
from reverie.errors import ReverieError
from reverie.text import rundir
from reverie.text.batches import MAX_EVAL_TOKENS, evaluate
from reverie.text.evaluation import nats_per_char

DEFAULT_CHARS = 120_000  # within MAX_EVAL_TOKENS at byte level: every model reads all of it


def heldout_loss(name_or_run: str, text: str) -> float:
    """Nats per character of the model `name_or_run` on `text`, read as the model was trained."""
    model = reverie.load(name_or_run, device="cpu")
    options = rundir.RunConfig.load(model.run_dir, training=True).options
    assert options is not None  # read with training=True
    ids = model.tokenizer.encode_array(text).astype(np.int64)
    if len(ids) < 2:
        raise ReverieError(f"the text is {len(ids)} token(s) for {name_or_run}; score at least two")
    if len(ids) > MAX_EVAL_TOKENS + 1:
        raise ReverieError(f"the text is {len(ids):,} tokens for {name_or_run}; use a smaller --chars")
    options = dataclasses.replace(options, seq_len=min(options.seq_len, len(ids) - 1))
    loss = evaluate(model.model.float(), ids, options, torch.device("cpu"))
    return nats_per_char(loss, model.tokenizer, ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="run directories or shipped models' names")
    parser.add_argument("--text", type=Path, required=True, help="the held-out text (UTF-8)")
    parser.add_argument("--chars", type=int, default=DEFAULT_CHARS, help="score its first CHARS characters")
    args = parser.parse_args(argv)
    try:
        text = args.text.read_text(encoding="utf-8")[: args.chars]
        losses = {name: heldout_loss(name, text) for name in args.models}
        print(f"{args.text} (first {len(text):,} characters):")
        for name, loss in losses.items():
            print(f"  {name}: {loss:.4f} nats/char")
    except (ReverieError, OSError, UnicodeDecodeError) as exc:
        print(f"heldout: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
