"""A full disk and a read-only folder: whatever write the disk fills at, reverie prints one line
naming the folder and the bytes it needed, exits 2, keeps the previous checkpoint or output intact
and leaves no temporary file behind.

Two ways: fault injection (a child process in which every write from the k-th on fails with ENOSPC,
the way a disk that fills does, for every k of a command), and real small file systems (a tmpfs
of a few hundred KB, and one remounted read-only), which need the right to mount: skipped with
the reason where mounting is refused."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import shakespeare_slice
from PIL import Image

from reverie import hub
from reverie.errors import ReverieError
from reverie.text import rundir
from reverie.text.train import train

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
TINY = {"hidden": 32, "layers": 1, "embed": 16, "dropout": 0.0, "seq_len": 32, "batch_size": 16}
TINY |= {"dtype": "float32", "device": "cpu", "warmup_steps": 5, "progress": False, "sample_every": 4}
TINY |= {"sample_temperatures": (1.0,), "sample_length": 8}

# Runs `reverie ARGV` (ARGV with {dir} standing for a fresh copy of START) once per k, in a forked
# child where every file write into that copy from the k-th on fails with ENOSPC (the disk that
# holds it fills; other disks, the temporary folder's, stay as they are); k = 0 counts the writes.
FULL_DISK = r"""
import builtins, errno, io, json, os, shutil, sys, traceback
import torch
import reverie.cli

torch.set_num_threads(1)  # no thread pool: the process forks below
start, argv, ks = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
state = {"count": 0, "fail_from": 0, "disk": ""}

def on_the_disk(name):
    # whether a write goes to the disk that fills: the folder the command works in
    if isinstance(name, int):
        try:
            name = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            return False
    return os.path.abspath(os.fsdecode(name)).startswith(state["disk"])

def strike(name):
    if not on_the_disk(name):
        return
    state["count"] += 1
    if state["fail_from"] and state["count"] >= state["fail_from"]:
        raise OSError(errno.ENOSPC, "No space left on device", str(name))

class Filling:
    # a file opened for writing, on a disk that fills
    def __init__(self, handle, name):
        self._handle, self._name = handle, name
    def write(self, data):
        strike(self._name)
        return self._handle.write(data)
    def __getattr__(self, name):
        return getattr(self._handle, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self._handle.close()

real_open = builtins.open
def opening(file, mode="r", *args, **kwargs):
    if isinstance(mode, str) and any(flag in mode for flag in "wax+"):
        strike(file)
        return Filling(real_open(file, mode, *args, **kwargs), file)
    return real_open(file, mode, *args, **kwargs)
builtins.open = io.open = opening

def counted(real):
    def wrapper(*args, **kwargs):
        strike(args[0] if args else "")
        return real(*args, **kwargs)
    return wrapper
for name in ("write", "fsync", "replace", "rename", "ftruncate", "mkdir"):
    setattr(os, name, counted(getattr(os, name)))

results = {}
for k in ks:
    target = f"{start}-{k}"
    shutil.copytree(start, target)
    err = f"{target}.stderr"
    child = os.fork()
    if child == 0:
        state["fail_from"], state["disk"] = k, target
        sys.stderr = real_open(err, "w", buffering=1)
        code = 0
        try:
            reverie.cli.main([part.replace("{dir}", target) for part in argv])
        except SystemExit as exc:
            code = exc.code or 0
        except BaseException:
            traceback.print_exc()
            code = 99
        sys.stderr.flush()
        real_open(f"{target}.count", "w").write(str(state["count"]))
        os._exit(code)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    count = int(real_open(f"{target}.count").read())
    results[k] = {"code": code, "stderr": real_open(err).read(), "count": count}
print("RESULTS", json.dumps(results))
"""


def fill_the_disk_at_every_write(start: Path, argv: list[str]) -> dict[int, dict]:
    """{k: {"code", "stderr", "count"}} for k = 0 (no fault: "count" is the number of writes) and
    every k from 1 to that number; the copy the k-th run worked on is START-k."""

    def run(ks: list[int]) -> dict[int, dict]:
        done = subprocess.run(
            [sys.executable, "-c", FULL_DISK, str(start), json.dumps(argv), json.dumps(ks)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        line = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
        assert line, done.stderr[-3000:]
        return {int(k): value for k, value in json.loads(line[0][len("RESULTS ") :]).items()}

    counted = run([0])
    assert counted[0]["code"] == 0, counted[0]["stderr"][-2000:]
    writes = counted[0]["count"]
    assert writes > 0
    return {**counted, **run(list(range(1, writes + 1)))}


def temporaries(folder: Path) -> list[str]:
    """Files a writer leaves only while it writes: `.NAME.XXXX.tmp` and downloads' `.part`."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.name.startswith(".") and path.name != rundir.LOCK or path.suffix in (".tmp", ".part")
    )


def assert_one_line_about_a_full_disk(result: dict, folder: Path) -> None:
    assert result["code"] == 2, result["stderr"][-2000:]
    errors = [line for line in result["stderr"].splitlines() if line.startswith("reverie: error:")]
    assert len(errors) == 1 and "Traceback" not in result["stderr"], result["stderr"][-2000:]
    assert f"no space left in {folder}" in errors[0] and " bytes" in errors[0], errors[0]


