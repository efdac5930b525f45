"""The book's way of generating text (Deep Learning with Python, 8.1), the baseline of the generation
benchmark: for every new character, re-run the whole window of the last 60 characters through the
network from a fresh state, then sample from the last position.

    from book_way import rerun_window_tokens
    for ids in rerun_window_tokens(model, prompt_ids, SamplingOptions.of(length=400, seed=0)):
        ...

reverie itself carries the state instead (one step per token: reverie.text.sampling.generate_tokens).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from reverie.text.sampling import EvalMode, SamplingOptions, sample_next

BOOK_WINDOW = 60


def rerun_window_tokens(
    model: nn.Module, prompt_ids: Sequence[int], options: SamplingOptions, window: int = BOOK_WINDOW
) -> Iterator[torch.Tensor]:
    """`options.length` tokens after `prompt_ids`, one stream, each from a re-run of the last
    `window` tokens; yields LongTensor (1,) per token, like generate_tokens."""
    processors = options.rules()
    generator = None if options.greedy else torch.Generator().manual_seed(options.seed or 0)
    history = torch.tensor([list(prompt_ids)], dtype=torch.long)
    with EvalMode(model), torch.inference_mode():
        for _ in range(options.length):
            logits, _ = model(history[:, -window:])
            token = sample_next(logits[:, -1], history, processors, generator)
            history = torch.cat([history, token[:, None]], dim=1)
            yield token.clone()
