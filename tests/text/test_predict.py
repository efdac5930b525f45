"""Multi-token prediction (`reverie train --predict N`) and speculative decoding with its extra heads
(`--speculative heads`): the heads learn the tokens after the next, --predict 1 is the model and the
checkpoints of a run without the flag, greedy output with heads drafts is plain greedy output, and
what cannot have heads is refused in one line. (Resuming a --predict run: test_train.py; the
sampled distribution with heads drafts: test_speculative.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from helpers import run_cli, shakespeare_slice, stored_file

from reverie.errors import ReverieError
from reverie.text import rundir, speculative
from reverie.text.batches import training_loss
from reverie.text.generator import load
from reverie.text.language_model import ModelConfig
from reverie.text.models import build_model
from reverie.text.sampling import SamplingOptions, generate_tokens
from reverie.text.train import train

TRANSFORMER = {
    **{name: value for name, value in TINY.items() if name != "seq_len"},
    "model": "transformer",
    "layers": 2,
    "heads": 4,
    "context": 32,
    "lr": 5e-3,
}
MODELS = {"transformer": TRANSFORMER, "lstm": {**TINY, "layers": 2, "hidden": 64, "lr": 1e-2}}
SENTENCES = (
    "the quick brown fox jumps over the lazy dog. ",
    "pack my box with five dozen liquor jugs. ",
    "how vexingly quick daft zebras jump! ",
    "sphinx of black quartz, judge my vow. ",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pangrams in a random order: learned in a few seconds, and greedy text that is not a loop."""
    path = tmp_path_factory.mktemp("predict") / "s.txt"
    order = np.random.default_rng(0).integers(len(SENTENCES), size=600)
    path.write_text("".join(SENTENCES[i] for i in order))
    return path


@pytest.fixture(scope="module")
def predict_runs(corpus: Path) -> dict[str, Path]:
    """A transformer and an LSTM trained briefly with --predict 3."""
    runs = {}
    for kind, options in MODELS.items():
        runs[kind] = corpus.parent / kind
        train(str(corpus), runs[kind], predict=3, steps=60, sample_every=30, **options)
    return runs


def head_losses(model: torch.nn.Module, ids: np.ndarray, length: int = 32, rows: int = 16) -> list[float]:
    """Each head's cross-entropy on the text's tokens it guesses (head j: j tokens after the next),
    and the first head's on the token after the next, last (what the extra heads must beat)."""
    windows = torch.as_tensor(ids[: rows * (length + 1)], dtype=torch.long).view(rows, length + 1)
    with torch.no_grad():
        outputs, _ = model.eval()(windows[:, :-1], ahead=True)

    def score(logits: torch.Tensor, after: int) -> float:  # logits for the tokens `after` on
        return F.cross_entropy(
            logits[:, : length + 1 - after].flatten(0, 1), windows[:, after:].flatten()
        ).item()

    return [score(o, 1 + j) for j, o in enumerate(outputs)] + [score(outputs[0], 2)]


@pytest.mark.parametrize("kind", MODELS)
def test_training_with_predict_3_lowers_the_loss_and_the_heads_learn_what_comes_later(predict_runs, kind):
    run = predict_runs[kind]
    config = json.loads((run / rundir.CONFIG).read_text())
    assert config["model"]["predict"] == 3 and config["options"]["predict"] == 3
    losses = [r["val_loss"] for r in rundir.read_metrics(run / rundir.METRICS) if r["val_loss"] is not None]
    vocab = len(config["tokenizer"]["vocab"])
    assert losses[1] < losses[0] < math.log(vocab)  # the reported loss: the next token's
    generator = load(run, device="cpu")
    assert len(generator.model.ahead) == 2
    assert generator.model.num_parameters() == generator.model.config.num_parameters()
    ids = np.asarray(generator.tokenizer.encode(run.parent.joinpath("s.txt").read_text()[-2000:]))
    _, second, third, next_on_second = head_losses(generator.model, ids)
    assert second < next_on_second - 0.2  # the second head guesses the token after the next better
    assert third < math.log(vocab) - 0.5


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("drafts", ["heads", "lookup"])
def test_greedy_speculation_on_a_trained_model_is_plain_greedy_token_for_token(predict_runs, kind, drafts):
    """Past the transformer's --context 32, where its window is cut and re-read, too."""
    generator = load(predict_runs[kind], device="cpu")
    model, prompt = generator.model.eval(), generator.tokenizer.encode("the quick ")
    plain = [int(t) for t in generate_tokens(model, prompt, SamplingOptions.of(temperature=0, length=120))]
    assert len(set(plain)) >= 5  # not a loop of one token
    tally = speculative.Tally()
    options = SamplingOptions.of(temperature=0, length=120, speculative=drafts)
    assert [int(t) for t in speculative.generate_tokens(model, prompt, options, tally)] == plain
    assert tally.accepted > 0 and tally.tokens_per_pass > 1.0
    if drafts == "heads":
        assert tally.drafted <= 2 * tally.passes
    assert speculative.drafts_of(SamplingOptions.of()) == "off"  # auto: measured slower, so off
    assert speculative.drafts_of(SamplingOptions.of(num_samples=2)) == "off"


