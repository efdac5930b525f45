"""The options and the result of a video's dream: how frames start (flow, blend or independent),
which part of the video, its audio and frames; and what a `dream_video` call did.

    from reverie.deepdream.videooptions import VideoOptions, split_options
    video, dream = split_options({"blend": 0.5, "octaves": 3})    # VideoOptions(blend=0.5), {"octaves": 3}

`reverie dream --help` lists the VideoOptions under the same names; `reverie.deepdream.video` runs them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reverie.deepdream.videoio import VideoInfo
from reverie.errors import require
from reverie.options import check, option

MODES = ("flow", "blend", "independent")


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


def split_options(options: Mapping[str, Any]) -> tuple[VideoOptions, dict[str, Any]]:
    """The video options (checked) and the dream options of a mixed keyword set."""
    video = {key: value for key, value in options.items() if key in VIDEO_OPTION_NAMES and value is not None}
    vopts = VideoOptions(**video)
    vopts.validate()
    return vopts, {key: value for key, value in options.items() if key not in VIDEO_OPTION_NAMES}
