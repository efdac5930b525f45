"""Training: the loss goes down, runs resume exactly, Ctrl-C saves, the book preset is the book's."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import threading
from pathlib import Path

import pytest
import torch
from conftest import TINY
from helpers import shakespeare_slice, snapshot, stored_file

import reverie
from reverie.checkpoint import load_tensors
from reverie.errors import ReverieError
from reverie.text import rundir
from reverie.text.train import train


def train_losses(run: Path) -> list[tuple[int, float]]:
    return [
        (r["step"], r["train_loss"])
        for r in rundir.read_metrics(run / rundir.METRICS)
        if r["train_loss"] is not None
    ]


def val_losses(run: Path) -> list[float]:
    return [r["val_loss"] for r in rundir.read_metrics(run / rundir.METRICS) if r["val_loss"] is not None]


def test_training_lowers_the_validation_loss(tiny_run: Path):
    losses = val_losses(tiny_run)
    vocab = len(json.loads((tiny_run / rundir.CONFIG).read_text())["tokenizer"]["vocab"])
    assert len(losses) == 2  # step 30 and step 60
    assert losses[1] < losses[0] < math.log(vocab)  # below a uniform guess, and still falling
    assert losses[1] < math.log(vocab) - 0.5


def test_run_directory_holds_everything(tiny_run: Path):
    names = {p.name for p in tiny_run.iterdir()}
    latest, best, state = (stored_file(tiny_run, role).name for role in ("model", "best", "state"))
    assert latest == best  # the best validation loss was the last: one file serves both
    assert re.fullmatch(r"weights-[0-9a-f]{16}\.safetensors", latest)
    assert re.fullmatch(r"state-[0-9a-f]{16}\.safetensors", state)
    # no samples asked for, no temporary files or older checkpoints left; .lock is the run's lock
    assert names == {"config.json", latest, state, "metrics.csv", "loss.png", ".lock"}
    assert (tiny_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["format"] == "reverie" and config["model"]["hidden"] == 32
    assert config["state"]["step"] == 60 and config["options"]["seq_len"] == 32
    assert config["state"]["best_val_loss"] == min(val_losses(tiny_run))
    header = (tiny_run / "metrics.csv").read_text().splitlines()[0]
    assert header.split(",")[:6] == ["step", "epoch", "tokens", "lr", "train_loss", "val_loss"]
    assert [step for step, _ in train_losses(tiny_run)] == list(range(1, 61))


def test_samples_at_each_temperature(tmp_path: Path, capsys: pytest.CaptureFixture):
    corpus = shakespeare_slice(tmp_path / "s.txt", 8_000)
    options = {**TINY, "sample_temperatures": (0.2, 1.0), "sample_length": 25, "progress": True}
    train(str(corpus), tmp_path / "run", steps=4, **options)
    text = (tmp_path / "run" / "samples.txt").read_text()
    assert text.count("--- temperature 0.2\n") == 1 and text.count("--- temperature 1\n") == 1
    assert "=== step 4" in text
    assert "--- temperature 0.2" in capsys.readouterr().out  # printed as well


@pytest.mark.parametrize(
    "batching, kind, predict", [("stream", "lstm", 1), ("windows", "conv", 1), ("stream", "gru", 3)]
)
def test_resume_continues_the_same_run(tmp_path: Path, batching: str, kind: str, predict: int):
    """N steps, Ctrl-C, resume for M: the same weights, optimizer state and losses as N + M at once
    (with --predict 3: the extra heads' weights too)."""
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    options = {
        **TINY,
        "predict": predict,
        "model": kind,
        "layers": 2,
        "dropout": 0.2,
        "batching": batching,
        "steps": 20,
        "window_step": 7,
    }
    whole = train(corpus, tmp_path / "whole", **options)

    def interrupt(step: int, loss: float) -> None:
        if step == 7:
            raise KeyboardInterrupt

    first = train(corpus, tmp_path / "split", on_step=interrupt, **options)
    assert first.interrupted and first.step == 7
    second = train(corpus, tmp_path / "split", resume=True, progress=False)
    assert second.step == whole.step == 20 and second.stop_reason == "steps"
    assert whole.train_loss == second.train_loss
    assert train_losses(tmp_path / "whole") == train_losses(tmp_path / "split")
    for role in ("model", "state"):
        a, b = (load_tensors(stored_file(tmp_path / run, role)) for run in ("whole", "split"))
        assert a.keys() == b.keys() and (predict == 1 or "ahead.1.weight" in a or role == "state")
        assert all(torch.equal(a[key], b[key]) for key in a), role
    assert stored_file(tmp_path / "whole", "model").name == stored_file(tmp_path / "split", "model").name
    assert whole.val_loss == second.val_loss


def test_ctrl_c_saves_a_loadable_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))

    def press_ctrl_c(step: int, loss: float) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    result = train(corpus, tmp_path / "run", on_step=press_ctrl_c, **{**TINY, "steps": 50})
    assert result.interrupted and result.step == 3
    err = capsys.readouterr().err
    assert f"Resume with: reverie train {corpus} --out {tmp_path / 'run'} --resume" in err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["state"]["step"] == 3
    model = reverie.load(tmp_path / "run")
    assert len(model.generate("the", length=5, seed=0)) == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler put back