def test_generate_speculates_with_heads_from_the_command_line(predict_runs, capsys):
    run = str(predict_runs["transformer"])
    greedy = ["generate", run, "--length", "40", "--temperature", "0", "--speculative"]
    code, out, err = run_cli([*greedy, "heads"], capsys)
    assert code == 0 and out, err
    assert run_cli([*greedy, "off"], capsys)[1] == out
    sampled = ["generate", run, "--length", "40", "--seed", "1", "--speculative", "heads"]
    assert run_cli(sampled, capsys)[1] == run_cli(sampled, capsys)[1]  # a seed repeats its text


def test_heads_on_a_model_without_them_are_refused_in_one_line(tiny_run, capsys):
    model = build_model(ModelConfig(kind="transformer", vocab_size=9, hidden=16, heads=2, layers=1))
    with pytest.raises(ReverieError, match="--predict"):
        speculative.generate_tokens(model, [1, 2], SamplingOptions.of(speculative="heads"))
    code, out, err = run_cli(["generate", str(tiny_run), "--speculative", "heads", "--length", "5"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--predict" in err


def test_predict_on_a_conv_model_or_windows_batching_is_refused_in_one_line(tmp_path, capsys):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 4_000))
    with pytest.raises(ReverieError, match="transformer, lstm, gru"):
        train(corpus, tmp_path / "conv", predict=2, steps=1, **{**TINY, "model": "conv"})
    with pytest.raises(ReverieError, match="transformer, lstm, gru"):
        ModelConfig(kind="conv", vocab_size=9, predict=2).validate()
    out = str(tmp_path / "cli")
    argv = ["train", corpus, "--out", out, "--model", "conv", "--predict", "2", "--steps", "1"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--predict 2 is for the" in err
    code, _, err = run_cli([*argv[:4], "--batching", "windows", *argv[6:]], capsys)
    assert code == 2 and "--batching windows" in err
    assert not (tmp_path / "conv").exists() and not (tmp_path / "cli").exists()


def test_predict_1_is_a_run_without_the_flag_and_an_older_config_loads_as_1(tmp_path, corpus):
    options = {**TINY, "steps": 6, "sample_every": 3}
    train(str(corpus), tmp_path / "before", **options)
    train(str(corpus), tmp_path / "flag", predict=1, **options)
    for role in ("model", "state"):
        before, flag = (stored_file(tmp_path / run, role).read_bytes() for run in ("before", "flag"))
        assert before == flag, role
    configs = [json.loads((tmp_path / run / rundir.CONFIG).read_text()) for run in ("before", "flag")]
    assert configs[0]["model"] == configs[1]["model"] and "predict" not in configs[0]["model"]
    metrics = [(tmp_path / run / rundir.METRICS).read_text() for run in ("before", "flag")]
    assert [line.split(",")[:6] for line in metrics[0].splitlines()] == [
        line.split(",")[:6] for line in metrics[1].splitlines()
    ]
    # a run written before --predict: no "predict" in its options either; it loads and resumes
    path = tmp_path / "before" / rundir.CONFIG
    older = json.loads(path.read_text())
    del older["options"]["predict"]
    path.write_text(json.dumps(older))
    assert load(tmp_path / "before").model.config.predict == 1
    assert train(str(corpus), tmp_path / "before", resume=True, steps=8).step == 8


def test_the_training_loss_sums_the_heads_each_on_the_targets_it_guesses():
    torch.manual_seed(0)
    targets = torch.randint(5, (2, 4))
    outputs = tuple(torch.randn(2, 4, 5) for _ in range(3))
    loss = lambda logits, target: F.cross_entropy(logits.reshape(-1, 5), target.reshape(-1))
    total, main = training_loss(outputs, targets, loss)
    expected = sum(loss(o[:, : 4 - j], targets[:, j:]) for j, o in enumerate(outputs))
    torch.testing.assert_close(total, expected)
    assert main == loss(outputs[0], targets)
    assert training_loss(outputs[0], targets, loss) == (main, main)
