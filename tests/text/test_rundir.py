"""The run directory: content-named weight files switched by config.json, a kill at any file operation
of a save, one process at a time, and a folder that is not a run left alone."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY
from helpers import run_cli, shakespeare_slice, stored_file

import reverie
from reverie.checkpoint import load_tensors
from reverie.errors import ReverieError
from reverie.text import rundir, runlock
from reverie.text.train import train

KILL_EXIT = 86  # what the killed process exits with (os._exit in KILLER)


def tiny_run_of(tmp_path: Path, steps: int, **extra) -> tuple[str, Path]:
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    run = tmp_path / "run"
    train(corpus, run, steps=steps, sample_every=4, **{**TINY, **extra})
    return corpus, run


def test_a_save_writes_new_files_and_removes_what_no_checkpoint_uses(tmp_path: Path):
    corpus, run = tiny_run_of(tmp_path, 4)
    first = json.loads((run / "config.json").read_text())["files"]
    train(corpus, run, resume=True, steps=8, progress=False)
    second = json.loads((run / "config.json").read_text())["files"]
    assert first["model"]["path"] != second["model"]["path"]  # a new file, not the old one rewritten
    kept = {entry["path"] for entry in second.values()}
    on_disk = {p.name for p in run.iterdir() if p.suffix == ".safetensors"}
    assert on_disk == kept  # the first checkpoint's files went once the second was in place
    for entry in second.values():  # each file is named by, and matches, the sha256 of its bytes
        data = (run / entry["path"]).read_bytes()
        assert entry["path"].endswith(f"-{entry['sha256'][:16]}.safetensors")
        assert __import__("hashlib").sha256(data).hexdigest() == entry["sha256"]


def test_a_file_removed_by_a_save_between_config_and_read_is_read_again_from_the_new_config(
    tmp_path: Path, monkeypatch
):
    corpus, run = tiny_run_of(tmp_path, 4)
    config = rundir.RunConfig.load(run)
    old = run / config.files[rundir.MODEL].path
    read_bytes = Path.read_bytes

    def save_first(path: Path) -> bytes:  # another process's save lands just before this read
        if path == old:
            monkeypatch.setattr(Path, "read_bytes", read_bytes)
            train(corpus, run, resume=True, steps=8, progress=False)
            assert not old.exists()
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", save_first)
    with pytest.raises(ReverieError, match="no checkpoint at"):  # one line, not FileNotFoundError
        config.read_checked(run, rundir.MODEL)
    monkeypatch.setattr(Path, "read_bytes", save_first)
    newer, _, tensors = rundir.RunConfig.load_checkpoint(run, rundir.MODEL)
    assert newer.files[rundir.MODEL].path != old.name  # the new checkpoint, whole
    assert tensors.keys() == load_tensors(run / newer.files[rundir.MODEL].path).keys()


def test_runs_of_the_first_format_still_load_and_resume(tmp_path: Path):
    corpus, run = tiny_run_of(tmp_path, 4)
    config = json.loads((run / "config.json").read_text())
    legacy = {"model": "model.safetensors", "best": "best.safetensors", "state": "state.safetensors"}
    for role, name in legacy.items():  # the layout format 1 wrote: fixed names, config.json -> sha256
        shutil.copy(run / config["files"][role]["path"], run / name)
    for entry in config["files"].values():
        (run / entry["path"]).unlink(missing_ok=True)
    config["files"] = {name: config["files"][role]["sha256"] for role, name in legacy.items()}
    config["format_version"] = 1
    (run / "config.json").write_text(json.dumps(config))
    assert len(reverie.load(run).generate("A", length=5, seed=0)) == 5
    assert train(corpus, run, resume=True, steps=6, progress=False).step == 6
    assert not any((run / name).exists() for name in legacy.values())  # the new save replaced them


def test_a_second_process_on_the_same_run_is_refused_naming_the_first(tmp_path: Path):
    corpus, run = tiny_run_of(tmp_path, 4)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name != rundir.LOCK}  # it names its holder
    with runlock.RunLock(run):  # as another process training into it would hold it
        with pytest.raises(ReverieError, match=f"in use by another reverie process \\(pid {os.getpid()} on "):
            train(corpus, run, resume=True, steps=8, progress=False)
        with pytest.raises(ReverieError, match="in use by another reverie process"):
            train(corpus, run, overwrite=True, steps=2, **TINY)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != rundir.LOCK} == before
    assert train(corpus, run, resume=True, steps=8, progress=False).step == 8  # released: it goes on


def test_a_refused_new_run_leaves_no_folder(tmp_path: Path):
    with pytest.raises(ReverieError, match="no such file"):
        train(str(tmp_path / "missing.txt"), tmp_path / "run", steps=2, **TINY)
    assert not (tmp_path / "run").exists()


def test_a_folder_with_someone_elses_config_is_not_a_run(tmp_path: Path, capsys):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text('{"name": "my web app", "debug": true}')
    (folder / "metrics.csv").write_text("day,visits\n1,3\n")
    assert not rundir.has_run(folder)
    code, _, err = run_cli(["train", corpus, "--out", str(folder), "--steps", "2"], capsys)
    assert code == 2 and "which a run would write over and reverie did not write" in err
    code, _, err = run_cli(["generate", str(folder)], capsys)
    assert code == 2 and "is not a reverie checkpoint config" in err
    assert (folder / "config.json").read_text() == '{"name": "my web app", "debug": true}'


def test_overwrite_removes_only_a_runs_files_and_refuses_a_folder_holding_more(tmp_path: Path):
    corpus, run = tiny_run_of(tmp_path, 4, sample_temperatures=(1.0,), sample_length=5)
    (run / "notes.txt").write_text("my notes on this run")
    with pytest.raises(
        ReverieError, match=r"would clear .*, which holds notes\.txt that reverie did not write"
    ):
        train(corpus, run, overwrite=True, steps=2, **TINY)
    assert (run / "notes.txt").exists() and rundir.has_run(run)
    (run / "notes.txt").unlink()
    train(corpus, run, overwrite=True, steps=2, **TINY)
    config = json.loads((run / "config.json").read_text())
    assert config["state"]["step"] == 2 and not (run / "samples.txt").exists()  # the old run's are gone


# ---- a kill at every file operation of a save ---------------------------------------------------

KILLER = """
import builtins, io, json, os, shutil, sys
import torch
from reverie.text.train import Trainer, train

