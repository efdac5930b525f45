"""DeepDream on video: on a synthetic clip of a textured square moving a known number of pixels per
frame, the flow finds the motion, the warp predicts the next frame, files round-trip with their
frame count, size, frame rate and audio, `--flow` is steadier than `--independent` and does not
drift, an interrupted run resumes to the same frames, two processes (torchrun's environment) split the
frames into chunks with a seam as steady as the rest and resume a killed rank, and bad inputs are
refused in one line.

    python -m pytest -q tests/dream/test_video.py
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from helpers import launch_ranks, run_cli

from reverie.deepdream import flow, videoio
from reverie.deepdream.dreamer import load_dreamer
from reverie.deepdream.octaves import DreamStopped
from reverie.deepdream.video import Chunk, chunks, dream_frames, dream_video, frames_dir_for, frames_of
from reverie.deepdream.videoio import probe, read_frames, write_video
from reverie.errors import ReverieError

from .conftest import TinyNet

FAST = {"model": "tiny", "octaves": 1, "iterations": 3, "progress": False}
CLI_FAST = ["--model", "tiny", "--octaves", "1", "--iterations", "3", "--quiet"]
SQUARE = 32  # the moving square's side
START = (16.0, 14.0)  # its top-left corner in frame 0


def moving_square(t: float, motion: tuple[float, float] = (2.0, 1.0), size: tuple[int, int] = (96, 72)):
    """Frame `t` (uint8 (H, W, 3)): a fixed wavy background and a seeded textured square whose corner
    is at START + t * motion (subpixel positions rendered bilinearly)."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([0.45 + 0.15 * np.sin(xs / (4 + c) + ys / (5 + 2 * c)) for c in range(3)], -1)
    texture = np.random.default_rng(0).uniform(0, 1, (SQUARE, SQUARE, 3)).astype(np.float32)
    texture = cv2.GaussianBlur(texture, (0, 0), 1.0)
    shift = np.float32([[1, 0, START[0] + motion[0] * t], [0, 1, START[1] + motion[1] * t]])
    square = cv2.warpAffine(texture, shift, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones((SQUARE, SQUARE), np.float32), shift, size, flags=cv2.INTER_LINEAR)
    image = background * (1 - inside[..., None]) + square * inside[..., None]
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def square_interior(t: float, motion: tuple[float, float], margin: int = 6) -> tuple[slice, slice]:
    """The rows and columns well inside the square at frame `t` (the flow is smoothed at its edges)."""
    left, top = START[0] + motion[0] * t, START[1] + motion[1] * t
    rows = slice(int(np.ceil(top)) + margin, int(top) + SQUARE - margin)
    columns = slice(int(np.ceil(left)) + margin, int(left) + SQUARE - margin)
    return rows, columns


def clip(path: Path, count: int = 6, fps: Fraction = Fraction(10), audio: bool = False) -> Path:
    """A clip of `count` moving-square frames at `fps` (with a 440 Hz AAC tone if `audio`)."""
    frames = [moving_square(t) for t in range(count)]
    if not audio:
        write_video(frames, path, fps)
        return path
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 96, 72, "yuv420p"
        sound = container.add_stream("aac", rate=16000)
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = index, 1 / fps
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = int(16000 * count / fps)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)).astype(np.float32)[None]
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return path


# ---- flow and warp ------------------------------------------------------------------------------------


@pytest.mark.parametrize("motion", [(2.0, 1.0), (-1.5, 0.5), (3.0, -2.0)])
def test_flow_recovers_the_motion_within_half_a_pixel(motion):
    first, second = moving_square(0, motion), moving_square(1, motion)
    rows, columns = square_interior(0, motion)
    found = flow.flow(first, second)[rows, columns]
    assert np.abs(found - np.float32(motion)).max() < 0.5
    back = flow.flow(second, first)[square_interior(1, motion)]
    assert np.abs(back + np.float32(motion)).max() < 0.5
    assert float(np.abs(flow.flow(first, first)).max()) < 0.1  # nothing moved: (nearly) no flow