def test_a_disk_that_fills_at_any_write_of_a_training_run_keeps_the_previous_checkpoint(tmp_path: Path):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    start = tmp_path / "run"
    train(corpus, start, steps=4, **TINY)
    results = fill_the_disk_at_every_write(
        start, ["train", corpus, "--out", "{dir}", "--resume", "--steps", "8", "--no-progress"]
    )
    assert len(results) > 10  # the lock, the samples, the weights, the state, the metrics, the plot ...
    for k, result in results.items():
        run = Path(f"{start}-{k}")
        if k:
            assert_one_line_about_a_full_disk(result, run)
        config, _, weights = rundir.RunConfig.load_checkpoint(run, rundir.MODEL, training=True)
        assert config.state is not None and config.state.step in (4, 8) and weights  # old or new, whole
        assert temporaries(run) == [], (k, temporaries(run))
    resumed = Path(f"{start}-1")  # the disk was full from the first write on: nothing changed
    assert train(corpus, resumed, resume=True, steps=8, progress=False).step == 8  # space again: it goes on


def test_a_disk_that_fills_while_a_dream_is_saved_keeps_the_old_picture(tmp_path: Path):
    start = tmp_path / "photos"
    start.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(start / "in.png")
    (start / "out.png").write_bytes(b"the previous dream")
    argv = ["dream", "{dir}/in.png", "{dir}/out.png", "--model", "efficientnet_lite0", "--octaves", "1"]
    argv += ["--iterations", "1", "--dtype", "float32", "--no-progress"]
    results = fill_the_disk_at_every_write(start, argv)
    for k, result in results.items():
        folder = Path(f"{start}-{k}")
        if k:
            assert_one_line_about_a_full_disk(result, folder)
            assert (folder / "out.png").read_bytes() == b"the previous dream"
        else:
            assert Image.open(folder / "out.png").size == (48, 48)
        assert temporaries(folder) == [], (k, temporaries(folder))


def test_a_full_or_read_only_cache_refuses_a_download_in_one_line(tmp_path: Path, monkeypatch):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"w" * 50_000)
    remote = hub.Remote(source.as_uri(), hub.sha256_of(source), "weights.bin")
    cache = tmp_path / "cache"

    def fills(url: str, dest: Path, timeout_s: float = 30.0) -> None:
        with urllib.request.urlopen(url) as response, open(dest, "wb") as out:
            out.write(response.read(20_000))
            raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    monkeypatch.setattr(hub, "_download", fills)
    with pytest.raises(
        ReverieError, match=f"no space left in {cache}: writing weights.bin stopped after 20,000 bytes"
    ):
        hub.fetch(remote, cache)
    assert list(cache.iterdir()) == []  # no partial download stays

    def read_only(path: Path, suffix: str = "") -> Path:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(hub, "temporary_beside", read_only)
    with pytest.raises(ReverieError, match=f"cannot write in {cache} \\(Read-only file system\\)"):
        hub.fetch(remote, cache)
    monkeypatch.undo()
    assert hub.fetch(remote, cache).read_bytes() == source.read_bytes()  # space again: it is fetched


# ---- real small file systems ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MB tmpfs mounted at tmp_path/disk, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip() or 'mount refused'}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def reverie_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reverie", *argv],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_real_disk_that_fills_mid_run_keeps_the_checkpoint_and_says_how_much_it_needed(
    tmp_path: Path, small_disk: Path
):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    run = small_disk / "run"
    train(corpus, run, steps=4, **TINY)
    before = rundir.RunConfig.load(run, training=True)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 20_000))  # 20 KB left
    done = reverie_cli("train", corpus, "--out", str(run), "--resume", "--steps", "8", "--no-progress")
    assert_one_line_about_a_full_disk({"code": done.returncode, "stderr": done.stderr}, run)
    assert rundir.RunConfig.load(run, training=True) == before  # the step-4 checkpoint, untouched
    assert rundir.RunConfig.load_checkpoint(run, rundir.MODEL)[2]
    assert temporaries(run) == []
    filler.unlink()
    assert train(corpus, run, resume=True, steps=8, progress=False).step == 8


def test_a_read_only_folder_is_refused_from_the_start_and_still_read(tmp_path: Path, small_disk: Path):
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 8_000))
    run = small_disk / "run"
    train(corpus, run, steps=4, **TINY)
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(small_disk / "in.png")
    remounted = subprocess.run(
        ["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, check=False
    )
    if remounted.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {remounted.stderr.decode().strip()}")
    for argv in (
        ("train", corpus, "--out", str(run), "--resume", "--steps", "8", "--no-progress"),
        ("train", corpus, "--out", str(small_disk / "new"), "--steps", "2", "--no-progress"),
        ("dream", str(small_disk / "in.png"), str(small_disk / "out.png"), "--model", "efficientnet_lite0")
        + ("--octaves", "1", "--iterations", "1", "--dtype", "float32", "--no-progress"),
    ):
        done = reverie_cli(*argv)
        assert done.returncode == 2, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert "Traceback" not in done.stderr and lines[-1].startswith("reverie: error: cannot write in ")
        assert "Read-only file system" in lines[-1]
    generated = reverie_cli("generate", str(run), "--prompt", "A", "--length", "10", "--seed", "0")
    assert generated.returncode == 0 and len(generated.stdout.strip()) >= 5  # reading still works