def test_sigterm_saves_prints_the_resume_command_and_exits_143(tmp_path: Path):
    """What `docker stop`, Slurm preemption or torchrun's teardown send: treated as a first Ctrl-C."""
    import subprocess
    import sys
    import time

    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    run = tmp_path / "run"
    tiny = ["--hidden", "16", "--layers", "1", "--embed", "8", "--device", "cpu", "--dtype", "float32"]
    argv = [sys.executable, "-m", "reverie", "train", corpus, "--out", str(run), "--steps", "100000"]
    argv += [*tiny, "--no-progress", "--sample-temperatures", "--save-every", "5"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not rundir.has_run(run) and time.monotonic() < deadline:  # saved every 5 steps: training
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert "SIGTERM: stopping after this step and saving" in err
    assert f"Resume with: reverie train {corpus} --out {run} --resume" in err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    step = json.loads((run / "config.json").read_text())["state"]["step"]
    assert step >= 5
    assert train(corpus, run, resume=True, steps=step + 3, progress=False).step == step + 3


def test_a_stop_set_in_on_step_ends_the_run_after_that_step_and_it_resumes(tmp_path: Path):
    """stop= (a threading.Event) set from on_step: the run ends as at Ctrl-C, after that step, saved;
    resuming it gives the weights and losses of the same run made in one go."""
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    options = {**TINY, "steps": 12, "sample_every": 4}
    whole = train(corpus, tmp_path / "whole", **options)
    stop = threading.Event()

    def stop_at_5(step: int, loss: float) -> None:
        if step == 5:
            stop.set()

    first = train(corpus, tmp_path / "split", on_step=stop_at_5, stop=stop, **options)
    assert first.interrupted and first.step == 5 and first.signal is None
    assert "stopped by a stop request" in first.summary()
    assert json.loads((tmp_path / "split" / rundir.CONFIG).read_text())["state"]["step"] == 5
    second = train(corpus, tmp_path / "split", resume=True, progress=False)
    assert second.step == 12 and second.stop_reason == "steps"
    assert train_losses(tmp_path / "whole") == train_losses(tmp_path / "split")
    assert whole.val_loss == second.val_loss
    for role in ("model", "state"):
        a, b = (load_tensors(stored_file(tmp_path / run, role)) for run in ("whole", "split"))
        assert all(torch.equal(a[key], b[key]) for key in a), role


def test_a_stop_set_by_another_thread_ends_the_run_after_the_step_in_flight(tmp_path: Path):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    stop, reached = threading.Event(), threading.Event()

    def stopper() -> None:
        reached.wait(60)
        stop.set()

    def on_step(step: int, loss: float) -> None:
        if step == 3:
            reached.set()
            assert stop.wait(60)  # set by the other thread while step 3 is the last one done

    thread = threading.Thread(target=stopper)
    thread.start()
    result = train(corpus, tmp_path / "run", on_step=on_step, stop=stop, **{**TINY, "steps": 50})
    thread.join()
    assert result.interrupted and result.step == 3
    config = json.loads((tmp_path / "run" / rundir.CONFIG).read_text())
    assert config["state"]["step"] == 3 and config["state"]["last_eval_step"] == 3
    assert train(corpus, tmp_path / "run", resume=True, steps=5, progress=False).step == 5


def test_stop_takes_anything_with_is_set_or_a_function_and_asks_it_once_per_step(tmp_path: Path):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))

    class FourthAsk:
        asked = 0

        def is_set(self) -> bool:
            self.asked += 1
            return self.asked == 4  # before the 4th step: 3 steps done

    stop = FourthAsk()
    result = train(corpus, tmp_path / "run", stop=stop, **{**TINY, "steps": 50})
    assert result.interrupted and result.step == 3 and stop.asked == 4
    never = FourthAsk()
    never.asked = -100
    assert train(corpus, tmp_path / "all", stop=never, **{**TINY, "steps": 6}).stop_reason == "steps"
    assert never.asked == -100 + 7  # before each of the 6 steps, and once the budget is spent

    asks = iter(range(1, 100))  # a function, as a dream's stop= takes: stops before the 3rd step
    assert train(corpus, tmp_path / "fn", stop=lambda: next(asks) == 3, **{**TINY, "steps": 50}).step == 2
    with pytest.raises(ReverieError, match=r"^stop= takes a function of no arguments"):
        train(corpus, tmp_path / "bad", stop=42, **{**TINY, "steps": 5})
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_checkpoints_between_evaluations_every_n_steps_and_every_m_minutes(tmp_path: Path):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))

    def saved_step(run: Path) -> int | None:
        config = run / "config.json"
        return json.loads(config.read_text())["state"]["step"] if config.exists() else None

    seen: list[int | None] = []
    on_step = lambda step, loss: seen.append(saved_step(tmp_path / "run"))
    train(corpus, tmp_path / "run", steps=9, save_every=3, save_every_minutes=0, on_step=on_step, **TINY)
    assert seen == [None, None, 3, 3, 3, 6, 6, 6, 9]  # saved at steps 3, 6 and 9, nothing between
    seen.clear()
    on_step = lambda step, loss: seen.append(saved_step(tmp_path / "often"))
    train(corpus, tmp_path / "often", steps=4, save_every_minutes=1e-9, on_step=on_step, **TINY)
    assert seen == [1, 2, 3, 4]  # the clock says a save is due after every step