def test_warp_predicts_the_next_frame_away_from_the_edges():
    motion = (2.0, 1.0)
    frames = [moving_square(t, motion) for t in range(3)]
    back = flow.flow(frames[2], frames[1])
    predicted = flow.warp(frames[1], back)
    error = np.abs(predicted - frames[2]).mean(-1)
    unmoved = np.abs(frames[1].astype(np.float32) - frames[2]).mean(-1)
    away = np.zeros(error.shape, bool)  # 4 px from the frame's edges, 9 px from the square's
    away[4:-4, 4:-4] = True
    left, top = (int(START[i] + motion[i] * 2) for i in (0, 1))
    away[top - 9 : top + SQUARE + 9, left - 9 : left + SQUARE + 9] = False
    away[square_interior(2, motion, margin=9)] = True
    assert error[away].mean() < 0.5 and error[away].mean() < unmoved[away].mean() / 10
    assert error[square_interior(2, motion, margin=9)].max() < 2  # the moving texture, pixel by pixel
    hidden = flow.occluded(flow.flow(frames[1], frames[2]), back)
    assert not hidden[8:-8, -24:-8].any()  # the still background far from the square is followed
    assert flow.outside(np.full((4, 4, 2), -1.5, np.float32))[:2, :2].all()


# ---- files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, fps", [(".mp4", Fraction(12)), (".mp4", Fraction(30000, 1001)), (".gif", 10)]
)
def test_writer_and_reader_round_trip(tmp_path: Path, suffix, fps):
    frames = [moving_square(t) for t in range(7)]
    path, note = write_video(frames, tmp_path / f"clip{suffix}", Fraction(fps))
    info = probe(path)
    assert (info.frames, info.width, info.height, info.fps) == (7, 96, 72, fps)
    assert note is None and info.audio is None
    back = [frame for _, frame in read_frames(info)]
    assert len(back) == 7 and all(frame.shape == (72, 96, 3) for frame in back)
    assert np.abs(back[3].astype(int) - frames[3]).mean() < 6  # H.264 / a palette per frame
    small = [frame for _, frame in read_frames(info, (48, 36))]
    assert small[0].shape == (36, 48, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left


def test_a_part_of_the_clip_and_its_audio(tmp_path: Path):
    source = clip(tmp_path / "tone.mp4", count=10, audio=True)
    info = probe(source, start=0.2, duration=0.5)
    assert info.frames == 5 and info.audio == "aac"
    frames = [frame for _, frame in read_frames(info)]
    whole = [frame for _, frame in read_frames(probe(source))]
    assert all(np.array_equal(a, b) for a, b in zip(frames, whole[2:7]))
    out, note = write_video(frames, tmp_path / "part.mp4", info.fps, audio=info)
    assert note is None
    with av.open(str(out)) as container:
        (sound,) = container.streams.audio
        seconds = sum(float(p.duration * sound.time_base) for p in container.demux(sound) if p.duration)
    assert sound.codec_context.name == "aac" and 0.4 < seconds < 0.65
    _, note = write_video(frames, tmp_path / "part.gif", info.fps, audio=info)
    assert "aac audio is not copied: .gif does not take it" in note


# ---- dreaming ---------------------------------------------------------------------------------------------


def test_flow_is_steadier_than_independent_frames_and_does_not_drift():
    frames = [moving_square(t) for t in range(8)]
    dreamer = load_dreamer(TinyNet(), device="cpu")
    options = {"octaves": 1, "iterations": 5}
    flowed = list(dream_frames(frames, dreamer, **options))
    independent = list(dream_frames(frames, dreamer, independent=True, **options))
    blended = list(dream_frames(frames, dreamer, blend=0.5, **options))
    steadiness = {
        name: flow.instability(outputs, frames)
        for name, outputs in (("flow", flowed), ("independent", independent), ("blend", blended))
    }
    assert steadiness["flow"] < 0.75 * steadiness["independent"], steadiness
    assert steadiness["flow"] < steadiness["blend"], steadiness
    dreamed = np.abs(flowed[-1].astype(np.float32) - frames[-1]).mean()
    assert dreamed > 3  # the frames are dreamed, not left alone
    for output, frame in zip(flowed, frames):  # colour and brightness stay the input's
        shift = output.reshape(-1, 3).astype(np.float32).mean(0) - frame.reshape(-1, 3).mean(0)
        assert np.abs(shift).max() < 3
    first = np.abs(flowed[0].astype(np.float32) - frames[0]).mean()
    assert all(np.abs(o.astype(np.float32) - f).mean() <= first + 0.5 for o, f in zip(flowed, frames))


def test_a_video_is_dreamed_into_a_video_with_its_rate_and_audio(tiny_model, tmp_path: Path, capsys):
    source = clip(tmp_path / "tone.mp4", count=6, audio=True)
    out = tmp_path / "out.mp4"
    code, printed, err = run_cli(["dream", str(source), str(out), *CLI_FAST], capsys)
    assert code == 0, err
    assert printed.strip() == str(out)
    info = probe(out)
    assert (info.frames, info.width, info.height, info.fps, info.audio) == (6, 96, 72, 10, "aac")
    assert not frames_dir_for(out).exists()  # the frames are removed once the video is written
    code, _, err = run_cli(["dream", str(source), *CLI_FAST, "--max-size", "49", "--start", "0.3"], capsys)
    assert code == 0, err
    small = probe(tmp_path / "tone-dream.mp4")
    assert (small.frames, small.width, small.height) == (3, 48, 36)  # 49x37, made even for H.264


def test_resume_after_an_interruption_gives_the_frames_of_an_uninterrupted_run(
    tiny_model, tmp_path: Path, capsys
):
    source = clip(tmp_path / "clip.mp4", count=6)
    options = {**FAST, "keep_frames": True}
    whole = dream_video(source, tmp_path / "whole.mp4", **options)
    assert whole.dreamed == 6 and whole.stopped is None

    def ctrl_c_after_the_third(index: int, png: Path) -> None:
        if index == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C: the dream stops at its next step

    out = tmp_path / "out.mp4"
    stopped = dream_video(source, out, on_frame=ctrl_c_after_the_third, **options)
    assert stopped.stopped == "Ctrl-C" and stopped.dreamed == 3 and stopped.output is None
    assert not out.exists() and len(list(frames_of(frames_dir_for(out)))) == 3
    code, _, err = run_cli(["dream", str(source), str(out), *CLI_FAST, "--keep-frames"], capsys)
    assert code == 0, err
    resumed = list(frames_of(frames_dir_for(out)))
    expected = list(frames_of(whole.frames_dir))
    assert len(resumed) == 6 and all(np.array_equal(a, b) for a, b in zip(resumed, expected))
    decoded = [frame for _, frame in read_frames(probe(out))]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, read_frames_of(tmp_path / "whole.mp4")))

    calls = []
    with pytest.raises(DreamStopped, match="stopped after 2 of 6 frames; they are kept"):
        dream_video(
            source,
            tmp_path / "api.gif",
            stop=lambda: len(calls) >= 2,
            on_frame=lambda i, p: calls.append(i),
            **FAST,
        )
    again = dream_video(source, tmp_path / "api.gif", **FAST)
    assert (again.resumed, again.dreamed, probe(again.output).frames) == (2, 4, 6)


