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
    set; `stop=` (a dream option) returning True raises DreamStopped the same way, frames kept."""
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
    done = _resume_point(folder, state, info.frames)
    result = VideoResult(None, info, size, vopts.mode, resumed=done, frames_dir=folder)
    if done < info.frames:
        if not isinstance(model, Dreamer):
            distributed.device_for(opts.device, distributed.ranks())  # CUDA: this process's GPU current
        plan = plan_for(model, opts)
        with signals:
            try:
                _dream_frames(plan, info, size, vopts, folder, done, result, progress, on_frame)
            except DreamStopped:
                if not signals.requested:
                    kept = result.resumed + result.dreamed
                    raise DreamStopped(
                        f"the video was stopped after {kept} of {info.frames} frames; they are kept in "
                        f"{folder}, and the same call resumes from there"
                    ) from None
            result.stopped = signals.signal_name
        if result.stopped:
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
    plan: Plan,
    info: VideoInfo,
    size: tuple[int, int],
    vopts: VideoOptions,
    folder: Path,
    done: int,
    result: VideoResult,
    progress: bool,
    on_frame: Callable[[int, Path], None] | None,
) -> None:
    """Dream frames `done`... of the part into `folder`, each kept as soon as it is made."""
    carrier = Carrier(vopts.mode, vopts.blend, vopts.fresh)
    bar = tqdm(
        total=info.frames, initial=done, desc="dreaming video", unit="frame", file=sys.stderr,
        disable=not progress,
    )  # fmt: skip
    with bar:
        for index, frame in read_frames(info, size):
            if index < done:  # resuming: the first frame's strength, the last frame's state
                if index in (0, done - 1):
                    carrier.observe(frame, frame_path(folder, index), index)
                continue
            started = time.perf_counter()
            start = carrier.start(frame)
            flowed = time.perf_counter()
            dreamed = dream_frame(plan, start)
            finished = time.perf_counter()
            out = carrier.finish(frame, dreamed)
            result.flow_seconds += flowed - started + time.perf_counter() - finished
            result.dream_seconds += finished - flowed
            path = save_image(Image.fromarray(out), frame_path(folder, index))  # atomically
            result.dreamed += 1
            bar.update()
            if on_frame is not None:
                on_frame(index, path)


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

    def observe(self, frame: np.ndarray, png: Path, index: int) -> None:
        """A frame already done (resuming): its output read back, as if it had just been made."""
        output = np.asarray(Image.open(png).convert("RGB"))
        require(
            output.shape == frame.shape,
            f"{png} is {output.shape[1]}x{output.shape[0]}, not the video's "
            f"{frame.shape[1]}x{frame.shape[0]}; remove {png.parent} to start over",
        )
        self._remember(frame, output, first=index == 0)

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


def _resume_point(folder: Path, state: dict[str, Any], frames: int) -> int:
    """How many frames of `folder` are done (its state must be `state`); a new folder starts at 0."""
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
            done = 0
            while done < frames and frame_path(folder, done).is_file():
                done += 1
            return done
    folder.mkdir(exist_ok=True)
    checkpoint.save_json(state_file, state)
    return 0


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
    "VideoOptions",
    "VideoResult",
    "dream_frames",
    "dream_video",
    "frames_dir_for",
    "frames_of",
    "split_options",
]
