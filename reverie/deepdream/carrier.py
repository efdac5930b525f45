"""What one frame of a dreamed video hands to the next, so the dream flows with the picture
instead of flickering: the `Carrier` makes each frame's starting image and its output.

    carrier = Carrier("flow", fresh=0.5)
    for frame in frames:                                   # uint8 (H, W, 3)
        out = carrier.finish(frame, dream_frame(plan, carrier.start(frame)))

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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reverie.deepdream import flow as optical
from reverie.deepdream.octaves import Plan, run_octaves
from reverie.errors import require


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