def test_an_event_stops_a_video_which_keeps_its_frames_and_resumes(tiny_model, tmp_path: Path):
    """`stop=` a threading.Event, set after the second frame: the video ends with DreamStopped at the
    next step, the two frames kept; the same call resumes and gives an uninterrupted run's frames."""
    import threading

    import reverie

    source = clip(tmp_path / "clip.mp4", count=5)
    options = {**FAST, "keep_frames": True}
    whole = reverie.dream_video(source, tmp_path / "whole.mp4", **options)
    cancel = threading.Event()

    def cancel_after_the_second(index: int, png: Path) -> None:
        if index == 1:
            cancel.set()

    out = tmp_path / "out.mp4"
    with pytest.raises(DreamStopped, match="stopped after 2 of 5 frames; they are kept"):
        reverie.dream_video(source, out, stop=cancel, on_frame=cancel_after_the_second, **options)
    assert not out.exists() and len(list(frames_of(frames_dir_for(out)))) == 2
    again = reverie.dream_video(source, out, stop=threading.Event(), **options)
    assert (again.resumed, again.dreamed, probe(again.output).frames) == (2, 3, 5)
    resumed, expected = list(frames_of(frames_dir_for(out))), list(frames_of(whole.frames_dir))
    assert len(resumed) == 5 and all(np.array_equal(a, b) for a, b in zip(resumed, expected))


def read_frames_of(path: Path) -> list[np.ndarray]:
    return [frame for _, frame in read_frames(probe(path))]


# ---- under torchrun -----------------------------------------------------------------------------------


def test_the_frames_are_split_into_chunks_with_their_overlap():
    # 10 frames over 3 ranks: 4 + 3 + 3; each later chunk starts 2 frames early
    assert chunks(10, 3, 2) == [Chunk(0, 0, 4), Chunk(2, 4, 7), Chunk(5, 7, 10)]
    assert chunks(10, 1, 4) == [Chunk(0, 0, 10)]  # one process: everything, no overlap
    assert chunks(7, 2, 0) == [Chunk(0, 0, 4), Chunk(4, 4, 7)]
    assert chunks(12, 2, 9) == [Chunk(0, 0, 6), Chunk(0, 6, 12)]  # not before the first frame
    assert chunks(2, 3, 4) == [Chunk(0, 0, 1), Chunk(0, 1, 2), Chunk(2, 2, 2)]  # more ranks than frames


