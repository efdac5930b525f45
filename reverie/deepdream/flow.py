"""Optical flow between video frames, warping along it, occlusions, and how stable a dreamed video is.

Flow is OpenCV's Farneback (dense, on the frames' luminance): `flow(a, b)[y, x]` is where pixel (x, y)
of `a` moved to in `b`, as (dx, dy). `warp(image, back)` pulls `image` (a frame of `a`'s time) into
`b`'s frame with the backward flow `back = flow(b, a)`: out(p) = image(p + back(p)), bilinear, zero
where p + back(p) leaves the frame. `occluded(forward, back)` marks the pixels of `b` whose forward and
backward flows disagree (Sundaram et al. 2010's test, as Ruder et al.'s video style transfer uses):
there something appeared or was hidden, and nothing should be carried. `instability` is the issue's
measure of flicker: the mean absolute difference, in 0-255 levels, between each output frame and the
previous output warped by the input's flow, over the pixels the flow can follow.

    python -m reverie.deepdream.flow a.png b.png      # the mean flow from a to b and how much is occluded

Needs OpenCV: `pip install 'reverie[video]'`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from reverie.deepdream.videoio import require_video

# Farneback's settings: a 4-level pyramid (halving) follows motions of tens of pixels per frame at
# 512 px; a 15-pixel window, 3 iterations, 5-pixel polynomial neighbourhood (sigma 1.1 as OpenCV advises).
FARNEBACK = {
    "pyr_scale": 0.5,
    "levels": 4,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.1,
    "flags": 0,
}


def gray(frame: np.ndarray) -> np.ndarray:
    """The uint8 luminance of an RGB frame (H, W, 3)."""
    _, cv2 = require_video()
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow (H, W, 2) float32 from frame `a` to frame `b` (RGB uint8, or already `gray`)."""
    _, cv2 = require_video()
    a = gray(a) if a.ndim == 3 else a
    b = gray(b) if b.ndim == 3 else b
    return cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK)


def _sample_at(image: np.ndarray, back: np.ndarray) -> np.ndarray:
    _, cv2 = require_video()
    height, width = back.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x, map_y = xs + back[..., 0], ys + back[..., 1]
    return cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32),
        map_x,
        map_y,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def warp(image: np.ndarray, back: np.ndarray) -> np.ndarray:
    """`image` (H, W) or (H, W, C), of the earlier frame's time, moved into the later frame along the
    backward flow `back` = flow(later, earlier); float32, zero where the flow leaves the frame."""
    return _sample_at(image, back)


def outside(back: np.ndarray) -> np.ndarray:
    """Pixels whose backward flow points outside the earlier frame (bool (H, W))."""
    height, width = back.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    x, y = xs + back[..., 0], ys + back[..., 1]
    return (x < 0) | (y < 0) | (x > width - 1) | (y > height - 1)


def occluded(forward: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Pixels of the later frame that the flow cannot follow (bool (H, W)): forward = flow(earlier,
    later) and back = flow(later, earlier) disagree (|back + forward(p + back)|^2 > 0.01 (|back|^2 +
    |forward(p + back)|^2) + 0.5), or back leads outside the earlier frame."""
    forward_there = _sample_at(forward, back)
    disagreement = np.square(back + forward_there).sum(-1)
    size = np.square(back).sum(-1) + np.square(forward_there).sum(-1)
    return (disagreement > 0.01 * size + 0.5) | outside(back)


def instability(outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> float:
    """The mean absolute difference (0-255 levels) between each output frame and the previous output
    warped by the input frames' flow, over the pixels not `occluded`, averaged over the frame pairs:
    0 for a video whose dream moves exactly with its content, larger the more it flickers."""
    if len(outputs) != len(inputs) or len(outputs) < 2:
        raise ValueError("instability needs as many outputs as inputs, at least two")
    scores = []
    for t in range(1, len(outputs)):
        back, forward = flow(inputs[t], inputs[t - 1]), flow(inputs[t - 1], inputs[t])
        keep = ~occluded(forward, back)
        moved = warp(outputs[t - 1], back)
        difference = np.abs(outputs[t].astype(np.float32) - moved).mean(-1)
        scores.append(float(difference[keep].mean()) if keep.any() else 0.0)
    return float(np.mean(scores))


if __name__ == "__main__":
    from reverie.deepdream.images import load_image

    first, second = (
        (load_image(name).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for name in sys.argv[1:3]
    )
    ab, ba = flow(first, second), flow(second, first)
    hidden = occluded(ab, ba).mean()
    print(f"mean flow {ab[..., 0].mean():+.2f}, {ab[..., 1].mean():+.2f} px; {hidden:.1%} occluded")
