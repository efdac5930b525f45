"""The transformer: causal, its KV-cached steps equal a full recompute of the window it sees (past the
context too), tied weights, and it trains and generates through every entry point."""

from __future__ import annotations

import pytest
import torch

from reverie.errors import ReverieError
from reverie.text.language_model import ModelConfig
from reverie.text.models import build_model
from reverie.text.sampling import SamplingOptions, generate_tokens

VOCAB, CONTEXT = 13, 8


def tiny(positions: str = "rotary", **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {"kind": "transformer", "vocab_size": VOCAB, "hidden": 32, "heads": 4, "layers": 2}
    return build_model(ModelConfig(**{**options, "context": CONTEXT, "positions": positions, **overrides}))


@pytest.mark.parametrize("positions", ["rotary", "learned"])
def test_a_token_never_sees_the_tokens_after_it(positions):
    model = tiny(positions).eval()
    tokens = torch.randint(VOCAB, (2, CONTEXT), generator=torch.Generator().manual_seed(1))
    changed = tokens.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(tokens)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


class Recorder(torch.nn.Module):
    """The model, keeping the logits of the prefill and of every step."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model, self.config, self.logits = model, model.config, []

    def prefill(self, tokens, state=None):
        logits, state = self.model.prefill(tokens, state)
        self.logits.append(logits)
        return logits, state

    def repeat_state(self, state, times):
        return self.model.repeat_state(state, times)

    def stepper(self, state):
        step = self.model.stepper(state)

        def recorded(tokens):
            logits = step(tokens)
            self.logits.append(logits)
            return logits

        return recorded


@pytest.mark.parametrize("positions", ["rotary", "learned"])
@pytest.mark.parametrize("streams", [1, 3])
def test_kv_cached_logits_equal_a_full_recompute_of_the_window_past_the_context(positions, streams):
    """Generate 5 x the context; each step's logits equal the model run from scratch on the tokens it
    sees: those since the last re-run of the cache (from the last context / 2 when it was full)."""
    model = tiny(positions).eval()
    recorder = Recorder(model)
    prompt, length = [3, 1, 4], 5 * CONTEXT
    options = SamplingOptions.of(temperature=1.0, length=length, num_samples=streams, seed=0)
    tokens = torch.stack(list(generate_tokens(recorder, prompt, options)), dim=1)
    assert len(recorder.logits) == length
    seen = len(prompt)  # tokens in the window when the prefill's logits were made
    with torch.no_grad():
        for index, logits in enumerate(recorder.logits):
            if index:  # a step: the window may be re-run from its last half, then takes one token
                seen = CONTEXT // 2 if seen >= CONTEXT else seen
                seen += 1
            end = len(prompt) + index  # tokens before the one these logits predict
            for row in range(streams):
                full = torch.tensor(prompt + tokens[row].tolist())
                window = full[end - seen : end][None]
                expected = model(window)[0][0, -1]
                torch.testing.assert_close(
                    logits[min(row, logits.shape[0] - 1)], expected, atol=1e-5, rtol=1e-5
                )
    assert seen <= CONTEXT


def test_the_output_layer_is_the_token_embedding_and_the_count_is_exact():
    model = tiny()
    assert model.logits(torch.eye(32)[:1]).shape == (1, VOCAB)
    assert (
        model.tokens.weight.data_ptr()
        == next(p for n, p in model.named_parameters() if n == "tokens.weight").data_ptr()
    )
    assert model.config.num_parameters() == model.num_parameters()
    learned = tiny("learned")
    assert learned.config.num_parameters() == learned.num_parameters()


def test_a_width_the_heads_cannot_share_is_refused():
    with pytest.raises(ReverieError, match="--hidden 30 must be a multiple of --heads 4"):
        tiny(hidden=30)
    with pytest.raises(ReverieError, match="even quotient"):
        tiny(hidden=36, heads=12)  # 3 per head: rotary positions need pairs


# ---- training and the entry points -------------------------------------------------------------------

TINY_TRANSFORMER = {
    "model": "transformer",
    "hidden": 32,
    "heads": 4,
    "layers": 2,
    "context": 32,
    "batch_size": 8,
    "dtype": "float32",
    "device": "cpu",
    "warmup_steps": 5,
    "lr": 3e-3,
    "progress": False,
    "sample_temperatures": (),
}


def test_a_transformer_trains_and_generates_through_the_api_and_the_command_line(tmp_path, capsys):
    import json

    from helpers import run_cli, shakespeare_slice

    import reverie

    corpus = str(shakespeare_slice(tmp_path / "s.txt", 20_000))
    result = reverie.train(corpus, tmp_path / "run", steps=80, sample_every=40, **TINY_TRANSFORMER)
    losses = [
        r["val_loss"]
        for r in reverie.text.rundir.read_metrics(tmp_path / "run" / "metrics.csv")
        if r["val_loss"]
    ]
    assert losses[1] < losses[0] < 4.2 and result.val_loss == losses[-1]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["kind"] == "transformer" and config["options"]["batching"] == "random"
    model = reverie.load(tmp_path / "run")
    text = model.generate("ROMEO:", length=100, seed=0)  # past the 32-token context: the cache re-runs
    assert len(text) == 100 and model.generate("ROMEO:", length=100, seed=0) == text
    assert len(model.generate_batch("", num_samples=3, length=40, seed=1)) == 3
    code, out, err = run_cli(
        ["generate", str(tmp_path / "run"), "--prompt", "ROMEO:", "--length", "50"], capsys
    )
    assert code == 0 and out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 50 + 1, err


def test_a_resumed_transformer_run_is_the_same_run(tmp_path):
    import torch
    from helpers import shakespeare_slice, stored_file

    from reverie.checkpoint import load_tensors
    from reverie.text.train import train

    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    options = {**TINY_TRANSFORMER, "dropout": 0.1, "steps": 12}
    whole = train(corpus, tmp_path / "whole", **options)

    def interrupt(step, loss):
        if step == 5:
            raise KeyboardInterrupt

    assert train(corpus, tmp_path / "split", on_step=interrupt, **options).step == 5
    second = train(corpus, tmp_path / "split", resume=True, progress=False)
    assert second.step == 12 and second.train_loss == whole.train_loss
    a, b = (load_tensors(stored_file(tmp_path / run, "model")) for run in ("whole", "split"))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_seq_len_is_refused_for_a_transformer_and_compile_without_a_compiler(tmp_path, monkeypatch):
    import shutil

    from reverie.options import resolve
    from reverie.text.options import TrainOptions
    from reverie.text.train import train

    with pytest.raises(ReverieError, match="a transformer trains on windows of --context tokens"):
        resolve(TrainOptions, {"model": "transformer", "seq_len": 64})
    assert (
        resolve(TrainOptions, {"model": "transformer"}).window
        == resolve(TrainOptions, {"model": "transformer"}).model.context
    )
    monkeypatch.setattr(shutil, "which", lambda name: None)
    from helpers import shakespeare_slice

    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    with pytest.raises(ReverieError, match="--compile needs a C\\+\\+ compiler"):
        train(corpus, tmp_path / "run", steps=2, compile=True, **TINY_TRANSFORMER)
