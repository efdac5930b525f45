"""DeepDream a video: every frame through one loaded dreamer, carried along the motion so the dream
flows with the picture instead of flickering; interrupted runs resume where they stopped.

    reverie dream clip.mp4 out.mp4 --model efficientnet_lite0 --max-size 512          # --flow, the default
    reverie dream clip.mp4 out.gif --blend 0.5 --start 2 --duration 3
    reverie dream clip.mp4 out.mp4 --independent --octaves 3

    from reverie.deepdream.video import dream_video
    dream_video("clip.mp4", "out.mp4", model=reverie.load_dreamer("efficientnet_lite0"), max_size=512)

How a frame starts, by mode (`VideoOptions`):

- `flow` (the default): Farneback flow between the previous input frame and this one
  (reverie.deepdream.flow) warps the previous frame's dream *difference* (its output minus its input)
  onto this frame, which is dreamed from there; where the flow cannot follow (occlusions: forward and
  backward flow disagree, or the content came from outside the frame) nothing is carried and the
  frame starts undreamed.
- `blend B`: DeepDreamVideo's rule: B x the previous output + (1 - B) x this frame, not warped.
- `independent`: every frame dreamed on its own, as a folder of frames is.

What keeps flow and blend from accumulating (DeepDreamAnim's "flow behaves additive": brightness and
colour creep up frame after frame): each frame's difference from its input has its per-channel mean
taken out (so a dream never shifts a frame's colour) and its strength (mean absolute difference)
held at most at the first frame's, an independent dream's; so the carried pattern fades as the new
dream adds to it, rather than piling up.

Resuming: the dreamed frames are PNGs in OUTPUT.frames/ (each written atomically), with video.json
saying what they are a dream of (the input file, its part, the size and every option); the next run
with the same options continues after the last frame there (the flow state is the previous input
frame, decoded again, and the previous output, read back: the same numbers an uninterrupted run
carries), and a run with other options is refused. The video itself is encoded from the frames once
all are done (atomically), then the folder is removed unless `keep_frames`.

Under torchrun (`torchrun --standalone --nproc_per_node 4 -m reverie dream clip.mp4 out.mp4`) the
part's frames are split into contiguous chunks (`chunks`): rank r of W keeps frames [a_r, b_r), the
sizes as equal as possible (the first frames % W chunks one frame longer), and starts `overlap`
frames earlier (a_r - K .. a_r - 1, default 4, none for `independent`): it dreams those only to warm
its flow or blend state up, so its first kept frame carries a dream as an uninterrupted run's does
and the seam does not show; the earlier rank keeps them. Rank 0's chunk has no overlap, so its
frames are those of a single process, exactly. Every rank writes its frames into the same
OUTPUT.frames/ (which every process must see); they tell each other after every frame (one small
all-reduce, reverie.distributed) whether they are done or were stopped, so all stop together after a
Ctrl-C or SIGTERM, a rank that dies stops the others with a one-line PeerLost error, and once all
are done rank 0 alone encodes the video (after the process group is left, so the others are not
kept waiting) and removes the folder.

Resuming a chunk: the rank restarts at its first missing frame inside [a_r, b_r), from the same
state an uninterrupted run carries. The previous frame is read back as for one process; the first
frame's strength, which comes from the chunk's first overlap frame (not kept), is saved when that
frame is dreamed in chunk-A_R.json (its bounds and the strength; atomic, reverie.checkpoint): a
float is a few bytes where keeping the overlap frames would be K PNGs, and a JSON float reads back
exactly. A chunk whose file is missing or names other bounds (another number of processes or
another `overlap`) is dreamed again from its overlap, so its frames are still one run's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from reverie import checkpoint, distributed
from reverie.deepdream import flow as optical
from reverie.deepdream.backbone import Backbone
from reverie.deepdream.dreamer import Dreamer, plan_for, resolve_for
from reverie.deepdream.images import save_image
from reverie.deepdream.octaves import DreamStopped, Plan, run_octaves
from reverie.deepdream.options import DreamOptions, PixelStep
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
from reverie.distributed import Ranks
from reverie.errors import ReverieError, require
from reverie.interrupt import StopRequests
from reverie.options import check, option

MODES = ("flow", "blend", "independent")
STATE = "video.json"
STATE_VERSION = 1
UNFINGERPRINTED = ("progress", "stop", "device")  # what may change between a run and its resume


@dataclass
class VideoOptions:
    """How a video is dreamed, besides the dream's own options (DreamOptions); `reverie dream --help`
    lists them under the same names."""

    flow: bool = option(
        False,
        "carry the previous frame's dream along the optical flow onto the next before dreaming it "
        "(the default for videos)",
        switch=True,
    )
    blend: float | None = option(
        None,
        "start each frame from B x the previous output + (1 - B) x the frame (DeepDreamVideo's blend)",
        low=0,
        high=1,
        metavar="B",
    )
    independent: bool = option(False, "dream every frame on its own (the patterns flicker)", switch=True)
    fresh: float = option(
        0.5,
        "with --flow: the share of each frame's own dream added to what the flow carried (lower flows "
        "more smoothly, higher renews the patterns faster)",
        low=0,
        high=1,
        metavar="SHARE",
    )
    start: float = option(0.0, "seconds into the video where the dream starts", low=0, metavar="SECONDS")
    duration: float | None = option(
        None, "seconds of video to dream (default: to the end)", low=0, low_open=True, metavar="SECONDS"
    )
    audio: bool = option(True, "copy the input's audio track over the same part (default: on)")
    keep_frames: bool = option(
        False, "keep the dreamed frames as PNGs in OUTPUT.frames/ after the video is written", switch=True
    )
    overlap: int = option(
        4,
        "under torchrun: frames before each process's share of the video that it dreams, not keeps, to "
        "carry the flow or blend into its first frame (so the seams between the shares do not show)",
        low=0,
        metavar="N",
    )

    def validate(self) -> None:
        check(self)
        chosen = [name for name in MODES if getattr(self, name) not in (None, False)]
        require(
            len(chosen) <= 1,
            f"--flow, --blend and --independent are alternatives; give one, got --{' and --'.join(chosen)}",
        )

    @property
    def mode(self) -> str:
        """flow, blend or independent (flow unless another was chosen)."""
        if self.independent:
            return "independent"
        return "blend" if self.blend is not None else "flow"


VIDEO_OPTION_NAMES = tuple(field.name for field in dataclasses.fields(VideoOptions))


@dataclass
class VideoResult:
    """What a `dream_video` call did: the video written (None when stopped first), the frames of the
    part, those dreamed now and those found done, where the frames are, and the time spent."""

    output: Path | None
    info: VideoInfo
    size: tuple[int, int]
    mode: str
    dreamed: int = 0
    resumed: int = 0
    frames_dir: Path | None = None
    chunk: tuple[int, int] = (0, 0)  # the frames [a, b) this process keeps (all of them when alone)
    warmed: int = 0  # overlap frames dreamed (not kept) to carry the state into the chunk
    kept: int = 0  # frames of the part in OUTPUT.frames/ when it ended, by all the processes
    stopped: str | None = None  # "Ctrl-C" or "SIGTERM" when a signal stopped it
    note: str | None = None  # e.g. why the audio was not copied
    flow_seconds: float = 0.0
    dream_seconds: float = 0.0


def frames_dir_for(output: str | os.PathLike) -> Path:
    """Where the dreamed frames of `output` are kept while it is made: OUTPUT.frames/ beside it."""
    output = Path(output).expanduser()
    return output.with_name(output.name + ".frames")


def frame_path(folder: Path, index: int) -> Path:
    return folder / f"{index:06d}.png"


@dataclass(frozen=True)
class Chunk:
    """The frames one process keeps, [start, end), and the first it dreams, `warm` (<= start): frames
    warm .. start - 1 are dreamed only to carry the state into frame `start`."""

    warm: int
    start: int
    end: int


def chunks(frames: int, world_size: int, overlap: int) -> list[Chunk]:
    """Each rank's Chunk of `frames` frames: contiguous, in rank order, as equal as possible (the first
    `frames % world_size` one frame longer), each starting `overlap` frames early (not before 0; an
    empty chunk has none)."""
    require(world_size >= 1 and overlap >= 0, f"bad split: {world_size} processes, overlap {overlap}")
    base, longer = divmod(frames, world_size)
    split, start = [], 0
    for rank in range(world_size):
        end = start + base + (rank < longer)
        split.append(Chunk(max(0, start - overlap) if end > start else start, start, end))
        start = end
    return split


def chunk_path(folder: Path, chunk: Chunk) -> Path:
    """Where a chunk's carried state is kept while its frames are made (see the module's docstring)."""
    return folder / f"chunk-{chunk.start:06d}.json"


def split_options(options: Mapping[str, Any]) -> tuple[VideoOptions, dict[str, Any]]:
    """The video options (checked) and the dream options of a mixed keyword set."""
    video = {key: value for key, value in options.items() if key in VIDEO_OPTION_NAMES and value is not None}
    vopts = VideoOptions(**video)
    vopts.validate()
    return vopts, {key: value for key, value in options.items() if key not in VIDEO_OPTION_NAMES}


def dream_video(
    source: str | os.PathLike,
    output: str | os.PathLike,
    model: str | Backbone | Dreamer | None = None,
    preset: str | None = None,
    *,
    progress: bool = True,
    on_frame: Callable[[int, Path], None] | None = None,
    max_pixels: int | None = None,
    **options: Any,
) -> VideoResult:
    """Dream every frame of the video `source` (or its part: `start`, `duration`) into the video
    `output` (mp4, mov, mkv, webm or GIF, at the input's frame rate, its audio copied), resuming a run
    that was interrupted. `model` is a name or Backbone (loaded once, if there is anything to dream) or
    a Dreamer; `options` are VideoOptions and DreamOptions fields (`max_size` sets the frame size;
    frames over `max_pixels`, default 4K UHD's, are refused); `on_frame(index, png)` is called after
    each frame is kept.

    Ctrl-C or SIGTERM stops between gradient steps, keeps the frames done and returns with `stopped`
    set; `stop=` (a dream option) returning True raises DreamStopped the same way, frames kept.

    Under torchrun every process calls this and dreams its chunk of the frames (see the module's
    docstring; `overlap` frames before it warm its state up); rank 0 writes the video, the others
    return with `output` None once all the frames are done."""
    require_video()
    vopts, dream_options = split_options(options)
    user_stop = dream_options.pop("stop", None)
    signals = StopRequests("stopping; the frames done are kept, run the same command again to resume")

    def stop_now() -> bool:
        return signals.requested or bool(user_stop is not None and user_stop())

    opts = resolve_for(model, preset, {**dream_options, "progress": False, "stop": stop_now})
    source = Path(source).expanduser()
    output = check_video_output(output, source)
    info = probe(source, vopts.start, vopts.duration)
    size = frame_size(info, opts.max_size, needs_even_size(output), max_pixels)
    folder = frames_dir_for(output)
    state = _state(info, size, vopts, opts, model)
    where = distributed.ranks()
    overlap = 0 if vopts.mode == "independent" else vopts.overlap  # nothing is carried
    chunk = chunks(info.frames, where.world_size, overlap)[where.rank]
    hint = f"the frames done are kept in {folder}; run the same command again to resume"
    with distributed.process_group(where, hint=hint):
        distributed.share_from_main(lambda: _prepare(folder, state))  # a refusal reaches every rank
        first, strength = _resume_point(folder, chunk)
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
        with signals, bar:
            asked, stopped = _together(steps, signals, where, result)
        if stopped:
            result.stopped = signals.signal_name or asked
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


def _together(
    steps: Iterator[None], signals: StopRequests, where: Ranks, result: VideoResult
) -> tuple[str | None, bool]:
    """Run this process's frames (`steps`, one frame each) while telling the others, after every frame,
    whether it is done or was stopped (alone: nothing to tell); until all are done or one was stopped.
    The signal a process was stopped by (Ctrl-C first), and whether the video was stopped."""
    finished = stopped = False
    try:
        while True:
            if not (finished or stopped or signals.requested):
                try:
                    next(steps)
                except StopIteration:
                    finished = True
                except DreamStopped:
                    stopped = True
            asked = signals.signal_name
            stopped = stopped or asked is not None
            kept = result.resumed + result.dreamed
            done, ctrl_c, sigterm, stops, total = distributed.all_sum(
                [float(finished), float(asked == "Ctrl-C"), float(asked == "SIGTERM"), float(stopped), kept]
            )
            if stops or done == where.world_size:
                result.kept = int(total)
                return ("Ctrl-C" if ctrl_c else "SIGTERM" if sigterm else None), bool(stops)
    finally:
        steps.close()  # the decoder's file


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


def dream_frame(plan: Plan, start: np.ndarray) -> np.ndarray:
    """The dream of a float32 frame (H, W, 3) in [0, 1], as uint8 (H, W, 3)."""
    tensor = torch.from_numpy(np.ascontiguousarray(start.transpose(2, 0, 1)))
    return np.asarray(run_octaves(plan, tensor).image)


class Carrier:
    """What one frame hands to the next: the previous input (and its luminance) and output, the first
    frame's dream strength; `start` makes a frame's starting image, `finish` its output."""

    def __init__(self, mode: str, blend: float | None = None, fresh: float = 0.5) -> None:
        self.mode = mode
        self.blend = 0.5 if blend is None else blend
        self.fresh = fresh
        self.previous_input: np.ndarray | None = None
        self.previous_gray: np.ndarray | None = None
        self.previous_output: np.ndarray | None = None
        self.strength: float | None = None  # the first frame's mean |difference|, in [0, 1] units
        self.started: np.ndarray | None = None  # the last `start`

    def observe(self, frame: np.ndarray, png: Path, first: bool = False) -> None:
        """A frame already done (resuming): its output read back, as if it had just been made (`first`:
        the first frame dreamed, whose strength holds the others')."""
        output = np.asarray(Image.open(png).convert("RGB"))
        require(
            output.shape == frame.shape,
            f"{png} is {output.shape[1]}x{output.shape[0]}, not the video's "
            f"{frame.shape[1]}x{frame.shape[0]}; remove {png.parent} to start over",
        )
        self._remember(frame, output, first=first)

    def start(self, frame: np.ndarray) -> np.ndarray:
        """The image (float32 (H, W, 3) in [0, 1]) this frame is dreamed from."""
        self.started = self._start(frame)
        return self.started

    def _start(self, frame: np.ndarray) -> np.ndarray:
        current = frame.astype(np.float32) / 255.0
        if self.previous_output is None or self.mode == "independent":
            return current
        previous = self.previous_output.astype(np.float32) / 255.0
        if self.mode == "blend":
            return (1.0 - self.blend) * current + self.blend * previous
        difference = previous - self.previous_input.astype(np.float32) / 255.0
        now = optical.gray(frame)
        back, forward = optical.flow(now, self.previous_gray), optical.flow(self.previous_gray, now)
        carried = optical.warp(difference, back)
        carried[optical.occluded(forward, back)] = 0.0
        return np.clip(current + carried, 0.0, 1.0)

    def finish(self, frame: np.ndarray, dreamed: np.ndarray) -> np.ndarray:
        """The output of `frame` (uint8) from its dream: as it is for independent frames, else with the
        difference's colour shift removed and its strength held at the first frame's."""
        if self.mode == "independent":
            output = dreamed
        else:
            current = frame.astype(np.float32) / 255.0
            dream = dreamed.astype(np.float32) / 255.0
            if self.mode == "flow" and self.previous_output is not None and self.started is not None:
                dream = self.started + self.fresh * (dream - self.started)
            difference = dream - current
            difference -= difference.mean(axis=(0, 1), keepdims=True)
            if self.strength is not None:
                strength = float(np.abs(difference).mean())
                if strength > self.strength > 0:
                    difference *= self.strength / strength
            output = (np.clip(current + difference, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        self._remember(frame, output, first=self.previous_output is None)
        return output

    def _remember(self, frame: np.ndarray, output: np.ndarray, first: bool) -> None:
        if first:
            self.strength = float(np.abs(output.astype(np.float32) - frame.astype(np.float32)).mean()) / 255.0
        self.previous_input, self.previous_output = frame, output
        self.previous_gray = optical.gray(frame) if self.mode == "flow" else None


# ---- what a run's frames are a dream of -----------------------------------------------------------


def _state(
    info: VideoInfo, size: tuple[int, int], vopts: VideoOptions, opts: DreamOptions, model: Any
) -> dict[str, Any]:
    stat = info.path.stat()
    dream = {
        field.name: _plain(getattr(opts, field.name))
        for field in dataclasses.fields(DreamOptions)
        if field.name not in UNFINGERPRINTED
    }
    dream["model"] = getattr(model, "name", None) or opts.model
    return {
        "kind": "video frames",
        "state_version": STATE_VERSION,
        "input": {"path": str(info.path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "part": {"start": info.start, "duration": info.duration, "frames": info.frames, "fps": str(info.fps)},
        "size": list(size),
        "mode": vopts.mode,
        "blend": vopts.blend,
        "fresh": vopts.fresh,
        "dream": dream,
    }


def _plain(value: Any) -> Any:
    """`value` as JSON: numbers, strings and their containers as they are, objects by their kind."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, PixelStep):
        return {"pixel_levels": value.levels}
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return type(value).__qualname__


def _prepare(folder: Path, state: dict[str, Any]) -> bytes:
    """Check that `folder` holds the frames of `state`'s dream (or nothing yet), making it if new."""
    state_file = folder / STATE
    if folder.exists():
        require(folder.is_dir(), f"{folder} is a file, and a video's frames are kept there; move it away")
        if not state_file.is_file():
            require(
                not any(folder.iterdir()),
                f"{folder} holds files that are not a reverie video's frames; move it away or remove it",
            )
        else:
            saved = _load_state(state_file)
            differs = [key for key in state if saved.get(key) != state[key]]
            require(
                not differs,
                f"{folder} holds the frames of another dream ({', '.join(differs)} differ); "
                "remove it to start over, or run with the same options to resume",
            )
            return b""
    folder.mkdir(exist_ok=True)
    checkpoint.save_json(state_file, state)
    return b""


def _resume_point(folder: Path, chunk: Chunk) -> tuple[int, float | None]:
    """The first frame this chunk dreams (its first missing one, or its overlap's first when none is
    kept yet) and, resuming after the overlap, the strength saved for it (else None)."""
    done = chunk.start
    while done < chunk.end and frame_path(folder, done).is_file():
        done += 1
    if done == chunk.end or chunk.warm == chunk.start:
        return done, None  # finished, or the chunk's first frame is kept (read back for the strength)
    if done == chunk.start:
        return chunk.warm, None
    try:
        saved = checkpoint.load_json(chunk_path(folder, chunk))
    except ReverieError:
        saved = {}
    strength = saved.get("strength")
    bounds = (saved.get("kind"), saved.get("warm"), saved.get("start"))
    if bounds != ("video chunk", chunk.warm, chunk.start):
        return chunk.warm, None  # made by another split: dreamed again from the overlap
    require(isinstance(strength, (int, float)), f"{chunk_path(folder, chunk)} has no strength; remove it")
    return done, float(strength)


def _load_state(path: Path) -> dict[str, Any]:
    try:
        data = checkpoint.load_json(path)
    except ReverieError:
        message = f"{path} is not a reverie video state; remove {path.parent} to start over"
        raise ReverieError(message) from None
    require(
        data.get("kind") == "video frames" and data.get("state_version") == STATE_VERSION,
        f"{path} is not a video state this reverie reads; remove {path.parent} to start over",
    )
    return data


def frames_of(folder: Path) -> Iterator[np.ndarray]:
    """The kept frames of a run (OUTPUT.frames/), in order, as uint8 arrays."""
    index = 0
    while frame_path(folder, index).is_file():
        yield np.asarray(Image.open(frame_path(folder, index)).convert("RGB"))
        index += 1


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
