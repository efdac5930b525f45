"""Samples during training: text at each of the run's sample temperatures, into samples.txt.

    text = write_samples(run)     # rank 0, at each evaluation; "" when no temperature is asked for

Each block continues a seed window of the training text (the book's way): `sample_length` tokens
at every temperature of --sample-temperatures. The window and every temperature's seed are drawn
from (--seed, step), so a resumed run writes what an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np

from reverie.text import rundir
from reverie.text.generator import TextModel
from reverie.text.run import Run
from reverie.text.sampling import SamplingOptions

SAMPLE_PROMPT_TOKENS = 60  # the book's seed length


def write_samples(run: Run) -> str:
    """Append this step's samples to samples.txt; the text appended."""
    options, step, train_ids = run.options, run.state.step, run.train_ids
    if not options.sample_temperatures:
        return ""
    tokenizer = run.corpus.tokenizer
    prompt_len = min(SAMPLE_PROMPT_TOKENS, options.window, len(train_ids) - 1)
    begin = int(np.random.default_rng([options.seed, step]).integers(0, len(train_ids) - prompt_len))
    prompt_ids = [int(i) for i in train_ids[begin : begin + prompt_len]]
    writer = TextModel(run.model, tokenizer, run.device)
    seed_text = tokenizer.decode(prompt_ids)
    blocks = [f"=== step {step}, epoch {run.epochs:.2f}, seed: {seed_text!r}"]
    for index, temperature in enumerate(options.sample_temperatures):
        seed = int(np.random.default_rng([options.seed, step, index]).integers(2**31))
        sampling = SamplingOptions(temperature=temperature, length=options.sample_length, seed=seed)
        pieces = writer.stream_ids(prompt_ids, sampling, follows=prompt_ids[-1])
        blocks.append(f"--- temperature {temperature:g}\n{seed_text}{''.join(p[0] for p in pieces)}")
    text = "\n".join(blocks) + "\n\n"
    with open(run.out / rundir.SAMPLES, "a", encoding="utf-8") as handle:
        handle.write(text)
    return text
