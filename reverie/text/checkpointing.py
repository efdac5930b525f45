"""A training run's checkpoints through its run directory: save one, resume from one.

    saved, options = saved_run(out, where.world_size)   # --resume: the config, read on rank 0 for all
    restore(run, saved)                                 # weights, optimizer, RNG, carried state, state
    save(run, elapsed, best=True)                       # every rank calls it; rank 0 writes

A checkpoint is everything `--resume` needs to continue the same run: the weights (and the best
ones), the optimizer moments, every rank's RNG state, the carried hidden state of every stream, and
`run.state` (the TrainState, config.json's "state" through dataclasses.asdict), with metrics.csv and
loss.png beside it. The files and their order of writing are reverie.text.rundir's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from reverie import distributed, rng
from reverie.checkpoint import join_tensors, split_tensors
from reverie.errors import ReverieError
from reverie.text import ddp, rundir
from reverie.text.generator import restore_weights
from reverie.text.language_model import map_state
from reverie.text.options import TrainOptions
from reverie.text.plots import plot_losses
from reverie.text.run import Run
from reverie.text.rundir import CorpusInfo, RunConfig


def saved_run(out: Path, world_size: int) -> tuple[RunConfig, TrainOptions]:
    """The run in `out` to resume (its config.json checked on rank 0 and handed to every rank)
    and its options (its model the checkpoint's), with the --batch-size that keeps its global batch
    on `world_size` processes."""
    shared = distributed.share_from_main(lambda: _config_bytes(out))
    saved = RunConfig.from_json(json.loads(shared), out / rundir.CONFIG, training=True)
    if saved.state is None or saved.options is None:
        raise ReverieError(f"{out} holds no training state to resume; train a new run into another --out")
    batch_size = ddp.per_rank_batch_size(saved.options.batch_size, saved.state.world_size, world_size, out)
    return saved, dataclasses.replace(saved.options, batch_size=batch_size)


def _config_bytes(out: Path) -> bytes:
    return json.dumps(RunConfig.load(out, training=True).to_json()).encode()


def restore(run: Run, saved: RunConfig) -> None:
    """Put the saved run's weights, optimizer, RNG, carried state, TrainState, metric rows and
    files into `run`, and cut samples.txt back to what the checkpoint had."""
    state = saved.state
    assert state is not None
    tensors = ddp.load_shared(saved, run.out, rundir.STATE)
    weights = ddp.load_shared(saved, run.out, rundir.MODEL)
    restore_weights(run.model, weights, saved.path_of(run.out, rundir.MODEL))
    where = run.where
    try:
        run.optimizer.load_state_dict(join_tensors(state.optimizer, tensors))
        if where.rank == 0:
            saved_rng = join_tensors(state.rng, tensors)
        else:
            others = join_tensors(state.rng_ranks or [], tensors)
            saved_rng = others[where.rank - 1] if where.rank <= len(others) else None
        if saved_rng is None:  # more ranks than the run had: a fresh stream, still set by --seed
            torch.manual_seed(rng.rank_seed(run.options.seed, where.rank, state.step))
        else:
            rng.restore(saved_rng, run.device)
        carry = ddp.share_of(join_tensors(state.carry, tensors), run.batches, run.model, where)
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError):
        raise ReverieError(
            f"the training state in {run.out} does not fit this run; it is corrupted or from an "
            "incompatible version"
        ) from None
    run.carry = map_state(carry, lambda t: t.to(run.device))
    # the counters go on; how this session trains (its batches, dtype, processes) is its own, and
    # the tensors' placeholders are filled in afresh at each save
    run.state = dataclasses.replace(
        state,
        steps_per_epoch=run.state.steps_per_epoch,
        dtype=run.state.dtype,
        world_size=run.state.world_size,
        optimizer=None,
        rng=None,
        rng_ranks=None,
        carry=None,
    )
    run.files = dict(saved.files)
    if where.is_main:
        metrics = rundir.read_metrics(run.out / rundir.METRICS)
        run.history = [row for row in metrics if row["step"] <= state.step]
        samples = run.out / rundir.SAMPLES
        if samples.is_file() and samples.stat().st_size > state.samples_bytes:
            with open(samples, "r+b") as handle:  # samples written after this checkpoint: redone
                handle.truncate(state.samples_bytes)


def save(run: Run, elapsed: float, best: bool = False) -> None:
    """Write the checkpoint (weights, optimizer, RNG, carried state, `run.state` with `elapsed`
    seconds), metrics.csv and loss.png; with `best`, the weights are the best ones too.

    With several ranks every rank calls it: rank 0 gathers their RNG states and carried states
    (all ranks' streams, in global order) and writes alone."""
    states = distributed.gather_tensors(rng.capture(run.device))
    carry = ddp.gathered_carry(run)
    if not run.where.is_main:
        return
    out = run.out
    out.mkdir(parents=True, exist_ok=True)
    weights = {name: t.detach() for name, t in run.model.state_dict().items()}
    optimizer_json, tensors = split_tensors(run.optimizer.state_dict(), "optimizer")
    rng_json, rng_tensors = split_tensors(states[0], "rng")
    ranks_json, ranks_tensors = split_tensors(states[1:], "rng_ranks")
    carry_json, carry_tensors = split_tensors(carry, "carry")
    groups = {
        rundir.MODEL: weights,
        rundir.STATE: {**tensors, **rng_tensors, **ranks_tensors, **carry_tensors},
    }
    if best:
        groups[rundir.BEST] = weights
    corpus, samples = run.corpus, out / rundir.SAMPLES
    config = RunConfig(
        model=run.model.config,
        tokenizer=corpus.tokenizer,
        files=dict(run.files),
        corpus=CorpusInfo(
            corpus.sources, corpus.fingerprint, len(corpus.ids), len(run.train_ids), len(run.val_ids)
        ),
        options=run.options,
        state=dataclasses.replace(
            run.state,
            elapsed_s=elapsed,
            optimizer=optimizer_json,
            rng=rng_json,
            rng_ranks=ranks_json,
            carry=carry_json,
            samples_bytes=samples.stat().st_size if samples.is_file() else 0,
        ),
    )
    config.store(out, groups)
    # before config.json: a run resumed from the previous checkpoint keeps only its own rows
    rundir.write_metrics(out / rundir.METRICS, run.history)
    model = run.model.config
    plot_losses(
        run.history,
        out / rundir.PLOT,
        title=f"{out.name}: {model.kind} {model.layers}x{model.hidden}, {corpus.tokenizer.level} level",
    )
    config.commit(out)
    run.files = config.files