# Runs `reverie dream ARGS` with the tiny net registered as model `tiny`; prints "kept I" for each frame
# this rank keeps, and kills itself (SIGKILL, as a crash) after keeping frame $KILL_AT on rank 1.
WORKER = """
import os, signal, sys
from reverie.cli import main
from reverie.deepdream import backbone, command

backbone.MODEL_MODULES["tiny"] = sys.argv[1]
kill_at, dream = int(os.environ.get("KILL_AT", "-1")), command.dream_video

def kept(index, png):
    print("kept", index, flush=True)
    if index == kill_at and os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGKILL)

command.dream_video = lambda *args, **kwargs: dream(*args, on_frame=kept, **kwargs)
main(sys.argv[2:])
"""
RANKS_TIMEOUT_S = 120  # a hard bound on the spawned processes; they take a few seconds


def dream_on_ranks(source: Path, out: Path, nproc: int, *extra: str) -> list[tuple[int, str, str]]:
    """`reverie dream SOURCE OUT` on `nproc` local ranks (one thread each, float32 on the CPU, the
    frames kept): each rank's (exit code, stdout, stderr)."""
    argv = ["dream", str(source), str(out), *CLI_FAST, "--device", "cpu", "--dtype", "float32"]
    return launch_ranks(
        ["-c", WORKER, TinyNet.__module__, *argv, "--keep-frames", *extra], nproc, RANKS_TIMEOUT_S
    )


def kept_by(stdout: str) -> list[int]:
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("kept ")]


