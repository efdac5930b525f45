"""Two writers on one run and a reader beside a writer: the second writer (the CLI, or the page's
fine-tune, which trains through the same API) is refused in one line naming the first, and a reader
that loads a run while another process saves into it again and again always gets one complete
checkpoint, never a mix of two and never a missing file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
from conftest import TINY
from helpers import shakespeare_slice

import reverie
from reverie.text import rundir, runlock
from reverie.text.train import train

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

# A writer that saves checkpoint k (every tensor filled with k) into the run as fast as it can.
WRITER = textwrap.dedent(
    """
    import sys, torch
    from reverie.text import rundir, runlock
    run = sys.argv[1]
    config = rundir.RunConfig.load(run)
    shapes = {name: tensor.shape for name, tensor in config.load_tensors(run, rundir.MODEL).items()}
    print("ready", flush=True)
    for k in range(1, int(sys.argv[2]) + 1):
        tensors = {name: torch.full(shape, float(k)) for name, shape in shapes.items()}
        config.save(run, {rundir.MODEL: tensors})
    """
)


def tiny_run(tmp_path: Path) -> tuple[str, Path]:
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    run = tmp_path / "run"
    train(corpus, run, steps=2, **TINY)
    return corpus, run


def test_a_reader_looping_through_many_saves_always_sees_one_whole_checkpoint(tmp_path: Path):
    _, run = tiny_run(tmp_path)
    saves = 400
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(run), str(saves)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    _, _, trained = rundir.RunConfig.load_checkpoint(run, rundir.MODEL)
    seen: list[float] = []  # the k of each checkpoint read, 0 for the trained one the writer found
    while writer.poll() is None:
        _, _, tensors = rundir.RunConfig.load_checkpoint(run, rundir.MODEL)
        assert tensors.keys() == trained.keys()
        values = {float(tensor.flatten()[0]) for tensor in tensors.values()}
        if len(values) == 1 and all(torch.all(tensor == next(iter(values))) for tensor in tensors.values()):
            seen.append(next(iter(values)))  # every tensor from the same save
        else:
            assert all(torch.equal(tensors[name], trained[name]) for name in trained), "a mix of checkpoints"
            seen.append(0.0)
    assert writer.wait() == 0
    assert len(seen) >= 10  # the reader really ran beside the writer
    assert seen == sorted(seen)  # never an older checkpoint after a newer one
    assert len(set(seen) - {0.0}) >= 3  # it saw several saves, not one
    _, _, last = rundir.RunConfig.load_checkpoint(run, rundir.MODEL)
    assert all(torch.all(tensor == saves) for tensor in last.values())
    names = {path.name for path in run.iterdir()}
    assert sum(name.startswith("weights-") for name in names) <= 2  # the replaced files were removed


def test_generate_reads_a_run_while_training_saves_it_every_step(tmp_path: Path):
    corpus, run = tiny_run(tmp_path)
    trainer = subprocess.Popen(
        [sys.executable, "-m", "reverie", "train", corpus, "--out", str(run), "--resume", "--steps", "60"]
        + ["--save-every", "1", "--no-progress"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    texts = []
    while trainer.poll() is None:
        texts.append(reverie.load(run).generate("A", length=8, seed=0))
    _, err = trainer.communicate()
    assert trainer.returncode == 0, err
    assert len(texts) >= 3 and all(len(text) == 8 for text in texts)


def test_a_second_writer_from_the_command_line_is_refused_naming_the_first(tmp_path: Path):
    corpus, run = tiny_run(tmp_path)
    first_argv = [sys.executable, "-m", "reverie", "train", corpus, "--out", str(run), "--resume"]
    first_argv += ["--steps", "100000", "--no-progress"]
    first = subprocess.Popen(
        first_argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        # the lock file names its last holder (the run that made it, too): wait until it is the first
        while f'"pid": {first.pid},'.encode() not in (run / rundir.LOCK).read_bytes():
            assert time.monotonic() < deadline and first.poll() is None, "the first writer did not start"
            time.sleep(0.05)
        second = subprocess.run(
            [sys.executable, "-m", "reverie", "train", corpus, "--out", str(run), "--resume", "--steps", "9"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert f"in use by another reverie process (pid {first.pid} on {socket.gethostname()}" in lines[0]
        assert "train" in lines[0] and "--steps 100000" in lines[0] and "since" in lines[0]
    finally:
        first.send_signal(signal.SIGINT)  # Ctrl-C: it saves and ends
        first.communicate(timeout=120)
    assert first.returncode in (0, 130)
    after = rundir.RunConfig.load(run, training=True)
    assert after.state is not None and after.state.step > 2  # the first writer's run went on
    assert len(reverie.load(run).generate("A", length=5, seed=0)) == 5


def test_an_old_lock_file_or_an_unreadable_one_still_names_what_it_can():
    assert runlock.describe_owner(b"4242") == "pid 4242"
    assert runlock.describe_owner(b"") == "pid unknown"
    assert runlock.describe_owner(b"\xff{not json") == "pid unknown"
    long = '{"pid": 7, "host": "h", "command": "' + "x" * 500 + '", "since": "then"}'
    words = runlock.describe_owner(long.encode())
    assert words.startswith("pid 7 on h, `xxx") and words.endswith("...`, since then")
    assert len(words) < runlock.MAX_COMMAND_SHOWN + 40
