"""Dreaming a folder of images: names kept, the images split across ranks, finished ones skipped,
bad folders refused in one line; and the real thing on two processes with efficientnet_lite0."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli, run_ranks
from PIL import Image

from reverie.deepdream.folder import classify, dream_folder, image_inputs
from reverie.distributed import Ranks

from .conftest import smooth_image

FAST = {"model": "tiny", "octaves": 1, "iterations": 1, "progress": False}
TIMEOUT_S = 120  # a hard bound on the spawned processes; they take a few seconds


def frames(folder: Path, count: int, size: int = 24) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"frame{index:03d}.png"
        Image.fromarray(smooth_image(size, size + 8, seed=index)).save(path)
        paths.append(path)
    return paths


def test_every_image_is_dreamed_once_under_its_name(tiny_model, tmp_path: Path):
    inputs = frames(tmp_path / "in", 3)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / ".hidden.png").write_bytes(inputs[0].read_bytes())
    out = tmp_path / "out"
    done = dream_folder(tmp_path / "in", out, **FAST)
    assert done.written == [out / p.name for p in inputs] and done.skipped == []
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in inputs]  # no temporary file left
    assert Image.open(out / "frame001.png").size == Image.open(inputs[1]).size
    assert Image.open(out / "frame001.png").tobytes() != Image.open(inputs[1]).tobytes()
    again = dream_folder(tmp_path / "in", out, **FAST)
    assert again.written == [] and again.skipped == inputs


def test_ranks_take_every_other_image_and_resume_their_own(tiny_model, tmp_path: Path):
    inputs = frames(tmp_path / "in", 5)
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame002.png").write_bytes(inputs[2].read_bytes())  # finished by an earlier run
    rank0 = dream_folder(tmp_path / "in", out, where=Ranks(0, 2, 0), **FAST)
    rank1 = dream_folder(tmp_path / "in", out, where=Ranks(1, 2, 1), **FAST)
    assert [p.name for p in rank0.written] == ["frame000.png", "frame004.png"]
    assert [p.name for p in rank0.skipped] == ["frame002.png"]
    assert [p.name for p in rank1.written] == ["frame001.png", "frame003.png"] and rank1.skipped == []
    dream_folder(tmp_path / "in", tmp_path / "alone", **FAST)  # the same seed whatever the split
    for name in ("frame000.png", "frame003.png"):
        assert (tmp_path / "alone" / name).read_bytes() == (out / name).read_bytes()


def test_glob_patterns_and_single_files(tmp_path: Path):
    inputs = frames(tmp_path / "in", 3)
    assert image_inputs(str(tmp_path / "in" / "frame00[02].png")) == [inputs[0], inputs[2]]
    assert image_inputs(inputs[1]) == [inputs[1]]
    assert (
        classify(tmp_path / "in")[0] == "folder" and classify(str(tmp_path / "in" / "*.png"))[0] == "pattern"
    )
    assert classify(inputs[0])[0] == "file"


def test_one_classification_of_the_input_with_home_expanded(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    inputs = frames(tmp_path / "in", 2)
    for source in ("~/in", "~/in/*.png"):  # as typed in quotes: the shell left the ~ alone
        assert classify(source)[0] in ("folder", "pattern")
        assert image_inputs(source) == inputs
    assert classify("~/in/frame000.png") == ("file", inputs[0])
    assert classify("~/nothing.png")[0] == "missing"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{in}"], "names several images; pass --out OUT_DIR"),
        (["{in}", "--out", "{in}"], "holds the input images themselves"),
        (["{empty}", "--out", "{out}"], "holds no image files"),
        (["{in}/nothing*.png", "--out", "{out}"], "holds no image files"),
        (
            ["{in}", "--out", "{out}", "--zoom-frames", "3"],
            "--zoom-frames and --save-octaves apply to one image",
        ),
        (["{in}", "--out", "{in}/frame000.png"], "is a file; give a folder"),
    ],
)
def test_bad_folders_are_refused_in_one_line(tiny_model, tmp_path: Path, capsys, argv, message):
    frames(tmp_path / "in", 2)
    (tmp_path / "empty").mkdir()
    names = {"in": tmp_path / "in", "empty": tmp_path / "empty", "out": tmp_path / "out"}
    argv = ["dream", *(a.format(**names) for a in argv), "--model", "tiny", "--quiet"]
    code, _out, err = run_cli(argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_two_processes_split_a_folder_and_a_rerun_skips_it(tmp_path: Path, capsys):
    inputs = frames(tmp_path / "in", 4, size=32)
    out = tmp_path / "out"
    command = ["dream", str(tmp_path / "in"), "--out", str(out), "--model", "efficientnet_lite0"]
    command += ["--octaves", "1", "--iterations", "1", "--device", "cpu", "--dtype", "float32", "--quiet"]
    outputs = run_ranks(["-m", "reverie", *command], 2, TIMEOUT_S)
    by_rank = [out_text.split() for out_text in outputs]
    assert by_rank == [
        [str(out / "frame000.png"), str(out / "frame002.png")],
        [str(out / "frame001.png"), str(out / "frame003.png")],
    ]
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in inputs]  # 4 outputs, no temporary file
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, printed, err = run_cli(command, capsys)  # the re-run, here in one process: nothing left to do
    assert (code, printed, err.strip()) == (0, "", f"reverie: skipped 4 image(s) already in {out}")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
