"""Video files in and out for DeepDream: probe, read frames, write mp4/mov/mkv/webm or GIF, copy audio.

Reading goes through PyAV (FFmpeg's libraries, with their own codec binaries, from PyPI) for every
container it knows (mp4, mov, mkv, webm, avi, animated GIF); writing through PyAV for the video
containers (H.264 in mp4/mov/mkv, VP9 in webm, yuv420p, so sizes are even) and through Pillow for GIF
(a palette per frame; GIF stores frame delays in hundredths of a second, so 30 frames/s is stored as
33.3). Both need the optional extra: `pip install 'reverie[video]'` (PyAV and OpenCV); without it the
first use is a one-line error that names it. Every bad file is refused in one line: not a video, no
video track, a codec that cannot be decoded here, no frames in the chosen part, a frame over the
pixel cap, an output extension with no encoder.

    python -m reverie.deepdream.videoio clip.mp4      # what the reader sees: size, frame rate, frames, audio

    info = probe("clip.mp4", start=1.0, duration=2.0)          # VideoInfo: size, fps, frames in the part
    for index, frame in read_frames(info, (512, 288)): ...     # uint8 (H, W, 3) frames at that size
    write_video(frames, "out.mp4", info.fps, audio=info)       # atomically, audio of the same part copied
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reverie.checkpoint import atomic_path
from reverie.errors import ReverieError, first_line, require

EXTRA = "pip install 'reverie[video]'"
# What reading accepts (checked by content; the extension only says a file is meant as a video).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
# What writing makes: the encoders tried in order, and the audio codecs the container takes as they are.
ENCODERS: dict[str, tuple[str, ...]] = {
    ".mp4": ("libx264", "h264", "mpeg4"),
    ".m4v": ("libx264", "h264", "mpeg4"),
    ".mov": ("libx264", "h264", "mpeg4"),
    ".mkv": ("libx264", "h264", "mpeg4"),
    ".webm": ("libvpx-vp9", "libvpx"),
    ".gif": ("pillow",),
}
AUDIO_COPYABLE: dict[str, tuple[str, ...] | None] = {
    ".mp4": ("aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"),
    ".m4v": ("aac", "mp3", "alac", "ac3"),
    ".mov": ("aac", "mp3", "alac", "pcm_s16le", "pcm_s24le", "ac3"),
    ".mkv": None,  # any
    ".webm": ("opus", "vorbis"),
    ".gif": (),
}
# The largest frame decoded (8K) and, by default, the largest dreamed (4K UHD; use --max-size below it).
MAX_INPUT_PIXELS = 7680 * 4320
MAX_FRAME_PIXELS = 3840 * 2160
QUALITY = {"crf": "18", "preset": "medium"}  # libx264: visually lossless; dreams are full of detail


def require_video() -> tuple[Any, Any]:
    """PyAV and OpenCV (`av`, `cv2`), or a one-line error naming the extra that brings them."""
    try:
        import av
        import cv2
    except ImportError as exc:
        raise ReverieError(f"video needs PyAV and OpenCV ({exc.name} is missing): {EXTRA}") from None
    return av, cv2


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether `path` is meant as a video: a video extension; a GIF only when it has several frames."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        return False
    if suffix != ".gif":
        return True
    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError, IndexError, struct.error, Image.DecompressionBombError):  # cut short, huge
        return False  # not a readable GIF: the image loader says so in one line


@dataclass(frozen=True)
class VideoInfo:
    """A video file's video track, and the part of it chosen by start/duration."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int  # frames in the chosen part
    codec: str
    audio: str | None  # the first audio track's codec, if any
    start: float = 0.0
    duration: float | None = None

    @property
    def end(self) -> float | None:
        return None if self.duration is None else self.start + self.duration

    def __str__(self) -> str:
        part = f" from {self.start:g} s" if self.start else ""
        part += f" for {self.duration:g} s" if self.duration is not None else ""
        audio = f", audio {self.audio}" if self.audio else ", no audio"
        return (
            f"{self.path}: {self.width}x{self.height} {self.codec} at {float(self.fps):.4g} frames/s, "
            f"{self.frames} frames{part}{audio}"
        )


def _open(path: Path) -> Any:
    av, _ = require_video()
    require(path.exists(), f"video file {path} does not exist")
    require(path.is_file(), f"video {path} is not a file")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise ReverieError(f"{path} is not a video PyAV can read ({first_line(exc)})") from None


def _video_stream(container: Any, path: Path) -> Any:
    require(bool(container.streams.video), f"{path} has no video track")
    stream = container.streams.video[0]
    context = stream.codec_context
    name = getattr(context, "name", None) if context is not None else None
    require(
        context is not None and name not in (None, "none") and getattr(context, "codec", None) is not None,
        f"{path}'s video codec cannot be decoded here (not one FFmpeg knows); convert it to H.264 first",
    )
    stream.thread_type = "AUTO"
    return stream


