"""Optimizers: AdamW equals torch's, the state survives a checkpoint, and no torch._dynamo import."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from reverie import checkpoint
from reverie.text.optim import AdamW


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
