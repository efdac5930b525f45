"""Training batches and validation scoring for text models.

- StreamBatches (default, as char-rnn): the training ids cut into `batch_size` contiguous streams
  read `seq_len` tokens at a time; the hidden state is carried between batches (truncated
  backpropagation through time) and every token is a target.
- WindowBatches (the book): windows of `seq_len` tokens every `window_step` tokens, shuffled each
  epoch, a fresh state per window, only the token after the window as the target.

`evaluate` scores the validation tail the way the model was trained.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from reverie.text.corpus import WindowSampler, book_starts, gather_windows
from reverie.text.models import LanguageModel
from reverie.text.options import TrainOptions

MAX_EVAL_TOKENS = 1 << 17  # validation scores at most this many tokens of the held-out tail
EVAL_STREAMS = 32


class StreamBatches:
    """The training ids as `batch_size` contiguous streams read `seq_len` tokens per step; each
    epoch shifts the grid by a seeded offset so windows do not always start at the same places."""

    carries_state = True

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int) -> None:
        self.ids, self.seq_len, self.seed = ids, seq_len, seed
        self.streams = min(batch_size, (len(ids) - 1) // seq_len)
        self.stream_len = (len(ids) - 1) // self.streams
        self.max_offset = min(seq_len - 1, self.stream_len - seq_len)
        self.steps_per_epoch = (self.stream_len - self.max_offset) // seq_len

    def epoch(self, epoch: int, first_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        offset = int(np.random.default_rng([self.seed, epoch]).integers(0, self.max_offset + 1))
        bases = np.arange(self.streams, dtype=np.int64) * self.stream_len + offset
        for step in range(first_step, self.steps_per_epoch):
            window = gather_windows(self.ids, bases + step * self.seq_len, self.seq_len + 1)
            yield window[:, :-1], window[:, 1:]

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class WindowBatches:
    """The book's batches: `seq_len`-token windows every `window_step` tokens, shuffled each epoch,
    and only the token after each window as its target."""

    carries_state = False

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, window_step: int, seed: int) -> None:
        self.ids, self.seq_len = ids, seq_len
        self.sampler = WindowSampler(book_starts(len(ids), seq_len, window_step), batch_size, seed)
        self.steps_per_epoch = self.sampler.steps_per_epoch()

    def epoch(self, epoch: int, first_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for starts in self.sampler.epoch_batches(epoch, first_step):
            window = gather_windows(self.ids, starts, self.seq_len + 1)
            yield window[:, :-1], window[:, -1]

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[:, -1], targets)


@torch.no_grad()
def evaluate(model: LanguageModel, ids: np.ndarray, options: TrainOptions, device: torch.device) -> float:
    """Mean validation loss in nats per token, scored as the model was trained (see module doc),
    in float32, over at most MAX_EVAL_TOKENS tokens."""
    ids = ids[: MAX_EVAL_TOKENS + 1]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        if options.batching == "windows":
            starts = book_starts(len(ids), options.seq_len, options.window_step)
            for begin in range(0, len(starts), options.batch_size):
                window = gather_windows(ids, starts[begin : begin + options.batch_size], options.seq_len + 1)
                logits, _ = model(window[:, :-1].to(device))
                total += F.cross_entropy(
                    logits[:, -1].float(), window[:, -1].to(device), reduction="sum"
                ).item()
                count += len(window)
        else:
            streams = max(1, min(EVAL_STREAMS, (len(ids) - 1) // options.seq_len))
            length = (len(ids) - 1) // streams
            bases = np.arange(streams, dtype=np.int64) * length
            state = None
            for position in range(0, length, options.seq_len):
                span = min(options.seq_len, length - position)
                window = gather_windows(ids, bases + position, span + 1).to(device)
                logits, state = model(window[:, :-1], state)
                total += F.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1), reduction="sum"
                ).item()
                count += window[:, 1:].numel()
    finally:
        model.train(was_training)
    return total / max(count, 1)