def _frame_rate(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        fps = Fraction(rate).limit_denominator(100_000) if rate is not None and rate > 0 else 0
        if fps > 0:  # a rate below 1/100000 frames/s would round to 0
            return fps
    return Fraction(25)


def _decoded(container: Any, stream: Any, path: Path) -> Iterator[Any]:
    av, _ = require_video()
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise ReverieError(f"{path} is truncated or corrupt ({first_line(exc)}); re-export it") from None


def _timed_frames(container: Any, stream: Any, path: Path, fps: Fraction) -> Iterator[tuple[Any, float]]:
    """Decoded frames with their time from the track's start (their position where they carry none)."""
    base = stream.start_time or 0
    for index, frame in enumerate(_decoded(container, stream, path)):
        if frame.pts is None or stream.time_base is None:
            yield frame, index / float(fps)
        else:
            yield frame, float((frame.pts - base) * stream.time_base)


def _in_part(time: float, fps: Fraction, start: float, end: float | None) -> int:
    """-1 before the part, 0 inside, 1 after (a frame counts where its time rounds into the part)."""
    half = 0.5 / float(fps)
    if time < start - half:
        return -1
    if end is not None and time >= end - half:
        return 1
    return 0


def probe(path: str | os.PathLike, start: float = 0.0, duration: float | None = None) -> VideoInfo:
    """What `path` holds (refused in one line if it is not a readable video), with the exact number of
    frames between `start` and `start + duration` seconds (by decoding them once)."""
    path = Path(path).expanduser()
    container = _open(path)
    with container:
        stream = _video_stream(container, path)
        fps = _frame_rate(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        require(width > 0 and height > 0, f"{path}'s video track has no frame size; re-export it")
        _check_pixels(path, width, height, MAX_INPUT_PIXELS, "decoding", "shrink it first")
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        end = None if duration is None else start + duration
        count, last = 0, None
        for _, time in _timed_frames(container, stream, path, fps):
            where = _in_part(time, fps, start, end)
            last = time
            if where > 0:
                break
            count += where == 0
        codec = stream.codec_context.name
    if count == 0:
        if last is None:
            raise ReverieError(f"{path} holds no video frames")
        length = last + 1 / float(fps)
        raise ReverieError(
            f"{path} has no frames from {start:g} s{f' to {end:g} s' if end is not None else ''} "
            f"(it is {length:.3g} s long); choose a --start below that"
        )
    return VideoInfo(path, width, height, fps, count, codec, audio, start, duration)


def _check_pixels(path: Path, width: int, height: int, cap: int, what: str, hint: str) -> None:
    pixels = width * height
    if pixels > cap:
        raise ReverieError(
            f"{path} is {width}x{height} = {pixels / 1e6:.3g} megapixels a frame, over the cap of "
            f"{cap / 1e6:.3g} for {what}; {hint}"
        )


def frame_size(
    info: VideoInfo, max_size: int | None, even: bool, max_pixels: int | None = None
) -> tuple[int, int]:
    """(width, height) the frames are dreamed at: the longest side shrunk to `max_size` (never grown),
    even numbers where the output needs them (yuv420p video); refused over `max_pixels` (default
    MAX_FRAME_PIXELS)."""
    max_pixels = MAX_FRAME_PIXELS if max_pixels is None else max_pixels
    width, height = info.width, info.height
    if max_size is not None and max(width, height) > max_size:
        scale = max_size / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if even:
        width, height = max(2, width - width % 2), max(2, height - height % 2)
    hint = f"use --max-size {_fitting_side(info, max_pixels)} to shrink the frames"
    _check_pixels(info.path, width, height, max_pixels, "dreaming a video", hint)
    return width, height


def _fitting_side(info: VideoInfo, max_pixels: int) -> int:
    longest, other = max(info.width, info.height), min(info.width, info.height)
    return max(2, int(math.sqrt(max_pixels * longest / other)) // 2 * 2)


def read_frames(info: VideoInfo, size: tuple[int, int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index in the part, uint8 RGB array (H, W, 3)) for every frame of `info`'s part, resized to
    `size` (width, height; Lanczos, as --max-size for images)."""
    container = _open(info.path)
    with container:
        stream = _video_stream(container, info.path)
        index = 0
        for frame, time in _timed_frames(container, stream, info.path, info.fps):
            where = _in_part(time, info.fps, info.start, info.end)
            if where < 0:
                continue
            if where > 0 or index >= info.frames:
                break
            if size is None or (frame.width, frame.height) == tuple(size):
                array = frame.to_ndarray(format="rgb24")
            else:
                array = frame.reformat(
                    width=size[0], height=size[1], format="rgb24", interpolation="LANCZOS"
                ).to_ndarray()
            yield index, array
            index += 1


def check_video_output(output: str | os.PathLike, input_path: str | os.PathLike | None = None) -> Path:
    """Refuse an output whose folder is missing, whose extension has no encoder here, or that is the
    input file."""
    path = Path(output).expanduser()
    require(
        path.parent.is_dir(), f"output folder {path.parent} does not exist; create it or choose another path"
    )
    require(not path.is_dir(), f"output {path} is a folder; give a file name such as {path / 'dream.mp4'}")
    suffix = path.suffix.lower()
    require(
        suffix in ENCODERS,
        f"unknown video format {suffix or '(none)'!r} for {path}; use one of {', '.join(ENCODERS)}",
    )
    encoder(suffix)
    if input_path is not None and path.exists():
        same = path.samefile(input_path)
        require(not same, f"output {path} is the input video; choose another output path")
    return path


def encoder(suffix: str) -> str:
    """The first encoder of ENCODERS[suffix] this PyAV build has."""
    if suffix == ".gif":
        return "pillow"
    av, _ = require_video()
    for name in ENCODERS[suffix]:
        if name in av.codecs_available:
            return name
    raise ReverieError(f"this PyAV build has no encoder for {suffix} ({', '.join(ENCODERS[suffix])})")


def needs_even_size(output: str | os.PathLike) -> bool:
    """Whether frames written to `output` must have even sides (yuv420p video; not GIF)."""
    return Path(output).suffix.lower() != ".gif"


def write_video(
    frames: Iterable[np.ndarray],
    output: str | os.PathLike,
    fps: Fraction,
    audio: VideoInfo | None = None,
) -> tuple[Path, str | None]:
    """Write uint8 RGB frames (H, W, 3) to `output` at `fps`, atomically (the file appears complete or
    not at all), with `audio`'s audio track over the same part copied where the container takes its
    codec. Returns the path and a note when audio was dropped (else None)."""
    path = Path(output).expanduser()
    suffix = path.suffix.lower()
    note = None
    if audio is not None and audio.audio is not None:
        allowed = AUDIO_COPYABLE[suffix]
        if allowed is not None and audio.audio not in allowed:
            note = f"{audio.path}'s {audio.audio} audio is not copied: {suffix} does not take it"
            audio = None
    else:
        audio = None
    with atomic_path(path, suffix=path.suffix) as partial:
        if suffix == ".gif":
            _write_gif(frames, partial, fps)
        else:
            _write_av(frames, partial, fps, encoder(suffix), audio)
    return path, note


def _write_gif(frames: Iterable[np.ndarray], path: Path, fps: Fraction) -> None:
    images = (Image.fromarray(frame, mode="RGB") for frame in frames)
    first = next(images, None)
    require(first is not None, "there are no frames to write")
    centiseconds = max(2, round(100 / float(fps)))  # what GIF stores; browsers slow down 0 and 1
    first.save(path, format="GIF", save_all=True, append_images=images, duration=centiseconds * 10, loop=0)


def _write_av(
    frames: Iterable[np.ndarray], path: Path, fps: Fraction, codec: str, audio: VideoInfo | None
) -> None:
    av, _ = require_video()
    frames = iter(frames)
    first = next(frames, None)
    require(first is not None, "there are no frames to write")
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(_open(audio.path)) if audio is not None else None
        container = stack.enter_context(av.open(str(path), "w"))
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = dict(QUALITY)
        sound = None
        if source is not None and source.streams.audio:
            template = source.streams.audio[0]
            sound = _AudioCopy(
                container, container.add_stream_from_template(template), source, template, audio
            )
        for index, array in enumerate(itertools.chain([first], frames)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = index
            frame.time_base = 1 / fps
            container.mux(stream.encode(frame))
            if sound is not None:
                sound.until((index + 1) / float(fps))
        container.mux(stream.encode())
        if sound is not None:
            sound.until(math.inf)


class _AudioCopy:
    """The first audio track's packets over `info`'s part, muxed into `output` as they are, interleaved
    with the video by time (from the part's start), while the source stays open."""

    def __init__(self, container: Any, output: Any, source: Any, stream: Any, info: VideoInfo) -> None:
        self.container, self.output, self.info, self.stream = container, output, info, stream
        self.packets = iter(source.demux(stream))
        self.base = stream.start_time or 0
        self.offset: int | None = None
        self.pending: tuple[float, Any] | None = None
        self.done = False

    def _next(self) -> tuple[float, Any] | None:
        for packet in self.packets:
            if packet.pts is None or packet.size == 0:
                continue
            time = float((packet.pts - self.base) * self.stream.time_base)
            if time < self.info.start:
                continue
            if self.info.end is not None and time >= self.info.end:
                break
            if self.offset is None:
                self.offset = packet.pts
            packet.pts -= self.offset
            if packet.dts is not None:
                packet.dts -= self.offset
            return time - self.info.start, packet
        self.done = True
        return None

    def until(self, seconds: float) -> None:
        """Mux the packets that start before `seconds`."""
        while not self.done:
            if self.pending is None:
                self.pending = self._next()
                if self.pending is None:
                    return
            if self.pending[0] >= seconds:
                return
            packet = self.pending[1]
            self.pending = None
            packet.stream = self.output
            self.container.mux(packet)


if __name__ == "__main__":
    try:
        print(probe(sys.argv[1]))
    except ReverieError as exc:
        print(f"reverie: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
