"""Training on two processes (gloo, spawned on 127.0.0.1): the ranks stay identical, match one
process trained on the same global batch step by step, and a run resumes across world sizes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY
from helpers import launch_ranks, run_ranks, shakespeare_slice
from safetensors.torch import load_file

from reverie.errors import ReverieError
from reverie.text import rundir
from reverie.text.ddp import per_rank_batch_size
from reverie.text.train import Trainer, train

TIMEOUT_S = 120  # a hard bound on the spawned processes; they take a few seconds

# Runs train() and saves the parameters after every step to PREFIX{rank}.safetensors.
WORKER = """
import json, sys, torch
from safetensors.torch import save_file
from reverie.distributed import ranks
from reverie.text.train import Trainer, train

snapshots = []
step = Trainer.train_step

def recording(self, inputs, targets):
    loss = step(self, inputs, targets)
    snapshots.append(torch.cat([p.detach().flatten() for p in self.run.model.parameters()]))
    return loss

Trainer.train_step = recording
corpus, out, options, prefix = sys.argv[1:]
train(corpus, out, **json.loads(options))
save_file({"params": torch.stack(snapshots)}, f"{prefix}{ranks().rank}.safetensors")
"""


def run_two(corpus: Path, out: Path, options: dict, prefix: Path) -> list[torch.Tensor]:
    """Train on two spawned processes; the parameters after each step, for each rank."""
    run_ranks(["-c", WORKER, str(corpus), str(out), json.dumps(options), str(prefix)], 2, TIMEOUT_S)
    return [load_file(f"{prefix}{rank}.safetensors")["params"] for rank in range(2)]


def run_one(corpus: Path, out: Path, options: dict, monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Train in this process; the parameters after each step."""
    snapshots: list[torch.Tensor] = []
    step = Trainer.train_step

    def recording(self, inputs, targets):
        loss = step(self, inputs, targets)
        snapshots.append(torch.cat([p.detach().flatten() for p in self.run.model.parameters()]))
        return loss

    monkeypatch.setattr(Trainer, "train_step", recording)
    train(str(corpus), out, **options)
    monkeypatch.undo()
    return snapshots


def train_losses(run: Path) -> list[float]:
    return [r["train_loss"] for r in rundir.read_metrics(run / rundir.METRICS) if r["train_loss"] is not None]


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # float sums in another order (two half-batch means averaged, against one mean)
    return torch.allclose(a, b, rtol=1e-4, atol=2e-6)


# constant learning rate: a cosine schedule would follow each session's --steps budget
BASE = {**TINY, "schedule": "constant", "dropout": 0.0, "val_fraction": 0.1, "seed": 3, "warmup_steps": 2}
TRANSFORMER = {key: value for key, value in BASE.items() if key != "seq_len"}  # it trains on --context
CASES = {
    "stream": {**BASE, "batch_size": 8},  # LSTM, its state carried from step to step
    # conv model, 75 windows in global batches of 14: the 6th step is a short one of 5 windows
    # (3 on rank 0, 2 on rank 1, weighted) and the 7th starts the next epoch
    "windows": {
        **BASE,
        "model": "conv",
        "layers": 2,
        "batching": "windows",
        "window_step": 96,
        "batch_size": 7,
    },
    # a transformer: windows at random starts, drawn per step for the global batch
    "random": {
        **TRANSFORMER,
        "model": "transformer",
        "heads": 4,
        "hidden": 32,
        "context": 16,
        "batch_size": 4,
    },
}


