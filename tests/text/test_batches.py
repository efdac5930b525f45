"""Training batches: the book's windows and their targets, contiguous streams, each epoch's order,
resuming inside an epoch, and the ranks' shares of a step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reverie.errors import ReverieError
from reverie.text.batches import StreamBatches, WindowBatches


def test_book_windows_and_targets():
    ids = np.arange(1000)  # token i at position i: a window's tokens are its positions
    batches = WindowBatches(ids, batch_size=128, seq_len=60, window_step=3, seed=0)
    assert batches.steps_per_epoch == math.ceil(len(range(0, 1000 - 60, 3)) / 128)
    inputs, targets = next(batches.epoch(0))
    assert inputs.shape == (128, 60) and targets.shape == (128,)
    starts = inputs[:, 0]
    assert torch.all(starts % 3 == 0) and torch.equal(inputs, starts[:, None] + torch.arange(60))
    assert torch.equal(targets, starts + 60)  # only char N+1 is the target
    logits = torch.zeros(128, 60, 1000)
    logits[:, -1, :] = torch.nn.functional.one_hot(targets, 1000) * 100.0
    assert batches.loss(logits, targets).item() < 1e-6  # the loss reads only the last position


def test_stream_batches_continue_each_stream():
    ids = np.arange(10_000)
    batches = StreamBatches(ids, batch_size=4, seq_len=16, seed=0)
    steps = list(batches.epoch(0))
    assert len(steps) == batches.steps_per_epoch
    (x0, y0), (x1, _) = steps[0], steps[1]
    assert x0.shape == (4, 16) and torch.equal(y0, x0 + 1)  # every token is a target
    assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # the next batch continues where this one ended
    assert next(iter(batches.epoch(0, first_step=1)))[0].equal(x1)


def test_ranks_share_the_batches_of_one_process():
    ids = np.arange(10_000)
    whole = next(StreamBatches(ids, 8, 16, seed=1).epoch(0))[0]
    halves = [next(StreamBatches(ids, 4, 16, seed=1, rank=r, world_size=2).epoch(0))[0] for r in range(2)]
    assert torch.equal(torch.cat(halves), whole)  # rank r reads the r-th block of the same streams
    one = WindowBatches(ids[:337], 8, 10, 7, seed=0)  # 47 windows: 5 steps of 8, then 7
    two = [WindowBatches(ids[:337], 4, 10, 7, seed=0, rank=r, world_size=2) for r in range(2)]
    assert one.steps_per_epoch == two[0].steps_per_epoch == 6
    for (x, _), (x0, _), (x1, _) in zip(one.epoch(0), two[0].epoch(0), two[1].epoch(0)):
        assert sorted(x[:, 0].tolist()) == sorted(x0[:, 0].tolist() + x1[:, 0].tolist())
    assert (len(x0), len(x1)) == (4, 3) and two[0].step_tokens(5) == 70
    assert two[0].weight(5) == pytest.approx(8 / 7) and two[1].weight(5) == pytest.approx(6 / 7)
    assert two[0].weight(0) == two[1].weight(0) == one.weight(5) == 1.0


def window_starts(batches: WindowBatches, epoch: int, first_step: int = 0) -> list[np.ndarray]:
    """The start of every window of each step (the ids are their positions, so a window's first id)."""
    return [inputs[:, 0].numpy() for inputs, _ in batches.epoch(epoch, first_step)]


def test_windows_are_deterministic_and_cover_each_window_once_per_epoch() -> None:
    ids = np.arange(1004)  # 4-token windows every 3 tokens: starts 0, 3, ..., 999
    batches = WindowBatches(ids, batch_size=32, seq_len=4, window_step=3, seed=7)
    epoch0 = window_starts(batches, 0)
    assert len(epoch0) == batches.steps_per_epoch == 11  # 334 windows: 10 full batches + 14
    assert [len(b) for b in epoch0[-2:]] == [32, 14]
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(0, 1000, 3))
    again = window_starts(WindowBatches(ids, batch_size=32, seq_len=4, window_step=3, seed=7), 0)
    assert all(np.array_equal(x, y) for x, y in zip(epoch0, again))
    assert not np.array_equal(np.concatenate(epoch0), np.concatenate(window_starts(batches, 1)))
    other_seed = WindowBatches(ids, batch_size=32, seq_len=4, window_step=3, seed=8)
    assert not np.array_equal(epoch0[0], window_starts(other_seed, 0)[0])


def test_window_ranks_take_distinct_shares_of_every_window() -> None:
    ids = np.arange(102)  # 101 one-token windows, global batch 4 x 8 = 32: 3 full steps and one of 5
    shares = [
        np.concatenate(window_starts(WindowBatches(ids, 8, 1, 1, seed=0, rank=r, world_size=4), 3))
        for r in range(4)
    ]
    assert WindowBatches(ids, 8, 1, 1, seed=0, world_size=4).steps_per_epoch == 4
    assert [len(s) for s in shares] == [
        26,
        25,
        25,
        25,
    ]  # the short step: 2 windows on rank 0, 1 on the others
    union = np.concatenate(shares).tolist()
    assert sorted(union) == list(range(101))  # every window once, on exactly one rank


def test_windows_resume_from_a_step_inside_the_epoch() -> None:
    batches = WindowBatches(
        np.arange(502), batch_size=16, seq_len=1, window_step=1, seed=1, rank=1, world_size=2
    )
    full = window_starts(batches, 2)
    resumed = window_starts(batches, 2, first_step=5)
    assert len(resumed) == len(full) - 5
    assert all(np.array_equal(x, y) for x, y in zip(full[5:], resumed))


def test_too_few_windows_are_refused() -> None:
    with pytest.raises(ReverieError, match="0 training windows"):
        WindowBatches(np.arange(3), batch_size=4, seq_len=5, window_step=1, seed=0)
