"""Evaluation during training: the validation loss at a step, the best so far, and --patience.

    line, is_best = evaluate_run(run, clock)     # every rank calls it; rank 0 scores the tail
    if line:
        print(line)                              # "step 400 (epoch 1.00): validation loss ..."

Rank 0 scores the held-out tail (reverie.text.batches.evaluate), keeps the loss, the best loss and
its step in `run.state`, counts the evaluations in a row without a better loss (what --patience
stops on, handed to every rank so that all stop at the same step) and adds a metrics row.

Losses are in nats per token; `nats_per_char` puts those of different levels on one scale (the
tokens per character of the text scored: 1 at char level, bytes per character at byte level, about
1/3 at bpe level on English).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from reverie import distributed
from reverie.text.batches import evaluate
from reverie.text.run import Run
from reverie.text.tokenizer import Tokenizer


def nats_per_char(nats_per_token: float, tokenizer: Tokenizer, ids: Sequence[int] | np.ndarray) -> float:
    """A loss of `nats_per_token` on the tokens `ids` (a validation tail) in nats per character of
    their text: times their count over the characters they decode to."""
    chars = len(tokenizer.decode(ids))
    return nats_per_token * len(ids) / chars if chars else math.nan


def evaluate_run(run: Run, clock: Callable[[], float]) -> tuple[str | None, bool]:
    """Score the validation tail at this step (`clock()`: the seconds into the run, for its metrics
    row); the line that says so (None without a tail, and on ranks other than 0) and whether the
    loss is the best yet."""
    state = run.state
    line, is_best = None, False
    if run.where.is_main and len(run.val_ids) > 0:
        val_loss = evaluate(run.model, run.val_ids, run.options, run.device)
        state.last_val_loss = val_loss
        is_best = state.best_val_loss is None or val_loss < state.best_val_loss
        if is_best:
            state.best_val_loss, state.best_step = val_loss, state.step
        state.evals_since_best = 0 if is_best else state.evals_since_best + 1
        bits = val_loss / math.log(2)
        run.history.append(
            {
                "step": state.step,
                "epoch": run.epochs,
                "val_loss": val_loss,
                "val_bits": bits,
                "elapsed_s": clock(),
            }
        )
        line = (
            f"step {state.step} (epoch {run.epochs:.2f}): validation loss {val_loss:.4f} nats/token, "
            f"{bits:.4f} bits/token{' (best)' if is_best else ''}"
        )
    state.last_eval_step = state.step
    if run.where.distributed:  # only rank 0 evaluated: every rank stops early at the same step
        state.evals_since_best = int(distributed.broadcast(torch.tensor([state.evals_since_best])))
    return line, is_best
