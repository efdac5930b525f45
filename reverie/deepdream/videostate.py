"""A dreamed video's frames on disk, and what they are a dream of, so an interrupted run resumes:
the frames folder, its state file, the split of the frames among torchrun's processes, and the
point each process resumes from.

    folder = frames_dir_for("out.mp4")                    # out.mp4.frames/
    prepare_folder(folder, fingerprint(info, size, vopts, opts, model))   # refuses another dream's frames
    first, strength = resume_point(folder, chunks(info.frames, 1, 0)[0])

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
OUTPUT.frames/ (which every process must see).

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reverie import checkpoint
from reverie.deepdream.options import DreamOptions, PixelStep
from reverie.deepdream.videoio import VideoInfo
from reverie.deepdream.videooptions import VideoOptions
from reverie.errors import ReverieError, require

STATE = "video.json"
STATE_VERSION = 1
UNFINGERPRINTED = ("progress", "stop", "device")  # what may change between a run and its resume


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


def fingerprint(
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


def prepare_folder(folder: Path, state: dict[str, Any]) -> bytes:
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
            saved = load_state(state_file)
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


def resume_point(folder: Path, chunk: Chunk) -> tuple[int, float | None]:
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


def load_state(path: Path) -> dict[str, Any]:
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
