"""DeepDream a video: every frame through one loaded dreamer, carried along the motion so the dream
flows with the picture instead of flickering; interrupted runs resume where they stopped.

    reverie dream clip.mp4 out.mp4 --model efficientnet_lite0 --max-size 512          # --flow, the default
    reverie dream clip.mp4 out.gif --blend 0.5 --start 2 --duration 3
    reverie dream clip.mp4 out.mp4 --independent --octaves 3

    from reverie.deepdream.video import dream_video
    dream_video("clip.mp4", "out.mp4", model=reverie.load_dreamer("efficientnet_lite0"), max_size=512)

How a frame starts (flow, blend or independent) and what keeps the carried dream from piling up:
`reverie.deepdream.carrier`. The options: `reverie.deepdream.videooptions`. The frames kept on disk,
resuming, and how torchrun's processes split the frames: `reverie.deepdream.videostate`.

Under torchrun every process dreams its chunk of the frames into the same OUTPUT.frames/ (which
every process must see); they tell each other after every frame (one small all-reduce,
reverie.distributed) whether they are done or were stopped, so all stop together after a Ctrl-C,
SIGTERM or `stop=`, a rank that dies stops the others with a one-line PeerLost error, and once all
are done rank 0 alone encodes the video (after the process group is left, so the others are not
kept waiting) and removes the folder.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from reverie import checkpoint, distributed
from reverie.deepdream.backbone import Backbone
from reverie.deepdream.carrier import Carrier, dream_frame
from reverie.deepdream.dreamer import Dreamer, plan_for, resolve_for
from reverie.deepdream.images import save_image
from reverie.deepdream.octaves import DreamStopped, Plan
from reverie.deepdream.videoio import (
    VideoInfo,
    check_video_output,
    frame_size,
    needs_even_size,
    probe,
    read_frames,
    require_video,
    write_video,
)
from reverie.deepdream.videooptions import MODES, VideoOptions, VideoResult, split_options
from reverie.deepdream.videostate import (
    Chunk,
    chunk_path,
    chunks,
    fingerprint,
    frame_path,
    frames_dir_for,
    frames_of,
    prepare_folder,
    resume_point,
)
from reverie.jobs import Job
from reverie.stopping import Stop


def dream_video(
    source: str | os.PathLike,
    output: str | os.PathLike,
    model: str | Backbone | Dreamer | None = None,
    preset: str | None = None,
    *,
    progress: bool = True,
    on_frame: Callable[[int, Path], None] | None = None,
    max_pixels: int | None = None,
    stop: Stop | None = None,
    **options: Any,
) -> VideoResult:
    """Dream every frame of the video `source` (or its part: `start`, `duration`) into the video
    `output` (mp4, mov, mkv, webm or GIF, at the input's frame rate, its audio copied), resuming a run
    that was interrupted. `model` is a name or Backbone (loaded once, if there is anything to dream) or
    a Dreamer; `options` are VideoOptions and DreamOptions fields (`max_size` sets the frame size;
    frames over `max_pixels`, default 4K UHD's, are refused); `on_frame(index, png)` is called after
    each frame is kept.

    Ctrl-C or SIGTERM stops between gradient steps, keeps the frames done and returns with `stopped`
    set; `stop` (a threading.Event or a function, asked before every gradient step, see
    reverie.stopping) once set raises DreamStopped the same way, frames kept, and the same
    call resumes from them.

    Under torchrun every process calls this and dreams its chunk of the frames (see the module's
    docstring; `overlap` frames before it warm its state up); rank 0 writes the video, the others
    return with `output` None once all the frames are done."""
    require_video()
    vopts, dream_options = split_options(options)
    job = Job(stop, "stopping; the frames done are kept, run the same command again to resume")
    opts = resolve_for(model, preset, {**dream_options, "progress": False, "stop": lambda: job.requested})
    source = Path(source).expanduser()
    output = check_video_output(output, source)
    info = probe(source, vopts.start, vopts.duration)
    size = frame_size(info, opts.max_size, needs_even_size(output), max_pixels)
    folder = frames_dir_for(output)
    state = fingerprint(info, size, vopts, opts, model)
    where = distributed.ranks()
    overlap = 0 if vopts.mode == "independent" else vopts.overlap  # nothing is carried
    chunk = chunks(info.frames, where.world_size, overlap)[where.rank]
    hint = f"the frames done are kept in {folder}; run the same command again to resume"
    with distributed.process_group(where, hint=hint):
        distributed.share_from_main(lambda: prepare_folder(folder, state))  # a refusal reaches every rank
        first, strength = resume_point(folder, chunk)
        resumed = max(first - chunk.start, 0)
        result = VideoResult(None, info, size, vopts.mode, resumed=resumed, frames_dir=folder)
        result.chunk = (chunk.start, chunk.end)
        plan = None
        if first < chunk.end:
            if not isinstance(model, Dreamer):
                distributed.device_for(opts.device, where)  # CUDA: this process's GPU current
            plan = plan_for(model, opts)
        label = f"dreaming video (rank {where.rank})" if where.distributed else "dreaming video"
        bar = tqdm(
            total=chunk.end - chunk.start, initial=resumed, desc=label, unit="frame", file=sys.stderr,
            disable=not progress,
        )  # fmt: skip
        steps = _dream_frames(plan, info, size, vopts, folder, chunk, first, strength, result, bar, on_frame)
        with job, bar:  # a frame at a time, every rank told after each whether the others are done
            agreed = job.run(steps, values=lambda: (result.resumed + result.dreamed,), stops=(DreamStopped,))
        result.kept = int(agreed.sums[0])
        if agreed.stopped:
            result.stopped = agreed.signal
            if result.stopped is None:
                raise DreamStopped(
                    f"the video was stopped after {result.kept} of {info.frames} frames; they are kept in "
                    f"{folder}, and the same call resumes from there"
                )
            return result
    if not where.is_main:  # rank 0 encodes the video, outside the group: the others are done
        return result
    pngs = (np.asarray(Image.open(frame_path(folder, index)).convert("RGB")) for index in range(info.frames))
    written, note = write_video(pngs, output, info.fps, info if vopts.audio else None)
    result.output, result.note = written, note
    if not vopts.keep_frames:
        shutil.rmtree(folder, ignore_errors=True)
        result.frames_dir = None
    return result


# ---- the frames ---------------------------------------------------------------------------------


def _dream_frames(
    plan: Plan | None,
    info: VideoInfo,
    size: tuple[int, int],
    vopts: VideoOptions,
    folder: Path,
    chunk: Chunk,
    first: int,
    strength: float | None,
    result: VideoResult,
    bar: tqdm,
    on_frame: Callable[[int, Path], None] | None,
) -> Iterator[None]:
    """Dream frames `first` .. chunk.end - 1 of the part, yielding after each; the chunk's frames
    (from chunk.start) are kept in `folder` as soon as they are made. `strength` is the carried
    strength of a chunk resumed after its overlap (None: from the first frame dreamed)."""
    if first >= chunk.end:
        return
    assert plan is not None
    carrier = Carrier(vopts.mode, vopts.blend, vopts.fresh)
    carrier.strength = strength
    for index, frame in read_frames(info, size):
        if index >= chunk.end:
            break
        if index < first:  # resuming: the first frame's strength, the last frame's state
            first_dreamed = index == chunk.warm and strength is None
            if first_dreamed or index == first - 1 >= chunk.start:
                carrier.observe(frame, frame_path(folder, index), first=first_dreamed)
            continue
        started = time.perf_counter()
        start = carrier.start(frame)
        flowed = time.perf_counter()
        dreamed = dream_frame(plan, start)
        finished = time.perf_counter()
        out = carrier.finish(frame, dreamed)
        result.flow_seconds += flowed - started + time.perf_counter() - finished
        result.dream_seconds += finished - flowed
        if index == chunk.warm < chunk.start:  # the strength, for a resume after the overlap
            saved = {"kind": "video chunk", "warm": chunk.warm, "start": chunk.start, "end": chunk.end}
            checkpoint.save_json(chunk_path(folder, chunk), {**saved, "strength": carrier.strength})
        if index < chunk.start:
            result.warmed += 1
            yield
            continue
        path = save_image(Image.fromarray(out), frame_path(folder, index))  # atomically
        result.dreamed += 1
        bar.update()
        if on_frame is not None:
            on_frame(index, path)
        yield


def dream_frames(
    frames: Iterable[np.ndarray],
    model: str | Backbone | Dreamer | None = None,
    preset: str | None = None,
    **options: Any,
) -> Iterator[np.ndarray]:
    """The dreamed frames (uint8 (H, W, 3)) of frames held in memory, one by one, as `dream_video`
    makes them; `options` are the VideoOptions of a mode (flow=, blend=, independent=, fresh=) and
    DreamOptions fields."""
    require_video()
    vopts, dream_options = split_options(options)
    plan = plan_for(model, resolve_for(model, preset, {**dream_options, "progress": False}))
    carrier = Carrier(vopts.mode, vopts.blend, vopts.fresh)
    for frame in frames:
        yield carrier.finish(frame, dream_frame(plan, carrier.start(frame)))


__all__ = [
    "MODES",
    "Carrier",
    "Chunk",
    "VideoOptions",
    "VideoResult",
    "chunks",
    "dream_frames",
    "dream_video",
    "frames_dir_for",
    "frames_of",
    "split_options",
]
