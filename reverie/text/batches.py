"""Training batches and validation scoring for text models.

- StreamBatches (default, as char-rnn): the training ids cut into `batch_size` contiguous streams
  read `seq_len` tokens at a time; the hidden state is carried between batches (truncated
  backpropagation through time) and every token is a target.
- WindowBatches (the book): windows of `seq_len` tokens every `window_step` tokens, shuffled each
  epoch, a fresh state per window, only the token after the window as the target.
- RandomWindows (the transformer's): windows of `--context` tokens at random starts, every token a
  target, no state.

With several processes (torchrun), `batch_size` is per process and the global batch is
`batch_size * world_size`; what each rank reads depends only on the global batch, so W ranks of
batch B see, step by step, exactly the sequences one process of batch W*B sees:

- streams: the global batch fixes the set of streams; rank r reads the r-th contiguous block of
  them (streams r*B .. r*B+B-1) and carries their states.
- windows: each step takes the next W*B windows of the epoch's shuffled order; rank r takes every
  W-th of them from the r-th. A short last step is shared as evenly as possible and `weight`
  scales each rank's loss so that the averaged gradient is the mean over that step's windows.

`make_batches` builds the kind that --batching names, this rank's share; `check_lengths` refuses a
corpus too short (or a vocabulary too large) for the options first, in one line. `evaluate` scores
the validation tail the way the model was trained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from reverie.errors import require
from reverie.text.corpus import book_starts, gather_windows
from reverie.text.language_model import LanguageModel
from reverie.text.options import TrainOptions
from reverie.text.tokenizer import Tokenizer

MAX_EVAL_TOKENS = 1 << 17  # validation scores at most this many tokens of the held-out tail
EVAL_STREAMS = 32
MAX_LOGITS_BYTES = 8 << 30  # one step's output layer (its gradient as much again)


class StreamBatches:
    """The training ids as contiguous streams read `seq_len` tokens per step (`batch_size` of them
    per rank); each epoch shifts the grid by a seeded offset so windows do not always start at the
    same places."""

    carries_state = True

    def __init__(
        self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.ids, self.seq_len, self.seed = ids, seq_len, seed
        streams = min(batch_size * world_size, (len(ids) - 1) // seq_len)
        self.streams = streams - streams % world_size  # every rank reads as many streams
        require(
            self.streams > 0,
            f"the corpus is too short to give each of {world_size} processes a stream of {seq_len + 1} "
            "tokens; use a longer corpus, a smaller --seq-len or fewer processes",
        )
        self.stream_len = (len(ids) - 1) // self.streams
        self.max_offset = min(seq_len - 1, self.stream_len - seq_len)
        self.steps_per_epoch = (self.stream_len - self.max_offset) // seq_len
        share = self.streams // world_size
        self.rank_streams = np.arange(rank * share, (rank + 1) * share, dtype=np.int64)

    def epoch(self, epoch: int, first_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        offset = int(np.random.default_rng([self.seed, epoch]).integers(0, self.max_offset + 1))
        bases = self.rank_streams * self.stream_len + offset
        for step in range(first_step, self.steps_per_epoch):
            window = gather_windows(self.ids, bases + step * self.seq_len, self.seq_len + 1)
            yield window[:, :-1], window[:, 1:]

    def weight(self, step: int) -> float:
        """This rank's loss scale at `step` of an epoch (every rank reads as many tokens)."""
        return 1.0

    def step_tokens(self, step: int) -> int:
        """Input tokens that `step` of an epoch trains on, over all ranks."""
        return self.streams * self.seq_len

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class WindowBatches:
    """The book's batches: `seq_len`-token windows every `window_step` tokens, shuffled each epoch,
    and only the token after each window as its target."""

    carries_state = False

    def __init__(
        self,
        ids: np.ndarray,
        batch_size: int,
        seq_len: int,
        window_step: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.ids, self.seq_len, self.seed, self.rank, self.world_size = ids, seq_len, seed, rank, world_size
        self.starts = book_starts(len(ids), seq_len, window_step)
        self.global_batch = batch_size * world_size
        full, rest = divmod(len(self.starts), self.global_batch)
        # a short last step is kept when every rank gets at least one window of it
        self.steps_per_epoch = full + (rest >= world_size)
        require(
            self.steps_per_epoch > 0,
            f"the corpus has {len(self.starts)} training windows, fewer than the {world_size} "
            "processes; use a longer corpus or fewer processes",
        )

    def _step_windows(self, step: int) -> int:
        return min(self.global_batch, len(self.starts) - step * self.global_batch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Every window start in this epoch's order, shuffled afresh from (seed, epoch); the same on
        every rank."""
        return self.starts[np.random.default_rng([self.seed, epoch]).permutation(len(self.starts))]

    def epoch(self, epoch: int, first_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's (inputs, targets) of each step of `epoch`, from `first_step` (a resumed epoch)."""
        order = self.epoch_order(epoch)
        for step in range(first_step, self.steps_per_epoch):
            chunk = order[step * self.global_batch : (step + 1) * self.global_batch]
            window = gather_windows(self.ids, chunk[self.rank :: self.world_size], self.seq_len + 1)
            yield window[:, :-1], window[:, -1]

    def weight(self, step: int) -> float:
        """This rank's loss scale at `step`: its share of the step's windows times the world size,
        so that the ranks' averaged gradients are the mean over all of the step's windows."""
        total = self._step_windows(step)
        mine = len(range(self.rank, total, self.world_size))
        return mine * self.world_size / total

    def step_tokens(self, step: int) -> int:
        """Input tokens that `step` of an epoch trains on, over all ranks."""
        return self._step_windows(step) * self.seq_len

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[:, -1], targets)


class RandomWindows:
    """Windows of `seq_len` tokens at starts drawn at random for every step (a transformer's
    batches: no state carried, every token of a window a target). The draw of a step depends only on
    (seed, epoch, step), so a resumed run draws what an uninterrupted one would; rank r takes the
    r-th block of the step's global batch. An epoch is as many steps as it takes to draw as many
    tokens as the training text holds."""

    carries_state = False

    def __init__(
        self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.ids, self.seq_len, self.seed, self.rank = ids, seq_len, seed, rank
        self.batch_size, self.global_batch = batch_size, batch_size * world_size
        self.starts = len(ids) - seq_len  # windows of seq_len + 1 tokens: inputs and targets
        require(self.starts > 0, f"the corpus is shorter than one window of {seq_len + 1} tokens")
        self.steps_per_epoch = max(1, (len(ids) - 1) // (self.global_batch * seq_len))

    def epoch(self, epoch: int, first_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step in range(first_step, self.steps_per_epoch):
            starts = np.random.default_rng([self.seed, epoch, step]).integers(
                0, self.starts, self.global_batch
            )
            mine = starts[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            window = gather_windows(self.ids, mine, self.seq_len + 1)
            yield window[:, :-1], window[:, 1:]

    def weight(self, step: int) -> float:
        return 1.0

    def step_tokens(self, step: int) -> int:
        return self.global_batch * self.seq_len

    loss = staticmethod(StreamBatches.loss)


Batches = StreamBatches | WindowBatches | RandomWindows
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # a Batches' loss: (logits, targets) -> mean


def training_loss(
    outputs: torch.Tensor | tuple[torch.Tensor, ...], targets: torch.Tensor, loss: Loss
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss a step minimizes, and the next-token loss it reports: for one head's logits (B, T,
    vocab) both are `loss`; for a model's N heads (LanguageModel.forward with `ahead`), the sum of
    every head's, head j (from 0) scored on the targets j tokens on (the last j positions of a
    window have none), and the first head's, so that runs of any --predict compare."""
    if isinstance(outputs, torch.Tensor):
        main = loss(outputs.float(), targets)
        return main, main
    main = total = loss(outputs[0].float(), targets)
    for offset, logits in enumerate(outputs[1:], start=1):
        if targets.shape[1] > offset:
            total = total + loss(logits[:, :-offset].float(), targets[:, offset:])
    return total, main


def make_batches(options: TrainOptions, ids: np.ndarray, rank: int = 0, world_size: int = 1) -> Batches:
    """The training batches `options.batching` asks for, rank `rank`'s share."""
    if options.batching == "windows":
        return WindowBatches(
            ids, options.batch_size, options.seq_len, options.window_step, options.seed, rank, world_size
        )
    if options.batching == "random":
        return RandomWindows(ids, options.batch_size, options.window, options.seed, rank, world_size)
    return StreamBatches(ids, options.batch_size, options.seq_len, options.seed, rank, world_size)


def check_lengths(options: TrainOptions, tokenizer: Tokenizer, n_train: int, n_val: int) -> None:
    """Refuse a corpus of `n_train` training and `n_val` validation tokens that the options cannot
    train on, or a step whose logits would not fit in memory."""
    unit = {"char": "characters", "byte": "bytes"}.get(tokenizer.level, "tokens")
    require(
        tokenizer.vocab_size >= 2,
        f"the corpus has only one distinct {unit[:-1]} ({tokenizer.vocab[0]!r}): there is nothing to "
        "predict; use a text with some variety",
    )
    predict = options.model.predict
    logits_bytes = 4 * options.batch_size * options.window * tokenizer.vocab_size * predict
    heads = f" x --predict {predict}" if predict > 1 else ""
    require(
        logits_bytes <= MAX_LOGITS_BYTES,
        f"a step's logits would take {logits_bytes / 1e9:.1f} GB (--batch-size x --seq-len x "
        f"{tokenizer.vocab_size:,} tokens x 4 bytes{heads}), more than reverie's limit of "
        f"{MAX_LOGITS_BYTES / 1e9:.0f} GB; use a smaller --batch-size, --seq-len or --max-vocab",
    )
    require(
        n_train > options.window,
        f"the corpus is too short: {n_train} {unit} to train on, shorter than one training window of "
        f"{options.window + 1}; use a longer corpus or a smaller "
        + ("--context" if options.model.kind == "transformer" else "--seq-len"),
    )
    if options.val_fraction > 0:
        needed = options.window + 1 if options.batching == "windows" else 2
        require(
            n_val >= needed,
            f"the validation tail has {n_val} {unit}, fewer than the {needed} it needs; raise "
            "--val-fraction, use a longer corpus, or pass --val-fraction 0",
        )


@torch.no_grad()
def evaluate(model: LanguageModel, ids: np.ndarray, options: TrainOptions, device: torch.device) -> float:
    """Mean validation loss in nats per token, scored as the model was trained (see module doc),
    in float32, over at most MAX_EVAL_TOKENS tokens."""
    ids = ids[: MAX_EVAL_TOKENS + 1]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        if options.batching == "random":  # windows side by side, each read from a fresh start
            length = options.window
            starts = np.arange(0, max(1, len(ids) - length), length, dtype=np.int64)
            for begin in range(0, len(starts), EVAL_STREAMS):
                chunk = starts[begin : begin + EVAL_STREAMS]
                window = gather_windows(ids, chunk, min(length, len(ids) - 1) + 1).to(device)
                logits, _ = model(window[:, :-1])
                total += F.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1), reduction="sum"
                ).item()
                count += window[:, 1:].numel()
        elif options.batching == "windows":
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
