"""Optimizers and schedule: AdamW equals torch's, Keras's RMSprop update, warmup and decay, the state
survives a checkpoint, no torch._dynamo import, and per-layer rates (--layer-lr)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from helpers import shakespeare_slice

from reverie import checkpoint
from reverie.text.language_model import ModelConfig
from reverie.text.models import build_model
from reverie.text.optim import AdamW, KerasRMSprop, build_optimizer, layer_depth, learning_rate
from reverie.text.options import TrainOptions


def two_groups(seed: int = 0) -> tuple[torch.nn.Module, list[dict]]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    matrices = [p for p in model.parameters() if p.dim() == 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    return model, [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}]


def train_steps(model: torch.nn.Module, optimizer, steps: range) -> None:
    for step in steps:
        inputs = torch.randn(5, 4, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        model(inputs).square().mean().backward()
        for group in optimizer.param_groups:
            group["lr"] = 0.01 * (1 + step % 3)  # the schedule changes lr between steps
        optimizer.step()


def test_adamw_equals_torch_adamw():
    ours, groups = two_groups()
    reference, reference_groups = two_groups()
    train_steps(ours, AdamW(groups, lr=0.01, betas=(0.9, 0.99)), range(6))
    train_steps(reference, torch.optim.AdamW(reference_groups, lr=0.01, betas=(0.9, 0.99)), range(6))
    for mine, theirs in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)


def test_state_survives_a_checkpoint_round_trip():
    whole, groups = two_groups()
    train_steps(whole, AdamW(groups, lr=0.01), range(6))

    first, groups = two_groups()
    optimizer = AdamW(groups, lr=0.01)
    train_steps(first, optimizer, range(3))
    structure, tensors = checkpoint.split_tensors(optimizer.state_dict(), "optimizer")
    restored = checkpoint.join_tensors(json.loads(json.dumps(structure)), tensors)
    second, groups = two_groups(seed=1)  # other weights, then the first model's
    second.load_state_dict(first.state_dict())
    resumed = AdamW(groups, lr=0.5, weight_decay=0.0)  # hyperparameters come from the state
    resumed.load_state_dict(restored)
    assert resumed.param_groups[0]["weight_decay"] == 0.1 and resumed.param_groups[1]["weight_decay"] == 0.0
    train_steps(second, resumed, range(3, 6))
    for a, b in zip(second.parameters(), whole.parameters()):
        assert torch.equal(a, b)


def test_training_does_not_import_the_compiler(tmp_path):
    # torch.optim's base class imports torch._dynamo: ~75 MB of peak memory in a training run
    corpus = tmp_path / "c.txt"
    corpus.write_text("to be or not to be, that is the question. " * 200)
    script = (
        "import sys, reverie\n"
        f"reverie.train({str(corpus)!r}, {str(tmp_path / 'run')!r}, steps=3, hidden=16, seq_len=8, "
        "batch_size=4, progress=False, sample_temperatures=())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_keras_rmsprop_matches_the_keras_update():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.0]))
    optimizer = KerasRMSprop([weight], lr=0.01)
    velocity, expected = torch.zeros(3), weight.detach().clone()
    for grad in (torch.tensor([0.5, -1e-4, 0.0]), torch.tensor([0.1, 2.0, 1e-6])):
        weight.grad = grad.clone()
        optimizer.step()
        velocity = 0.9 * velocity + 0.1 * grad**2
        expected = expected - 0.01 * grad / torch.sqrt(velocity + 1e-7)
    assert torch.allclose(weight.detach(), expected, rtol=0, atol=1e-7)


def test_learning_rate_warms_up_then_decays():
    options = TrainOptions(lr=1.0, warmup_steps=10)
    assert learning_rate(options, 0, 0.0) == pytest.approx(0.1)
    assert learning_rate(options, 9, 0.0) == pytest.approx(1.0)
    assert learning_rate(options, 100, 0.5) == pytest.approx(0.55)
    assert learning_rate(options, 200, 1.0) == pytest.approx(0.1)
    constant = TrainOptions(lr=0.01, warmup_steps=0, schedule="constant")
    assert learning_rate(constant, 0, 0.0) == learning_rate(constant, 999, 1.0) == 0.01


def test_layer_depth_counts_from_the_input():
    assert [
        layer_depth(name, 2)
        for name in ("embedding.weight", "rnn.weight_ih_l0", "rnn.bias_hh_l1", "head.bias")
    ] == [0, 1, 2, 3]
    assert [
        layer_depth(name, 2)
        for name in ("tokens.weight", "blocks.0.mlp.0.weight", "blocks.1.norm1.bias", "norm.weight")
    ] == [0, 1, 2, 3]
    assert [layer_depth(name, 3) for name in ("inp.weight", "blocks.2.conv.weight", "ahead.0.weight")] == [
        0,
        3,
        4,
    ]


def test_layer_lr_scales_each_layer_below_the_top():
    options = TrainOptions(model=ModelConfig(kind="lstm", hidden=8, layers=2, vocab_size=11), layer_lr=0.5)
    model = build_model(dataclasses.replace(options.model, vocab_size=11))
    optimizer = build_optimizer(model, options)
    names = {id(param): name for name, param in model.named_parameters()}
    scales = {names[id(p)]: group["lr_scale"] for group in optimizer.param_groups for p in group["params"]}
    assert scales["head.weight"] == scales["head.bias"] == 1.0
    assert scales["rnn.weight_hh_l1"] == 0.5 and scales["rnn.weight_hh_l0"] == 0.25
    assert scales["embedding.weight"] == 0.125
    decays = {
        names[id(p)]: group["weight_decay"] for group in optimizer.param_groups for p in group["params"]
    }
    assert decays["rnn.weight_hh_l0"] == options.weight_decay and decays["rnn.bias_hh_l0"] == 0.0
    # at 1 the groups are the two they always were (a run saved before resumes with its state)
    plain = build_optimizer(model, dataclasses.replace(options, layer_lr=1.0))
    assert [group["weight_decay"] for group in plain.param_groups] == [options.weight_decay, 0.0]
    assert [group["lr_scale"] for group in plain.param_groups] == [1.0, 1.0]


def test_layer_lr_zero_trains_only_the_output_layer(tiny_run, tmp_path):
    import reverie
    from reverie.text import rundir

    text = tmp_path / "more.txt"
    text.write_text(
        shakespeare_slice(tmp_path / "s.txt").read_text(encoding="utf-8")[:8000], encoding="utf-8"
    )
    out = tmp_path / "run"
    reverie.train(
        str(text), out, base=str(tiny_run), steps=5, layer_lr=0.0, progress=False, sample_temperatures=()
    )
    base = rundir.RunConfig.load(tiny_run).load_tensors(tiny_run, rundir.BEST)  # where it starts
    tuned = rundir.RunConfig.load(out).load_tensors(out, rundir.MODEL)
    changed = sorted(name for name in base if not torch.equal(base[name], tuned[name]))
    assert changed == ["head.bias", "head.weight"]


def test_layer_lr_scales_rmsprop_s_rates_too():
    options = TrainOptions(
        model=ModelConfig(kind="gru", hidden=8, layers=1, vocab_size=11), optimizer="rmsprop"
    )
    model = build_model(dataclasses.replace(options.model, vocab_size=11))
    plain = build_optimizer(model, options)
    assert isinstance(plain, KerasRMSprop) and len(plain.param_groups) == 1  # the book's, as it was
    assert plain.param_groups[0]["params"] == list(model.parameters())
    scaled = build_optimizer(model, dataclasses.replace(options, layer_lr=0.25))
    assert sorted(group["lr_scale"] for group in scaled.param_groups) == [0.0625, 0.25, 1.0]
