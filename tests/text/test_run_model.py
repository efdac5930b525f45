"""A run's model lives in one place: a resumed run takes its checkpoint's (a different one asked for
is refused in one line), a fine-tuning run its base's, and config.json's options, flat by the names
reverie.train takes, read back the same from runs written before options.model was nested."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import TINY
from helpers import shakespeare_slice, stored_file

import reverie
from reverie.errors import ReverieError
from reverie.options import resolve
from reverie.text import checkpointing, pretrained, rundir
from reverie.text.finetune import finetune_options, load_base
from reverie.text.options import TrainOptions

# config.json's "options" as runs wrote them before options.model was nested (the shipped models'):
# the model's options among the others in TrainOptions' old order, no predict or output_bias
OLD_ORDER = ["model", "layers", "hidden", "embed", "dropout", "kernel_size", "init", "heads", "context"]
OLD_ORDER += ["positions"]


def short_run(tmp_path: Path, name: str) -> tuple[str, Path]:
    """(the corpus, a run of 3 steps of the tiny model on it)."""
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    reverie.train(corpus, tmp_path / name, **{**TINY, "steps": 3})
    return corpus, tmp_path / name


def shape(config: rundir.RunConfig) -> object:
    """The model a run's options hold: its checkpoint's, the vocabulary left to the corpus."""
    return dataclasses.replace(config.model, vocab_size=None)


def test_new_runs_write_their_options_flat_as_reverie_train_takes_them(tiny_run: Path):
    written = json.loads((tiny_run / rundir.CONFIG).read_text())
    config = rundir.RunConfig.load(tiny_run, training=True)
    assert written["options"]["hidden"] == written["model"]["hidden"] == 32
    assert written["options"]["model"] == "lstm" and "vocab_size" not in written["options"]
    assert config.options.model == shape(config)
    again = resolve(TrainOptions, written["options"])  # as reverie.train's keywords: the same run
    assert (again.model, again.seq_len, again.lr) == (config.options.model, 32, config.options.lr)


def test_resume_takes_the_checkpoints_model_and_refuses_another_in_one_line(tmp_path: Path):
    corpus, run = short_run(tmp_path, "run")
    with pytest.raises(ReverieError) as refused:
        reverie.train(corpus, run, resume=True, steps=4, hidden=64, layers=1)
    message = str(refused.value)
    assert message.startswith("--resume with a different model: --hidden 64 but the run in progress has 32")
    assert "\n" not in message and "--layers" not in message  # the options that differ, and only them
    with pytest.raises(ReverieError, match=r"^--resume with a different model: --dropout 0.3 but the run"):
        reverie.train(corpus, run, resume=True, steps=4, dropout=0.3)  # not its shape: its model still
    # the model is the checkpoint's: its own options' copy of it is not what decides
    path = run / rundir.CONFIG
    written = json.loads(path.read_text())
    written["options"]["hidden"] = 512
    path.write_text(json.dumps(written))
    saved, options = checkpointing.saved_run(run, 1)
    assert options.model == shape(saved) and options.model.hidden == 32
    assert reverie.train(corpus, run, resume=True, steps=4, hidden=32).step == 4
    assert rundir.RunConfig.load(run).model == saved.model


def test_fine_tuning_keeps_the_bases_model(tiny_run: Path):
    base = load_base(str(tiny_run))
    kept = shape(base.config)
    options = resolve(TrainOptions, finetune_options(base, {"base": str(tiny_run), "steps": 5}))
    assert options.model == kept
    with pytest.raises(
        ReverieError, match=f"--from {tiny_run} keeps the base's shape: --hidden 64 but it has 32;"
    ):
        finetune_options(base, {"hidden": 64})
    with pytest.raises(ReverieError, match="keeps the base's shape: --init keras but it has torch"):
        finetune_options(base, {"init": "keras"})
    with pytest.raises(ReverieError, match="keeps the base's tokenizer: --level word"):
        finetune_options(base, {"level": "word"})
    # its dropout a fine-tuning run may choose; an option given as the base has it is no change
    options = resolve(TrainOptions, finetune_options(base, {"dropout": 0.3, "hidden": 32, "model": "lstm"}))
    assert options.model == dataclasses.replace(kept, dropout=0.3)


def test_an_old_flat_config_loads_resumes_and_fine_tunes(tmp_path: Path):
    corpus, run = short_run(tmp_path, "old")
    path = run / rundir.CONFIG
    written = json.loads(path.read_text())
    new = written["options"]
    old = {name: new[name] for name in OLD_ORDER}
    old.update(
        (name, value) for name, value in new.items() if name not in (*OLD_ORDER, "predict", "output_bias")
    )
    assert list(old) != list(new) and set(new) - set(old) == {"predict", "output_bias"}
    written["options"] = old
    path.write_text(json.dumps(written, indent=1))
    config = rundir.RunConfig.load(run, training=True)
    assert config.options.model == shape(config) and config.options.lr == new["lr"]
    weights = stored_file(run, "model").read_bytes()
    assert reverie.train(corpus, run, resume=True, steps=5).step == 5
    assert stored_file(run, "model").read_bytes() != weights
    tuned = reverie.train(
        corpus, tmp_path / "tuned", base=str(run), steps=2, progress=False, sample_temperatures=()
    )
    assert tuned.step == 2 and rundir.RunConfig.load(tmp_path / "tuned").model == config.model


@pytest.mark.parametrize("name", sorted(pretrained.RECIPES))
def test_the_shipped_models_options_read_with_their_model(name: str):
    folder = pretrained.PACKAGE_MODELS / name
    if not rundir.has_run(folder):
        pytest.skip(f"{name} is not built in this checkout")
    config = rundir.RunConfig.load(folder, training=True)
    options = json.loads((folder / rundir.CONFIG).read_text())["options"]
    assert config.options.model == shape(config)
    assert config.options.model.hidden == options["hidden"] and config.options.model.kind == options["model"]