torch.set_num_threads(1)  # no thread pool: the process forks below
corpus, start, options, kills = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
counter = {"armed": False, "count": 0, "kill_at": 0}

def strike():
    if counter["armed"]:
        counter["count"] += 1
        if counter["count"] == counter["kill_at"]:
            os._exit(86)

def counted(function):
    def wrapper(*args, **kwargs):
        strike()
        return function(*args, **kwargs)
    return wrapper

for name in ("replace", "fsync", "unlink", "rename", "remove", "ftruncate"):
    setattr(os, name, counted(getattr(os, name)))
real_open = builtins.open
def opening(file, mode="r", *args, **kwargs):
    if any(flag in mode for flag in "wax+"):
        strike()
    return real_open(file, mode, *args, **kwargs)
builtins.open = io.open = opening

save = Trainer.save
def arming(self, best=False):
    counter["armed"] = self.run.state.step == 8  # the save at step 8, the second checkpoint
    return save(self, best)
Trainer.save = arming

results = {}
for kill_at in kills:  # each in a child of its own: the parent imported torch once
    run = f"{start}-{kill_at}"
    shutil.copytree(start, run)
    child = os.fork()
    if child == 0:
        counter["kill_at"] = kill_at
        train(corpus, run, **options)
        print("OPERATIONS", counter["count"], flush=True)
        os._exit(0)
    results[kill_at] = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
print("STATUSES", json.dumps(results))
"""


def test_a_kill_at_any_file_operation_of_a_save_leaves_a_run_that_resumes(tmp_path: Path):
    """Train 4 steps; resume to 8, killed (os._exit) at the k-th file operation of the step-8 save,
    for every k; then generating works, and resuming to 12 gives exactly the weights of an
    uninterrupted 12-step run, whichever checkpoint the kill left."""
    import subprocess
    import sys

    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    # a constant learning rate: with cosine decay the schedule would follow each session's budget
    options = {
        **TINY,
        "sample_every": 4,
        "sample_temperatures": (1.0,),
        "sample_length": 8,
        "schedule": "constant",
    }
    reference = tmp_path / "reference"
    train(corpus, reference, steps=12, **options)
    start = tmp_path / "start"
    train(corpus, start, steps=4, **options)

    def resume_killed_at(kills: list[int]) -> dict[str, str]:
        resume = json.dumps({"resume": True, "steps": 8, "progress": False})
        command = [sys.executable, "-c", KILLER, corpus, str(start), resume, json.dumps(kills)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return dict(
            line.split(" ", 1)
            for line in done.stdout.splitlines()
            if line.startswith(("OPERATIONS", "STATUSES"))
        )

    never = 10**9
    uninterrupted = resume_killed_at([never])  # how many file operations the save makes
    operations = int(uninterrupted["OPERATIONS"])
    assert operations >= 10 and json.loads(uninterrupted["STATUSES"]) == {str(never): 0}
    statuses = json.loads(resume_killed_at(list(range(1, operations + 1)))["STATUSES"])
    assert set(statuses.values()) == {KILL_EXIT}, statuses
    expected = load_tensors(stored_file(reference, "model"))
    for k in range(1, operations + 1):
        run = tmp_path / f"start-{k}"
        assert len(reverie.load(run).generate("A", length=3, seed=0)) == 3, k
        resumed = train(corpus, run, resume=True, steps=12, progress=False)
        assert resumed.step == 12, k
        weights = load_tensors(stored_file(run, "model"))
        assert all(torch.equal(weights[key], expected[key]) for key in expected), k
        leftovers = [p.name for p in run.iterdir() if p.name.endswith((".tmp", ".part"))]
        assert leftovers == [], (k, leftovers)