@pytest.mark.parametrize("batching, first, then", [("stream", 2, 1), ("windows", 1, 2), ("random", 2, 1)])
def test_two_ranks_equal_one_process_and_resume_across_world_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batching: str, first: int, then: int
):
    """8 steps of one process with batch 2B, against 4 steps on `first` processes (batch B each on
    two) resumed to 8 on `then` processes: the same parameters after every step."""
    corpus = shakespeare_slice(tmp_path / "s.txt", 8_000)
    options = CASES[batching]
    per_rank = options["batch_size"]
    reference = run_one(
        corpus, tmp_path / "whole", {**options, "batch_size": 2 * per_rank, "steps": 8}, monkeypatch
    )
    if batching == "windows":
        state = json.loads((tmp_path / "whole" / rundir.CONFIG).read_text())["state"]
        assert (state["steps_per_epoch"], state["epoch"]) == (6, 1)

    run, snapshots = tmp_path / "split", []
    for processes, options_now in (
        (first, {**options, "steps": 4}),
        (then, {"steps": 8, "resume": True, "progress": False}),
    ):
        if processes == 2:
            rank0, rank1 = run_two(corpus, run, options_now, tmp_path / f"params{len(snapshots)}-")
            assert torch.equal(rank0, rank1)  # DDP keeps the replicas bitwise identical
            snapshots += list(rank0)
        else:
            if not options_now.get("resume"):
                options_now = {**options_now, "batch_size": 2 * per_rank}
            snapshots += run_one(corpus, run, options_now, monkeypatch)
    assert len(snapshots) == len(reference) == 8
    for step, (ours, theirs) in enumerate(zip(snapshots, reference), start=1):
        assert close(ours, theirs), f"step {step}"

    config = json.loads((run / rundir.CONFIG).read_text())
    assert config["state"]["step"] == 8 and config["state"]["world_size"] == then
    assert config["options"]["batch_size"] * then == 2 * per_rank  # the global batch is kept
    assert len(config["state"]["rng_ranks"]) == then - 1  # every rank's RNG state is saved
    assert all(abs(a - b) < 1e-5 for a, b in zip(train_losses(run), train_losses(tmp_path / "whole")))
    assert len(train_losses(run)) == 8


def test_ranks_that_read_different_corpora_all_stop_with_one_line(tmp_path: Path):
    """Equal vocabularies would train silently on different text; different lengths would fall out
    of step and hang: rank 0's corpus is the one every rank must have."""
    text = shakespeare_slice(tmp_path / "a.txt", 8_000).read_text()
    (tmp_path / "corpus0.txt").write_text(text)
    (tmp_path / "corpus1.txt").write_text(text[::-1])  # the same characters, another text
    script = (
        "import os, sys; from reverie.cli import main; "
        "main(['train', sys.argv[1] + os.environ['RANK'] + '.txt', '--out', sys.argv[2], '--steps', '2', "
        "'--device', 'cpu', '--hidden', '8', '--layers', '1', '--no-progress', '--sample-temperatures'])"
    )
    results = launch_ranks(["-c", script, str(tmp_path / "corpus"), str(tmp_path / "run")], 2, TIMEOUT_S)
    for code, _, err in results:
        assert code == 2, err[-2000:]
        assert "rank(s) 1 of 2 do not have rank 0's corpus" in err and err.count("\n") == 1, err[-2000:]
    assert not (tmp_path / "run").exists()


# rank 0 alone is asked to stop (its on_step sets its stop= event after step 2)
STOPPER = """
import json, sys, threading
from reverie.distributed import ranks
from reverie.text.train import train

corpus, out, options = sys.argv[1:]
stop = threading.Event()
on_step = lambda step, loss: stop.set() if ranks().rank == 0 and step == 2 else None
result = train(corpus, out, on_step=on_step, stop=stop, **json.loads(options))
print("RESULT", json.dumps([result.step, result.stop_reason]))
"""


def test_a_stop_on_one_rank_stops_every_rank_at_the_same_step_with_a_run_that_resumes(tmp_path: Path):
    corpus = shakespeare_slice(tmp_path / "s.txt", 8_000)
    run = tmp_path / "run"
    options = {**CASES["stream"], "steps": 20}
    outputs = run_ranks(["-c", STOPPER, str(corpus), str(run), json.dumps(options)], 2, TIMEOUT_S)
    results = [json.loads(out.split("RESULT ", 1)[1]) for out in outputs]
    # the ranks agree after each step: rank 0's stop, set after step 2, ends step 3 on both
    assert results == [[3, "interrupted"], [3, "interrupted"]]
    state = json.loads((run / rundir.CONFIG).read_text())["state"]
    assert state["step"] == 3 and len(state["rng_ranks"]) == 1
    assert train(str(corpus), run, resume=True, steps=5, progress=False).step == 5


def test_a_resumed_run_keeps_its_global_batch():
    # a run of batch 6 on 2 processes: global batch 12
    assert per_rank_batch_size(6, 2, 1, Path("run")) == 12
    assert per_rank_batch_size(6, 2, 4, Path("run")) == 3
    with pytest.raises(ReverieError, match="global batch of 12 sequences, which 5 processes cannot share"):
        per_rank_batch_size(6, 2, 5, Path("run"))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