@pytest.fixture
def spawnable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawned ranks import the tiny net's module as this process does."""
    module = importlib.import_module(TinyNet.__module__)
    root = Path(module.__file__).resolve().parents[TinyNet.__module__.count(".")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("KILL_AT", raising=False)


def test_two_ranks_dream_a_video_in_chunks_and_resume_a_killed_rank(
    tiny_model, spawnable, tmp_path: Path, monkeypatch
):
    count = 12  # rank 0 keeps 0-5; rank 1 dreams 2-5 to warm up (overlap 4) and keeps 6-11
    source = clip(tmp_path / "clip.mp4", count=count)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks run, so that the sums are made in the same order
    try:
        options = {**FAST, "device": "cpu", "dtype": "float32", "keep_frames": True}
        single = list(frames_of(dream_video(source, tmp_path / "one.mp4", **options).frames_dir))
    finally:
        torch.set_num_threads(threads)

    whole = tmp_path / "two.mp4"
    results = dream_on_ranks(source, whole, 2)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert (
        results[0][1].splitlines()[-1] == str(whole) and str(whole) not in results[1][1]
    )  # rank 0 writes it
    assert kept_by(results[0][1]) == list(range(6)) and kept_by(results[1][1]) == list(range(6, count))
    assert "dreaming video (rank 1)" not in results[1][2]  # --quiet: no bar
    two = list(frames_of(frames_dir_for(whole)))
    assert len(two) == count and probe(whole).frames == count
    assert all(np.array_equal(a, b) for a, b in zip(two[:6], single[:6]))  # rank 0's: a single run's
    assert not np.array_equal(two[6], single[6])  # rank 1 carried its own (warmed-up) dream in

    inputs = read_frames_of(source)
    pairs = [flow.instability(two[t - 1 : t + 1], inputs[t - 1 : t + 1]) for t in range(1, count)]
    seam, rest = pairs[5], pairs[:5] + pairs[6:]  # the pair (5, 6) crosses from rank 0 to rank 1
    assert seam < 1.5 * np.median(rest), (seam, pairs)

    resumed = tmp_path / "resumed.mp4"
    monkeypatch.setenv("KILL_AT", "7")  # rank 1 dies after keeping frames 6 and 7
    (code0, out0, err0), (code1, out1, _) = dream_on_ranks(source, resumed, 2)
    assert code1 == -signal.SIGKILL and kept_by(out1) == [6, 7]
    assert code0 == 1, err0[-3000:]
    lines = [line for line in err0.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err0, err0[-3000:]
    assert lines[0].startswith("reverie: error: rank 0 of 2 lost contact with the other processes")
    assert f"the frames done are kept in {frames_dir_for(resumed)}; run the same command again" in lines[0]
    assert not resumed.exists()
    monkeypatch.delenv("KILL_AT")
    results = dream_on_ranks(source, resumed, 2)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert kept_by(results[1][1]) == list(range(8, count))  # rank 1 went on at its first missing frame
    assert kept_by(results[0][1]) == [i for i in range(6) if i not in kept_by(out0)]
    again = list(frames_of(frames_dir_for(resumed)))
    assert len(again) == count and all(np.array_equal(a, b) for a, b in zip(again, two))


# ---- refusals -----------------------------------------------------------------------------------------


def unknown_codec(tmp_path: Path) -> Path:
    """A Matroska file whose video track names a codec no FFmpeg knows."""
    known = write_video([moving_square(t) for t in range(3)], tmp_path / "known.mkv", Fraction(10))[0]
    data = known.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    path = tmp_path / "unknown.mkv"
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_REVERIE/NONE0"))
    return path


def audio_only(tmp_path: Path) -> Path:
    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as container:
        sound = container.add_stream("aac", rate=16000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return path


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda d: _text(d / "notes.mp4"), [], "notes.mp4 is not a video PyAV can read"),
        (audio_only, [], "sound.mp4 has no video track"),
        (unknown_codec, [], "unknown.mkv's video codec cannot be decoded here"),
        (lambda d: clip(d / "c.mp4"), ["--start", "9"], "has no frames from 9 s (it is 0.6 s long)"),
        (lambda d: clip(d / "c.mp4"), ["{dir}/out.xyz"], "unknown video format '.xyz'"),
        (lambda d: clip(d / "c.mp4"), ["{dir}/c.mp4"], "is the input video"),
        (lambda d: clip(d / "c.mp4"), ["--blend", "0.5", "--independent"], "are alternatives"),
        (lambda d: clip(d / "c.mp4"), ["--blend", "2"], "--blend must be in [0, 1], got 2.0"),
        (
            lambda d: clip(d / "c.mp4"),
            ["--overlap", "-1"],
            "--overlap must be zero or a positive integer, got -1",
        ),
        (lambda d: clip(d / "c.mp4"), ["--out", "{dir}/o"], "--out, --zoom-frames and --save-octaves"),
        (lambda d: _png(d / "p.png"), ["--flow"], "--flow is for videos; {dir}/p.png is an image"),
        (lambda d: d / "missing.mp4", [], "video file {dir}/missing.mp4 does not exist"),
        (lambda d: d / "missing.mp4", ["--flow"], "video file {dir}/missing.mp4 does not exist"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(tiny_model, tmp_path: Path, capsys, make, extra, message):
    source = make(tmp_path)
    argv = ["dream", str(source), *(a.format(dir=tmp_path) for a in extra), *CLI_FAST]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and message.format(dir=tmp_path) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_frame_over_the_cap_a_changed_dream_and_a_missing_extra(tiny_model, tmp_path, capsys, monkeypatch):
    source = clip(tmp_path / "c.mp4", count=3)
    with monkeypatch.context() as patch:
        patch.setattr(videoio, "MAX_FRAME_PIXELS", 64 * 48)
        code, _, err = run_cli(["dream", str(source), *CLI_FAST], capsys)
        expected = "96x72 = 0.00691 megapixels a frame, over the cap of 0.00307"
        assert code == 2 and expected in err and "use --max-size 64" in err
        code, _, err = run_cli(["dream", str(source), *CLI_FAST, "--max-size", "64"], capsys)
        assert code == 0, err
    calls = []
    with pytest.raises(DreamStopped):
        dream_video(
            source,
            tmp_path / "o.mp4",
            stop=lambda: bool(calls),
            on_frame=lambda i, p: calls.append(i),
            **FAST,
        )
    with pytest.raises(ReverieError, match=r"holds the frames of another dream \(dream differ\)"):
        dream_video(source, tmp_path / "o.mp4", **{**FAST, "iterations": 4})
    monkeypatch.setitem(sys.modules, "av", None)  # as if reverie[video] were not installed
    code, _, err = run_cli(["dream", str(source), *CLI_FAST], capsys)
    assert code == 2 and "pip install 'reverie[video]'" in err and len(err.strip().splitlines()) == 1


def _text(path: Path) -> Path:
    path.write_text("not a video\n")
    return path


def _png(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(moving_square(0)).save(path)
    return path