def test_dtype_auto_measures_once_and_leaves_the_runs_random_stream_alone(tmp_path, monkeypatch, capsys):
    from reverie import precision

    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    measured = []

    def measure_then_float32(kind, device, work, ways=precision.DTYPES, **kwargs):
        results = {way: work(way) for way in ways}  # the real work, in every way
        measured.append((kind, results))
        return precision.Choice("float32", "float32 is the fastest here", {})

    monkeypatch.setattr(precision, "choose", measure_then_float32)
    options = {**TINY, "dropout": 0.3, "layers": 2, "steps": 6}
    auto = train(corpus, tmp_path / "auto", **{**options, "dtype": "auto"})
    assert "reverie: --dtype auto: float32 (float32 is the fastest here)" in capsys.readouterr().err
    ((kind, results),) = measured
    assert kind.startswith("text lstm 2x32 embed 16 vocab") and set(results) == {"float32", "bfloat16"}
    assert abs(results["bfloat16"][0] - results["float32"][0]) < 0.01 * results["float32"][0]
    plain = train(corpus, tmp_path / "plain", **{**options, "dtype": "float32"})
    assert auto.train_loss == plain.train_loss  # the same dropout masks: nothing drawn from the run's stream
    assert train_losses(tmp_path / "auto") == train_losses(tmp_path / "plain")


def test_resume_refusals_leave_the_run_untouched(tmp_path: Path):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    other = str(shakespeare_slice(tmp_path / "other.txt", 9_000))
    run = tmp_path / "run"
    train(corpus, run, **{**TINY, "steps": 3})
    before = snapshot(run)
    cases = [
        ({"corpus": other, "resume": True}, "different corpus"),
        ({"corpus": corpus, "resume": True, "hidden": 64}, "different model: --hidden 64"),
        ({"corpus": corpus, "resume": True, "lr": 0.1}, "different setting: --lr"),
        ({"corpus": corpus, "resume": True}, "already reached its budget"),
        ({"corpus": corpus}, "already holds a run"),
        ({"corpus": corpus, "resume": True, "steps": 0}, "--steps must be a positive integer"),
    ]
    for kwargs, message in cases:
        source = kwargs.pop("corpus")
        with pytest.raises(ReverieError, match=message):
            train(source, run, **kwargs)
    assert snapshot(run) == before
    assert train(corpus, run, resume=True, steps=4, progress=False).step == 4  # a larger budget goes on


def test_resume_without_a_run(tmp_path: Path):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    with pytest.raises(ReverieError, match="holds no checkpoint"):
        train(corpus, tmp_path, resume=True)


def test_book_preset_trains(tmp_path: Path):
    corpus = shakespeare_slice(tmp_path / "s.txt", 6_000)
    result = train(
        str(corpus), tmp_path / "book", preset="book", steps=2, progress=False, sample_temperatures=()
    )
    config = json.loads((tmp_path / "book" / "config.json").read_text())
    assert config["model"]["embed"] == 0 and config["model"]["init"] == "keras"
    assert all(c == c.lower() for c in config["tokenizer"]["vocab"])
    assert result.step == 2 and config["state"]["optimizer"]["__dict__"]  # RMSprop state saved


def test_short_epochs_are_evaluated_every_few_epochs(tmp_path: Path):
    from reverie.text.options import MIN_EVAL_STEPS, TrainOptions

    options = TrainOptions()
    assert [options.epochs_per_evaluation(n) for n in (4, 13, 24, 25, 100)] == [7, 2, 2, 1, 1]
    corpus = shakespeare_slice(tmp_path / "s.txt", 8_000)
    out = tmp_path / "run"
    train(str(corpus), out, steps=60, **TINY)
    config = rundir.RunConfig.load(out, training=True)
    per_epoch = config.state.steps_per_epoch
    assert per_epoch < MIN_EVAL_STEPS <= 2 * per_epoch  # so every second epoch
    evaluated = [r["step"] for r in rundir.read_metrics(out / rundir.METRICS) if r["val_loss"] is not None]
    every = 2 * per_epoch
    assert evaluated == [*range(every, 60, every), 60]  # and at the end
