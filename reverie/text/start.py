"""Starting a training run: the run directory checked and locked, and what the Trainer is built from.

    with opened(sources, out, where, options) as start:    # options: reverie.train's keywords
        trainer = Trainer(start.corpus, out, start.options, start.saved, ..., start.base)
        trainer.prepare()
        start.proceed(trainer.budget_reason())           # refuse a spent resumed run; --overwrite clears
        trainer.train()

A new run refuses an `--out` that holds a run (unless --overwrite) or files reverie did not write;
`--resume` reads the run's config on rank 0 and hands it to every rank (reverie.text.checkpointing),
and its options win over the defaults; `--from` (`base`) fine-tunes another model, keeping its
tokenizer and shape (reverie.text.finetune). The corpus is read with the run's or the base's
tokenizer and must be the same on every rank, and for a resumed run the text it was trained on.
Rank 0 holds the run's lock (reverie.text.runlock.RunLock) for the block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reverie import distributed
from reverie.distributed import Ranks
from reverie.errors import require
from reverie.options import resolve
from reverie.text import checkpointing, rundir
from reverie.text.corpus import TokenizedCorpus, load_corpus
from reverie.text.finetune import Base, finetune_options, load_base
from reverie.text.options import TrainOptions
from reverie.text.rundir import RunConfig
from reverie.text.runlock import RunLock
from reverie.text.tokenizer import Tokenizer


@dataclass
class Start:
    """What a run starts from: its corpus, its resolved options, and the run it resumes or the base
    it fine-tunes (at most one)."""

    out: Path
    where: Ranks
    corpus: TokenizedCorpus
    options: TrainOptions
    saved: RunConfig | None
    base: Base | None

    def proceed(self, finished: str | None) -> None:
        """Once the Trainer is prepared (so a refused run leaves the old one as it was): refuse to
        resume a run whose budget is spent (`finished`), or clear the run --overwrite replaces."""
        if self.saved is not None:
            require(
                finished is None,
                f"the run in {self.out} already reached its budget ({finished}); pass a larger --epochs, "
                "--steps, --minutes or --patience with --resume to train on",
            )
        elif self.options.overwrite and self.where.is_main:
            rundir.clear_run(self.out)


@contextlib.contextmanager
def opened(sources: list[str], out: Path, where: Ranks, options: dict[str, Any]) -> Iterator[Start]:
    """The run in `out`, locked for the block, and what it starts from."""
    require(not out.exists() or out.is_dir(), f"--out {out} is a file; pass a directory for the run")
    resume = bool(options.get("resume"))
    if not resume:
        resolve(TrainOptions, options)  # bad options are refused before anything is read or written
    lock = RunLock(out)  # rank 0's: it alone writes the run
    distributed.share_from_main(lambda: _lock(lock, out, resume))  # a refusal reaches every rank
    try:
        yield _start(sources, out, where, options, resume)
    finally:
        lock.release()


def _lock(lock: RunLock, out: Path, resume: bool) -> bytes:
    if not resume or out.is_dir():  # resuming a missing folder: RunConfig.load says so
        lock.acquire()
    return b""


def _start(sources: list[str], out: Path, where: Ranks, options: dict[str, Any], resume: bool) -> Start:
    saved: RunConfig | None = None
    saved_options: TrainOptions | None = None
    if resume:
        saved, saved_options = checkpointing.saved_run(out, where.world_size)
    else:
        overwrite = bool(options.get("overwrite"))
        distributed.share_from_main(lambda: rundir.check_new_run(out, overwrite) or b"")
    base: Base | None = None
    if saved is None and options.get("base"):
        base = load_base(str(options["base"]))
        options = finetune_options(base, options)
    resolved = resolve(TrainOptions, options, start=saved_options)
    corpus = _read_corpus(sources, resolved, where, saved, base)
    if saved is not None:
        trained_on = saved.corpus.fingerprint if saved.corpus is not None else None
        require(
            corpus.fingerprint == trained_on,
            f"--resume with a different corpus: {' '.join(sources)} is not the text the run in {out} was "
            "trained on; pass the same corpus, or train a new run into another --out",
        )
    return Start(out, where, corpus, resolved, saved, base)


def _read_corpus(
    sources: list[str], options: TrainOptions, where: Ranks, saved: RunConfig | None, base: Base | None
) -> TokenizedCorpus:
    """The corpus as token ids, with a new tokenizer or the resumed run's or the base's, checked
    to be the same on every rank."""
    tokenizer: Tokenizer | None = saved.tokenizer if saved is not None else None
    if base is not None:
        tokenizer = base.config.tokenizer

    def read() -> TokenizedCorpus:
        if tokenizer is None:
            return load_corpus(
                sources,
                options.level,
                options.lower,
                options.max_vocab,
                options.encoding,
                options.errors,
                progress=options.progress,
            )
        return load_corpus(
            sources,
            encoding=options.encoding,
            errors=options.errors,
            tokenizer=tokenizer,
            vocabulary_of=None if base is None else f"the base model {base.name}",
            progress=options.progress,
        )

    # a named corpus is downloaded, a big one encoded into the cache, once per machine
    corpus = distributed.local_first(where, read)
    distributed.check_same(
        f"{corpus.fingerprint} {len(corpus.ids)} {corpus.tokenizer.to_json()}",
        "corpus (its files, their bytes, or the settings that tokenize them)",
        "give every process the same corpus files",
    )
    return corpus
