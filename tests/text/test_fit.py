"""The model a run starts from (reverie.text.fit): its output bias started at the training text's
token frequencies, and dropout fitted to the budget: the rule's values, the epochs a budget buys, and
a run given no --dropout: it takes the rule's dropout for its epochs (or for its minutes at the step
time measured), trains exactly as the same run given that --dropout, keeps it on resume, and a given
--dropout always wins."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from helpers import shakespeare_slice

from reverie.checkpoint import load_tensors
from reverie.distributed import Ranks
from reverie.options import build
from reverie.text import fit, rundir
from reverie.text.batches import make_batches
from reverie.text.models import build_model
from reverie.text.options import TrainOptions
from reverie.text.train import train

UNFITTED = {key: value for key, value in TINY.items() if key != "dropout"}


def test_the_rule_by_epochs():
    epochs = (0.5, 3.0, 3.5, 3.51, 4.5, 4.51, 6.1, 1e6)
    assert [fit.dropout_for(e) for e in epochs] == [0, 0, 0, 0.1, 0.1, 0.2, 0.2, 0.2]


def test_the_epochs_a_budget_buys_are_its_first_limit():
    assert fit.planned_epochs(10, None, None, 100, None) == 10
    assert fit.planned_epochs(10, 250, None, 100, None) == 2.5
    # 5 minutes at 50 ms a step (57.5 ms with the overhead of a whole step), 1,000 steps an epoch
    assert fit.planned_epochs(None, None, 5, 1000, 0.05) == pytest.approx(300 / 0.0575 / 1000)
    assert fit.planned_epochs(None, None, None, 1000, None) == math.inf


def test_only_a_budget_in_minutes_times_a_step_and_other_models_keep_zero(monkeypatch):
    calls = []
    monkeypatch.setattr(fit, "_timed", lambda run: calls.append(run) or 0.05)
    by_epochs = fit.fit_dropout("lstm", 4, None, None, 1000, lambda: None)
    assert (by_epochs.dropout, calls) == (0.1, [])
    by_minutes = fit.fit_dropout("gru", None, None, 5, 1000, lambda: None)  # 5.2 epochs
    assert by_minutes.dropout == 0.2 and len(calls) == fit.TIMED_STEPS
    assert "5.2 epochs" in by_minutes.reason and "57 ms a step" in by_minutes.reason
    assert fit.fit_dropout("transformer", 20, None, None, 1000, lambda: None).dropout == 0.0
    assert fit.fit_dropout("conv", None, None, 60, 1000, lambda: None).dropout == 0.0


def saved(run: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    config = json.loads((run / rundir.CONFIG).read_text())
    return config, load_tensors(run / config["files"]["model"]["path"])


def test_a_run_given_no_dropout_takes_the_rules_and_equals_the_run_given_it(tmp_path, capsys):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    train(corpus, tmp_path / "fitted", epochs=9, **UNFITTED)
    assert "reverie: --dropout 0.2 for a budget of about 9.0 epochs" in capsys.readouterr().err
    config, weights = saved(tmp_path / "fitted")
    assert config["options"]["dropout"] == 0.2 and config["model"]["dropout"] == 0.2
    train(corpus, tmp_path / "given", epochs=9, **{**UNFITTED, "dropout": 0.2})
    assert "--dropout" not in capsys.readouterr().err  # given: nothing chosen
    given_config, given_weights = saved(tmp_path / "given")
    assert given_config["state"]["step"] == config["state"]["step"]
    assert all(torch.equal(weights[name], given_weights[name]) for name in weights)

    train(corpus, tmp_path / "fitted", resume=True, epochs=10, progress=False)  # keeps its dropout
    assert "--dropout" not in capsys.readouterr().err
    assert saved(tmp_path / "fitted")[0]["options"]["dropout"] == 0.2

    train(corpus, tmp_path / "short", steps=20, **UNFITTED)  # about 1.4 epochs: no dropout
    assert saved(tmp_path / "short")[0]["options"]["dropout"] == 0.0
    train(corpus, tmp_path / "zero", epochs=9, **{**UNFITTED, "dropout": 0.0})  # a given 0 wins
    assert saved(tmp_path / "zero")[0]["options"]["dropout"] == 0.0


def test_a_budget_in_minutes_is_turned_into_epochs_by_the_measured_step_time(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fit, "_timed", lambda run: run() and 0.5 or 0.5)  # runs the step, says 0.5 s
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    train(corpus, tmp_path / "run", minutes=0.5, steps=150, **UNFITTED)
    config, _ = saved(tmp_path / "run")
    steps_per_epoch = config["state"]["steps_per_epoch"]
    by_minutes = 30 / (0.5 * fit.STEP_OVERHEAD) / steps_per_epoch
    assert by_minutes < 4.5 < 150 / steps_per_epoch  # the minutes decide: their epochs, not the steps'
    assert config["options"]["dropout"] == fit.dropout_for(by_minutes) == 0.1
    assert (
        f"{by_minutes:.1f} epochs (about {0.5 * fit.STEP_OVERHEAD * 1e3:.0f} ms a step here"
        in capsys.readouterr().err
    )


def test_a_run_starts_its_output_bias_at_the_training_texts_token_frequencies(tmp_path):
    """--output-bias unigram (the default): the first loss is about the text's unigram entropy, far
    below a uniform guess; --output-bias init leaves the weights --init gives, bit for bit."""
    corpus = tmp_path / "s.txt"
    corpus.write_text("abracadabra " * 200 + "zzzz")
    options = build(TrainOptions, {**TINY, "level": "byte", "val_fraction": 0.1})
    ids = np.frombuffer(corpus.read_bytes(), dtype=np.uint8).astype(np.int64)
    train_ids = ids[: int(len(ids) * 0.9)]
    batches = make_batches(options, train_ids)
    config = dataclasses.replace(options.model, vocab_size=256)
    cpu, alone = torch.device("cpu"), Ranks()
    unigram = fit.fitted_model(options, 256, batches, cpu, alone).model
    counts = np.bincount(train_ids, minlength=256)
    expected = torch.tensor((counts + 1) / (counts.sum() + 256)).log().float()
    assert torch.allclose(unigram.head.bias, expected)
    inputs, targets = next(iter(batches.epoch(0)))
    logits, _ = unigram(inputs)
    entropy = -(counts / counts.sum() * np.log(np.maximum(counts, 1) / counts.sum())).sum()
    first_loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
    assert abs(first_loss - entropy) < 0.2 < math.log(256) - first_loss  # ln 256 = 5.55, entropy 1.53

    plain = fit.fitted_model(dataclasses.replace(options, output_bias="init"), 256, batches, cpu, alone).model
    torch.manual_seed(options.seed)
    built = build_model(config)
    assert all(torch.equal(p, q) for p, q in zip(plain.state_dict().values(), built.state_dict().values()))
    assert not torch.equal(plain.head.bias, unigram.head.bias)
    assert TrainOptions.PRESETS["book"]["output_bias"] == "init"  # the book's Keras zeros, exactly
